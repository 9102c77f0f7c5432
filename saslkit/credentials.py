"""User credentials: SCRAM stored keys and argon2id password hashes.

A user record never holds a password.  It holds, per SCRAM hash, the salt,
iteration count, StoredKey and ServerKey (RFC 5802 §3), and an argon2id hash
of the SASLprep-ed password for PLAIN.  The SCRAM keys can be exported and
imported in two text forms:

* Dovecot / GNU SASL: ``{SCRAM-SHA-256}<iter>,<salt b64>,<StoredKey b64>,<ServerKey b64>``
  (what ``gsasl --mkpasswd`` prints);
* RFC 5803 / PostgreSQL: ``SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol, runtime_checkable

import argon2

from .errors import PreparationError, UsageError
from .saslprep import saslprep

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "SCRAM_HASHES",
    "CredentialProfile",
    "MemoryUserStore",
    "MutableUserStore",
    "ScramCredential",
    "UserRecord",
    "UserStore",
    "fake_salt",
    "hash_password",
    "make_user",
    "prepare_username",
    "salted_password",
    "scram_keys",
    "verify_password_hash",
]

#: IANA hash name -> hashlib name and digest size (RFC 5802 §4, RFC 7677, draft-melnikov-scram-sha-512).
SCRAM_HASHES: Mapping[str, tuple[str, int]] = {
    "SHA-1": ("sha1", 20),
    "SHA-256": ("sha256", 32),
    "SHA-512": ("sha512", 64),
}
#: RFC 5802 §5.1 and RFC 7677 §3: "SHOULD be at least 4096".
MIN_ITERATIONS = 4096
#: Default for new users; draft-melnikov-scram-sha-512 §3 asks for at least 10000 and Prosody uses 10000.
DEFAULT_ITERATIONS = 10000
#: Upper bound accepted anywhere: a hostile peer must not make us spin (RFC 5802 §9).
MAX_ITERATIONS = 10_000_000
SALT_LENGTH = 16
MAX_SALT_LENGTH = 1024

_password_hasher = argon2.PasswordHasher()  # argon2id with the library's RFC 9106 defaults


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise UsageError(f"{what} is not valid base64") from exc


def _hash_info(hash_name: str) -> tuple[str, int]:
    try:
        return SCRAM_HASHES[hash_name]
    except KeyError:
        raise UsageError(f"unsupported SCRAM hash {hash_name!r}") from None


def salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    """``Hi(Normalize(password), salt, i)`` (RFC 5802 §2.2): PBKDF2 over the SASLprep-ed password."""
    algo, _ = _hash_info(hash_name)
    normalized = saslprep(password, stored=True)
    return hashlib.pbkdf2_hmac(algo, normalized.encode("utf-8"), salt, iterations)


def scram_keys(hash_name: str, salted: bytes) -> tuple[bytes, bytes, bytes]:
    """Return ``(ClientKey, StoredKey, ServerKey)`` from a SaltedPassword (RFC 5802 §3)."""
    algo, _ = _hash_info(hash_name)
    client_key = hmac.digest(salted, b"Client Key", algo)
    stored_key = hashlib.new(algo, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", algo)
    return client_key, stored_key, server_key


def fake_salt(secret: bytes, username: str, length: int = SALT_LENGTH, hash_name: str | None = None) -> bytes:
    """Deterministic salt shown for an unknown user: HMAC-SHA-256(secret, username [, hash]).

    Two probes for the same unknown name see the same salt, so the server does
    not reveal which names exist (RFC 5802 §9 "unknown-user").  Without
    ``hash_name`` the salt is the one shared by all hashes (as :func:`make_user`
    does); with it, one per hash (as imported users often have).  Longer than
    32 octets, further HMAC blocks are chained on (counter mode).
    """
    message = b"saslkit-fake-salt\x00" + username.encode("utf-8")
    if hash_name is not None:
        message += b"\x00" + hash_name.encode("ascii")
    out = hmac.digest(secret, message, "sha256")
    block = 1
    while len(out) < length:
        out += hmac.digest(secret, message + b"\x00" + block.to_bytes(4, "big"), "sha256")
        block += 1
    return out[:length]


@dataclass(frozen=True)
class ScramCredential:
    """What a SCRAM server stores for one user and one hash (RFC 5802 §3)."""

    hash_name: str
    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _, size = _hash_info(self.hash_name)
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise UsageError(f"iteration count {self.iterations} out of range")
        if len(self.stored_key) != size or len(self.server_key) != size:
            raise UsageError(f"SCRAM-{self.hash_name} keys must be {size} octets")
        if not 1 <= len(self.salt) <= MAX_SALT_LENGTH:
            raise UsageError("salt must be 1..1024 octets")

    @property
    def mechanism(self) -> str:
        return f"SCRAM-{self.hash_name}"

    @cached_property
    def salt_b64(self) -> str:
        """The salt as sent in ``s=`` (computed once per credential)."""
        return _b64(self.salt)

    @classmethod
    def derive(
        cls, hash_name: str, password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramCredential:
        """Derive the stored keys from a password (SASLprep-ed as a stored string)."""
        _, stored, server = scram_keys(hash_name, salted_password(hash_name, password, salt, iterations))
        return cls(hash_name, salt, iterations, stored, server)

    def to_dovecot(self) -> str:
        """``{SCRAM-SHA-256}4096,<salt>,<StoredKey>,<ServerKey>`` (Dovecot, ``gsasl --mkpasswd``)."""
        return (
            f"{{{self.mechanism}}}{self.iterations},{_b64(self.salt)},"
            f"{_b64(self.stored_key)},{_b64(self.server_key)}"
        )

    def to_rfc5803(self) -> str:
        """``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5803 §3, PostgreSQL)."""
        return (
            f"{self.mechanism}${self.iterations}:{_b64(self.salt)}$"
            f"{_b64(self.stored_key)}:{_b64(self.server_key)}"
        )

    @classmethod
    def parse(cls, text: str) -> ScramCredential:
        """Parse either export form; raises :class:`UsageError` on anything else."""
        text = text.strip()
        m = _DOVECOT_RE.fullmatch(text) or _RFC5803_RE.fullmatch(text)
        if m is None:
            raise UsageError("not a {SCRAM-…}i,salt,StoredKey,ServerKey or RFC 5803 SCRAM credential")
        hash_name = m["hash"]
        if hash_name not in SCRAM_HASHES:
            raise UsageError(f"unsupported SCRAM hash {hash_name!r}")
        iterations = int(m["iter"])
        return cls(
            hash_name,
            _unb64(m["salt"], "salt"),
            iterations,
            _unb64(m["stored"], "StoredKey"),
            _unb64(m["server"], "ServerKey"),
        )


_B64 = r"[A-Za-z0-9+/]+={0,2}"
_DOVECOT_RE = re.compile(
    rf"\{{SCRAM-(?P<hash>SHA-[0-9]+)\}}(?P<iter>[0-9]{{1,9}}),(?P<salt>{_B64}),"
    rf"(?P<stored>{_B64}),(?P<server>{_B64})(?:,[0-9a-fA-F]*)?"
)
_RFC5803_RE = re.compile(
    rf"SCRAM-(?P<hash>SHA-[0-9]+)\$(?P<iter>[0-9]{{1,9}}):(?P<salt>{_B64})\$"
    rf"(?P<stored>{_B64}):(?P<server>{_B64})"
)


@dataclass(frozen=True)
class UserRecord:
    """One user's stored credentials.  Never holds the password."""

    username: str
    scram: Mapping[str, ScramCredential] = field(default_factory=dict)
    password_hash: str | None = field(default=None, repr=False)  # argon2id PHC string
    #: When the credentials were last set (POSIX seconds), if the store knows: a token
    #: minted before this time must not authenticate (a password change ends old sessions).
    changed: float | None = field(default=None, compare=False)

    def scram_for(self, hash_name: str) -> ScramCredential | None:
        return self.scram.get(hash_name)


#: Characters of the unpadded base64 that argon2 PHC strings use for salt and hash.
ARGON2_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def argon2_parameters(password_hash: str) -> str:
    """The parameter part of an argon2 PHC string: ``$argon2id$v=19$m=65536,t=3,p=4``.

    Salt and hash are cut off the end (SQLite computes the same with nested ``rtrim``).
    """
    return password_hash.rstrip(ARGON2_B64).rstrip("$").rstrip(ARGON2_B64).rstrip("$")


@dataclass(frozen=True)
class CredentialProfile:
    """What a peer can learn of a user's credentials without any secret.

    ``scram`` holds ``(hash name, iterations, salt length)`` per SCRAM hash
    present, sorted by hash name (shown in server-first, RFC 5802 §5.1);
    ``shared_salt`` whether one salt serves every hash (always true for one or
    none); ``argon2`` the argon2 parameters (:func:`argon2_parameters`) or
    ``None``: with the SCRAM iteration counts they set what PLAIN costs.
    Unknown names are shown a profile drawn from the store's population of
    them (RFC 5802 §9, RFC 4422 §3.6 "unknown-user").
    """

    scram: tuple[tuple[str, int, int], ...] = ()
    shared_salt: bool = True
    argon2: str | None = None

    @classmethod
    def of(cls, record: UserRecord) -> CredentialProfile:
        creds = sorted(record.scram.values(), key=lambda c: c.hash_name)
        scram = tuple((c.hash_name, c.iterations, len(c.salt)) for c in creds)
        shared = len({c.salt for c in creds}) <= 1
        argon = None if record.password_hash is None else argon2_parameters(record.password_hash)
        return cls(scram, shared, argon)

    def scram_for(self, hash_name: str) -> tuple[int, int] | None:
        """``(iterations, salt length)`` of ``hash_name``, or None if this profile lacks it."""
        for name, iterations, salt_length in self.scram:
            if name == hash_name:
                return iterations, salt_length
        return None

    @cached_property
    def key(self) -> bytes:
        """A canonical encoding (for sorting and for the per-name draw)."""
        parts = [f"{h}:{i}:{n}" for h, i, n in self.scram]
        return f"{' '.join(parts)}|{int(self.shared_salt)}|{self.argon2 or ''}".encode()


def hash_password(password: str) -> str:
    """argon2id hash of the SASLprep-ed password (RFC 4616 §2: prepare before hashing)."""
    prepared = saslprep(password, stored=True)
    if not prepared:
        raise UsageError("password is empty after SASLprep")
    return _password_hasher.hash(prepared)


def verify_password_hash(password_hash: str, prepared_password: str) -> bool:
    """Check an argon2 hash; any malformed hash simply fails."""
    try:
        return _password_hasher.verify(password_hash, prepared_password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


# A hash of a random password, verified against when the user does not exist,
# so PLAIN takes the same time for unknown and known users.
_DUMMY_HASH: str | None = None


def dummy_password_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))
    return _DUMMY_HASH


#: :func:`argon2_parameters` of the hashes :func:`hash_password` makes.
DEFAULT_ARGON2_PARAMETERS = (
    f"$argon2{_password_hasher.type.name.lower()}$v={argon2.low_level.ARGON2_VERSION}"
    f"$m={_password_hasher.memory_cost},t={_password_hasher.time_cost},p={_password_hasher.parallelism}"
)
_ARGON2_PARAMETERS_RE = re.compile(r"\$argon2(?P<type>id|i|d)\$v=(?P<v>[0-9]{1,3})\$m=(?P<m>[0-9]{1,7}),"
                                   r"t=(?P<t>[0-9]{1,4}),p=(?P<p>[0-9]{1,3})")


@functools.lru_cache(maxsize=16)
def dummy_password_hash_like(parameters: str) -> str:
    """An argon2 hash of a random password made with ``parameters`` (:func:`argon2_parameters`).

    Verifying a password against it costs what verifying against a stored hash
    with those parameters costs.  Parameters this library cannot use (malformed,
    or beyond 4 GiB / 1000 passes) give :func:`dummy_password_hash`.
    """
    if parameters == DEFAULT_ARGON2_PARAMETERS:
        return dummy_password_hash()
    m = _ARGON2_PARAMETERS_RE.fullmatch(parameters)
    if m is None or int(m["v"]) != argon2.low_level.ARGON2_VERSION:
        return dummy_password_hash()
    memory, passes, lanes = int(m["m"]), int(m["t"]), int(m["p"])
    if not (8 * lanes <= memory <= 4 * 1024 * 1024 and 1 <= passes <= 1000 and 1 <= lanes <= 255):
        return dummy_password_hash()
    kind = {"id": argon2.Type.ID, "i": argon2.Type.I, "d": argon2.Type.D}[m["type"]]
    hasher = argon2.PasswordHasher(time_cost=passes, memory_cost=memory, parallelism=lanes, type=kind)
    return hasher.hash(secrets.token_urlsafe(16))


def make_user(
    username: str,
    password: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    salt: bytes | None = None,
    hashes: Iterable[str] = tuple(SCRAM_HASHES),
    argon2_hash: bool = True,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> UserRecord:
    """Build a :class:`UserRecord` from a password (SASLprep-ed as a stored string)."""
    prepared_name = saslprep(username)
    if not prepared_name:
        raise UsageError("username is empty after SASLprep")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise UsageError(f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    try:
        if not saslprep(password, stored=True):
            raise UsageError("password is empty after SASLprep")
    except PreparationError as exc:
        raise UsageError(f"password rejected by SASLprep: {exc}") from exc
    salt = random_bytes(SALT_LENGTH) if salt is None else salt
    scram = {h: ScramCredential.derive(h, password, salt, iterations) for h in hashes}
    return UserRecord(prepared_name, scram, hash_password(password) if argon2_hash else None)


@runtime_checkable
class UserStore(Protocol):
    """What mechanisms need from a credential store: a lookup by prepared username.

    A store may also offer ``credential_profiles() -> Mapping[CredentialProfile, int]``
    (how many users have each profile; cheap, may be a little stale): unknown
    names are then shown parameters drawn from that population
    (:mod:`saslkit.unknown_users`).  Without it they get the defaults.
    """

    @property
    def default_iterations(self) -> int:
        """Iteration count new users get; shown for unknown users too."""
        ...

    def get_user(self, username: str) -> UserRecord | None:
        """Return the record or ``None``; raise TemporaryFailure if unreachable."""
        ...


def prepare_username(username: str) -> str:
    """The name a store keys a user by: SASLprep as a *query* string (RFC 4013 §2, RFC 4616 §2).

    Mechanisms prepare the authentication identity the same way before
    :meth:`UserStore.get_user`, so "ali" U+00AD "ce", "ali" U+200B "ce" and
    fullwidth U+FF41 U+FF4C U+FF49 U+FF43 U+FF45 all name the account ``alice``.  Raises :class:`UsageError`
    when the name fails SASLprep or is empty after it.
    """
    try:
        prepared = saslprep(username)
    except PreparationError as exc:
        raise UsageError(f"username rejected by SASLprep: {exc}") from exc
    if not prepared:
        raise UsageError("username is empty after SASLprep")
    return prepared


def _check_prepared(record: UserRecord) -> None:
    """Stores refuse a record whose name is not already prepared: it would be an account no login reaches."""
    if prepare_username(record.username) != record.username:
        raise UsageError(
            f"username {record.username!r} is not SASLprep-ed (store it as "
            f"{prepare_username(record.username)!r}: make_user and prepare_username do that)"
        )


@runtime_checkable
class MutableUserStore(UserStore, Protocol):
    """A store the CLI can manage.

    Records are keyed by their prepared name (:func:`prepare_username`):
    ``put_user``/``add_user`` refuse a record whose ``username`` is not in that
    form (:class:`UsageError`) rather than silently renaming it, and
    ``delete_user`` prepares the name it is given.
    """

    def put_user(self, record: UserRecord) -> None:
        """Insert or replace; stamps ``changed`` with the store's clock."""
        ...

    def add_user(self, record: UserRecord) -> bool:
        """Insert only if no user has that name, atomically; False (store untouched) if one has."""
        ...

    def delete_user(self, username: str) -> bool: ...

    def list_users(self) -> list[str]: ...


class MemoryUserStore:
    """A dict-backed :class:`MutableUserStore` for tests and embedding (thread-safe writes).

    Records given to the constructor keep their ``changed``; ``put_user`` and
    ``add_user`` stamp it with ``clock()`` (a password change ends older tokens).
    """

    #: Whether a PLAIN login of a user without an argon2 hash rewrites it with the
    #: defaults.  Off here: a memory store is filled from elsewhere at start, so an
    #: upgrade would last only until then (set it on an instance to turn it on).
    upgrade_on_login: bool = False
    #: Reads are dict lookups: a login step may run on an event loop (see ``ServerAuth.start_may_block``).
    reads_may_block: bool = False

    def __init__(
        self,
        users: Iterable[UserRecord] = (),
        *,
        default_iterations: int = DEFAULT_ITERATIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        records = list(users)
        for record in records:
            _check_prepared(record)
        self._users = {u.username: u for u in records}
        self._default_iterations = default_iterations
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def default_iterations(self) -> int:
        return self._default_iterations

    def get_user(self, username: str) -> UserRecord | None:
        return self._users.get(username)

    def put_user(self, record: UserRecord) -> None:
        _check_prepared(record)
        with self._lock:
            self._users[record.username] = replace(record, changed=self._clock())

    def upgrade_credentials(self, current: UserRecord, upgraded: UserRecord) -> bool:
        """Replace ``current`` by ``upgraded`` if it is still the stored record; ``changed`` is kept.

        A rehash after a login revealed the password is no credential change:
        the user's tokens stay valid (see :meth:`SQLiteUserStore.upgrade_credentials`).
        """
        _check_prepared(upgraded)
        with self._lock:
            if upgraded.username != current.username or self._users.get(current.username) is not current:
                return False
            self._users[current.username] = replace(upgraded, changed=current.changed)
            return True

    def add_user(self, record: UserRecord) -> bool:
        _check_prepared(record)
        with self._lock:
            if record.username in self._users:
                return False
            self._users[record.username] = replace(record, changed=self._clock())
            return True

    def delete_user(self, username: str) -> bool:
        """Delete the user ``prepare_username(username)`` names (or, failing SASLprep, exactly ``username``)."""
        with self._lock:
            return self._users.pop(_prepared_or_raw(username), None) is not None

    def list_users(self) -> list[str]:
        return sorted(self._users)

    def credential_profiles(self) -> dict[CredentialProfile, int]:
        """How many users have each :class:`CredentialProfile` (computed on each call: O(users))."""
        counts: dict[CredentialProfile, int] = {}
        for record in list(self._users.values()):
            profile = CredentialProfile.of(record)
            counts[profile] = counts.get(profile, 0) + 1
        return counts

    def __iter__(self) -> Iterator[UserRecord]:
        return iter(list(self._users.values()))


def _prepared_or_raw(username: str) -> str:
    try:
        return prepare_username(username)
    except UsageError:
        return username
