"""PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd``.

The server SASLprep-s authcid and authzid as query strings and the password
as a stored string (RFC 4616 §2), then verifies it against the user's
argon2id hash or, for users imported with SCRAM keys only, by recomputing the
StoredKey.  Unknown users cost the same argon2 verification as known ones.
"""

from __future__ import annotations

import hmac

from ..context import ClientCredentials, ServerContext
from ..credentials import (
    SCRAM_HASHES,
    UserRecord,
    dummy_password_hash,
    salted_password,
    scram_keys,
    verify_password_hash,
)
from ..errors import PreparationError, ProtocolError, UsageError
from ..mechanism import Challenge, Failure, FailureReason, ServerStep, Success
from ..saslprep import saslprep

__all__ = ["MAX_FIELD", "PlainClient", "PlainServer", "parse_plain"]

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


def _check_scram(record: UserRecord, password: str) -> bool:
    # Prefer the strongest hash present; one PBKDF2 run.
    for hash_name in reversed(tuple(SCRAM_HASHES)):
        cred = record.scram_for(hash_name)
        if cred is not None:
            _, stored, _ = scram_keys(
                hash_name, salted_password(hash_name, password, cred.salt, cred.iterations)
            )
            return hmac.compare_digest(stored, cred.stored_key)
    return False


class PlainServer:
    """Server side of PLAIN (RFC 4616 §2, §3)."""

    name = "PLAIN"

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._state = 0  # 0 start, 1 empty challenge sent, 2 done

    @property
    def done(self) -> bool:
        return self._state == 2

    def step(self, response: bytes | None) -> ServerStep:
        if self._state == 2:
            raise UsageError("PLAIN exchange already finished")
        if response is None:
            if self._state == 0:
                self._state = 1
                return Challenge(b"")
            response = b""
        self._state = 2
        try:
            authzid, authcid, passwd = parse_plain(response)
        except ProtocolError as exc:
            return Failure(FailureReason.INVALID_ENCODING, str(exc))
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
            return Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed")
        record = self._ctx.users.get_user(authcid)
        if record is None:
            verify_password_hash(dummy_password_hash(), password)
            ok = False
        elif record.password_hash is not None:
            ok = verify_password_hash(record.password_hash, password)
        else:
            ok = _check_scram(record, password)
        if not ok:
            return Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed")
        if authzid and authzid != authcid and not self._ctx.authorize(authcid, authzid):
            return Failure(FailureReason.AUTHORIZATION_FAILED, "not authorized to act as that identity")
        return Success(authcid, authzid if authzid and authzid != authcid else None, None, self.name)


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
