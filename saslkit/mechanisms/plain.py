"""PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd``.

The server SASLprep-s authcid and authzid as query strings and the password
as a stored string (RFC 4616 §2), then verifies it against the user's
argon2id hash or, for users imported with SCRAM keys only, by recomputing the
StoredKey.  An unknown name (or a user with no credential) costs what a real
user of its virtual profile costs (:mod:`saslkit.unknown_users`): the same
argon2 verification, or one PBKDF2 with the same hash and iteration count.
A successful login of a user without an argon2 hash upgrades the user to an
argon2 hash and default SCRAM keys when the store can be written (best effort).
LOGIN (:mod:`.login`) verifies through the same :func:`verify_login`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from functools import lru_cache

from ..context import ClientCredentials, ServerContext
from ..credentials import (
    DEFAULT_ARGON2_PARAMETERS,
    SCRAM_HASHES,
    CredentialProfile,
    ScramCredential,
    UserRecord,
    dummy_password_hash,
    dummy_password_hash_like,
    make_user,
    salted_password,
    scram_keys,
    verify_password_hash,
)
from ..errors import PreparationError, ProtocolError, UsageError
from ..mechanism import Challenge, Failure, FailureReason, OneMessageState, ServerStep, Success
from ..saslprep import saslprep
from ..unknown_users import plain_stand_in

_log = logging.getLogger("saslkit")

__all__ = ["MAX_FIELD", "PlainClient", "PlainServer", "parse_plain", "verify_login"]

#: RFC 4616 §2 requires accepting 255 octets per field; we accept up to 1024.
MAX_FIELD = 1024


def parse_plain(message: bytes) -> tuple[str, str, str]:
    """Split and decode a PLAIN message into ``(authzid, authcid, passwd)``.

    Raises :class:`ProtocolError` (``invalid-encoding``) on a wrong number of
    NULs, invalid UTF-8, an empty authcid/password or an oversized field.
    """
    if len(message) > 3 * MAX_FIELD + 2:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "PLAIN message too long")
    parts = message.split(b"\x00")
    if len(parts) != 3:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "PLAIN message needs exactly two NULs")
    if any(len(p) > MAX_FIELD for p in parts):
        raise ProtocolError(FailureReason.INVALID_ENCODING, "PLAIN field too long")
    try:
        authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "PLAIN field is not UTF-8") from None
    if not authcid or not passwd:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "empty authcid or password")
    return authzid, authcid, passwd


def _strongest(hash_names: Mapping[str, object] | tuple[str, ...]) -> str | None:
    """The strongest SCRAM hash among ``hash_names`` (SHA-512 > SHA-256 > SHA-1)."""
    for hash_name in reversed(tuple(SCRAM_HASHES)):
        if hash_name in hash_names:
            return hash_name
    return None


def _check_credential(cred: ScramCredential, password: str) -> bool:
    """One PBKDF2 run and a StoredKey comparison (RFC 5802 §3)."""
    salted = salted_password(cred.hash_name, password, cred.salt, cred.iterations)
    _, stored, _ = scram_keys(cred.hash_name, salted)
    return hmac.compare_digest(stored, cred.stored_key)


def _check_scram(record: UserRecord, password: str) -> bool:
    # Prefer the strongest hash present; one PBKDF2 run.
    hash_name = _strongest(record.scram)
    return hash_name is not None and _check_credential(record.scram[hash_name], password)


@lru_cache(maxsize=64)
def _stand_in_credential(hash_name: str, iterations: int, salt_length: int) -> ScramCredential:
    """Random keys no password matches, with the given cost."""
    _, size = SCRAM_HASHES[hash_name]
    return ScramCredential(hash_name, secrets.token_bytes(salt_length), iterations,
                           secrets.token_bytes(size), secrets.token_bytes(size))


def _spend_like(profile: CredentialProfile, password: str) -> None:
    """Do the work verifying a password of a user with ``profile`` costs, and fail."""
    if profile.argon2 is not None:
        # The default parameters go through dummy_password_hash(), which tests may swap.
        dummy = (dummy_password_hash() if profile.argon2 == DEFAULT_ARGON2_PARAMETERS
                 else dummy_password_hash_like(profile.argon2))
        verify_password_hash(dummy, password)
        return
    by_hash = {h: (i, n) for h, i, n in profile.scram}
    hash_name = _strongest(tuple(by_hash))
    if hash_name is not None:
        _check_credential(_stand_in_credential(hash_name, *by_hash[hash_name]), password)


def verify_login(ctx: ServerContext, mechanism: str, authzid: str, authcid: str, passwd: str) -> ServerStep:
    """The password check PLAIN and LOGIN share: SASLprep (RFC 4616 §2), verify, authorize, upgrade.

    Every name costs what its (virtual) profile costs, and every failure
    reads the same whatever the account (RFC 4422 §3.6 / §9).
    """
    sent_authzid = bool(authzid)
    try:
        authcid = saslprep(authcid)
        authzid = saslprep(authzid)
        password = saslprep(passwd, stored=True)
    except PreparationError:
        return Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed")
    # RFC 4616 §2 / RFC 4954 §4: preparing to an empty string fails, authzid included
    # (unless the authzid was sent empty).
    if not authcid or not password or (sent_authzid and not authzid):
        return Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed",
                       authcid=authcid or None)
    record = _verified_user(ctx, authcid, password)
    if record is None:
        return Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed", authcid=authcid)
    if authzid and authzid != authcid and not ctx.authorize(authcid, authzid):
        return Failure(FailureReason.AUTHORIZATION_FAILED, "not authorized to act as that identity",
                       authcid=authcid)
    if record.password_hash is None:
        _upgrade(ctx, record, password)
    return Success(authcid, authzid if authzid and authzid != authcid else None, None, mechanism)


def _verified_user(ctx: ServerContext, authcid: str, password: str) -> UserRecord | None:
    """The user if ``password`` is theirs, else None; every name costs what its (virtual) profile costs."""
    users = ctx.users
    record = users.get_user(authcid)
    # Drawn for every name, so that no outcome skips (or adds) this work.
    stand_in = plain_stand_in(users, ctx.server_secret, authcid)
    if record is not None and record.password_hash is not None:
        ok = verify_password_hash(record.password_hash, password)
    elif record is not None and record.scram:
        ok = _check_scram(record, password)
    else:  # unknown, or a user with no credential: what the virtual user would cost
        _spend_like(stand_in, password)
        ok = False
    return record if ok else None


def _upgrade(ctx: ServerContext, record: UserRecord, password: str) -> None:
    """Give a user imported with SCRAM keys only an argon2 hash and default SCRAM keys.

    The password was just verified, so the imported (often weaker, and
    easily recognised) parameters can go.  Only through a store's
    ``upgrade_credentials(current, upgraded)``, a compare-and-set that
    never undoes a password change made meanwhile, never waits for a lock
    and keeps ``changed`` (the user's tokens stay valid).  Best effort: a
    store without it, or whose ``upgrade_on_login`` is false, is left
    alone, and a store error never fails the login.
    """
    users = ctx.users
    upgrade = getattr(users, "upgrade_credentials", None)
    if upgrade is None or not getattr(users, "upgrade_on_login", True):
        return
    try:
        upgraded = make_user(record.username, password, iterations=users.default_iterations)
        if not upgrade(record, upgraded):
            _log.debug("credentials of %r not upgraded: changed meanwhile or store busy", record.username)
    except Exception as exc:  # any store, any failure: the login stands
        _log.warning("could not upgrade the credentials of %r: %s", record.username, type(exc).__name__)


class PlainServer:
    """Server side of PLAIN (RFC 4616 §2, §3)."""

    name = "PLAIN"

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._state = OneMessageState.START

    @property
    def done(self) -> bool:
        return self._state is OneMessageState.DONE

    def step(self, response: bytes | None) -> ServerStep:
        if self._state is OneMessageState.DONE:
            raise UsageError("PLAIN exchange already finished")
        if response is None:
            if self._state is OneMessageState.START:
                self._state = OneMessageState.EMPTY_CHALLENGE_SENT
                return Challenge(b"")
            response = b""
        self._state = OneMessageState.DONE
        try:
            authzid, authcid, passwd = parse_plain(response)
        except ProtocolError as exc:
            return Failure(FailureReason.INVALID_ENCODING, str(exc))
        return self._authenticate(authzid, authcid, passwd)

    def _authenticate(self, authzid: str, authcid: str, passwd: str) -> ServerStep:
        return verify_login(self._ctx, self.name, authzid, authcid, passwd)


class PlainClient:
    """Client side of PLAIN: the whole message is the initial response."""

    name = "PLAIN"

    def __init__(self, creds: ClientCredentials) -> None:
        self._creds = creds

    def start(self) -> bytes:
        c = self._creds
        encoded = [f.encode("utf-8") for f in (c.authzid or "", c.username, c.secret)]
        if any(b"\x00" in f for f in encoded):
            raise UsageError("PLAIN fields must not contain NUL")
        if not encoded[1] or not encoded[2]:
            raise UsageError("PLAIN needs a username and a password")
        return b"\x00".join(encoded)

    def step(self, challenge: bytes) -> bytes:
        # A binding without initial-response support sends start()'s message
        # after the empty challenge itself; a further challenge is an error.
        raise ProtocolError(FailureReason.INVALID_ENCODING, "unexpected challenge after PLAIN message")

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data:
            raise ProtocolError(FailureReason.INVALID_ENCODING, "PLAIN has no additional data")
