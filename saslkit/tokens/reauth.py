"""Minting, verifying and revoking reauthentication tokens.

Two token types, both recorded in a :class:`~saslkit.tokens.records.TokenStore`:

* ``RANDOM``: ``sk1.<id>.<mac>`` where ``id`` is 256 bits from a CSPRNG and
  ``mac = HMAC-SHA-256(token key, "saslkit-token" NUL id)``.  The store keeps
  the id and the key id only; the usable token is re-derived with the key
  ring (HT servers need the token string itself, HT-09 §3.1).
* ``JWT`` (PyJWT): EdDSA (Ed25519) by default, HS256 optional; claims
  ``sub``, ``aud``, ``iat``, ``jti`` and optional ``exp``; the ``kid`` header
  selects the key.  Signatures of both algorithms are deterministic, so the
  token string is re-derived from the stored claims in the same way.

Verification order never leaks more than it must: the secret is checked
before the record's state (revoked, expired, pinned) is reported.
Expiry is optional (draft-ietf-kitten-sasl-rememberme-00 §5 item 2: tokens
need not expire); revocation works per token, per user and by issue time.

Peer input is bounded before it is decoded: a token is at most
:data:`MAX_TOKEN_LENGTH` ASCII characters, a JWT's three parts are strict
base64url (RFC 7515 §2, RFC 4648 §5) and its payload at most
:data:`MAX_JWT_PAYLOAD` characters, which must be one flat JSON object
(RFC 7519 §7.2 step 10): nested or malformed payloads are refused before or
while decoding, so any malformed token is an ordinary
:class:`~saslkit.errors.TokenRejected`, never an internal error.

Each user holds at most :attr:`TokenService.max_tokens_per_user` live tokens
(default 20): minting one more revokes that user's oldest live token.  The
cap bounds the HT lookup (HT-09 §3.1), which looks up and HMACs exactly that
many candidates for every user, known or not (see
:meth:`TokenService.secrets_for`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import StoreError, TokenRejected, UsageError
from ..keys import Key, KeyRing, KeyRingError
from ..mechanism import Success
from .records import TOKEN_TYPES, TokenRecord, TokenStore, live_records

__all__ = [
    "DEFAULT_MAX_TOKENS_PER_USER",
    "MAX_JWT_PAYLOAD",
    "MAX_TOKEN_LENGTH",
    "TokenService",
    "identified",
    "rejected_user",
]

_log = logging.getLogger("saslkit")

MAX_TOKEN_LENGTH = 4096
#: Longest JWT payload part (base64url characters) decoded; ours are about 200.
MAX_JWT_PAYLOAD = 2048
#: Live tokens one user may hold (see :meth:`TokenService.secrets_for`).
DEFAULT_MAX_TOKENS_PER_USER = 20
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")
#: A JSON string (RFC 8259 §7); what is left once strings are removed may hold no nesting.
_JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANDOM_PREFIX = "sk1"
#: First element of the derived-token cache key of an HT slot (ids never hold NUL).
_SLOT = "\x00ht-slot"
#: What an empty HT slot goes through instead of a record (its key id names no key).
_PAD_RECORD = TokenRecord("A" * 43, "", "RANDOM", "\x00padding", 0.0)
_JWT_ALGORITHMS = {"ed25519": "EdDSA", "hs256": "HS256"}
#: Mechanisms whose success does not count as a strong authentication for minting.
TOKEN_MECHANISM_PREFIXES = ("REMEMBERME", "HT-", "HT2-", "STOKEN")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class TokenService:
    """The token authority of one deployment: one store, one key ring.

    ``clock`` and ``random_bytes`` are injectable (sans-IO habit); ``audience``
    names this service in JWT ``aud``; ``max_tokens_per_user`` caps each
    user's live tokens (minting beyond it revokes the oldest).  Implements
    :class:`~saslkit.tokens.records.TokenVerifier` for the mechanisms.
    """

    def __init__(
        self,
        store: TokenStore,
        keys: KeyRing,
        *,
        audience: str = "saslkit",
        jwt_key_kind: str = "ed25519",
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        max_tokens_per_user: int = DEFAULT_MAX_TOKENS_PER_USER,
    ) -> None:
        if jwt_key_kind not in _JWT_ALGORITHMS:
            raise UsageError(f"JWT keys are ed25519 or hs256, not {jwt_key_kind!r}")
        if max_tokens_per_user < 1:
            raise UsageError("max_tokens_per_user must be at least 1")
        self.store = store
        self.keys = keys
        self.audience = audience
        self.jwt_key_kind = jwt_key_kind
        self.default_ttl = default_ttl
        self._clock = clock
        self._random = random_bytes
        self.max_tokens_per_user = max_tokens_per_user
        self._derived: dict[tuple[object, ...], str] = {}
        self._derived_lock = threading.Lock()
        self._signing_keys: dict[tuple[str, bytes], Ed25519PrivateKey] = {}

    DERIVED_CACHE_SIZE = 10000

    # ------------------------------------------------------------ minting

    def mint(
        self,
        user: str,
        token_type: str = "RANDOM",
        *,
        mechanism: str | None = None,
        ttl: float | None = None,
        label: str | None = None,
    ) -> tuple[str, TokenRecord]:
        """Mint a token for ``user`` (an administrative act; bindings use :meth:`mint_after`).

        Returns the token (shown once, never stored) and its record.
        """
        token_type = token_type.upper()
        if token_type not in TOKEN_TYPES:
            raise UsageError(f"unknown token type {token_type!r} (one of {', '.join(TOKEN_TYPES)})")
        if not user:
            raise UsageError("token needs a user")
        ttl = self.default_ttl if ttl is None else ttl
        if ttl is not None and ttl <= 0:
            raise UsageError("ttl must be positive")
        created = int(self._clock())  # whole seconds: JWT iat/exp are integers
        expires = None if ttl is None else created + int(ttl)
        key = self.keys.current("token" if token_type == "RANDOM" else self.jwt_key_kind)
        token_id = self._new_id(32 if token_type == "RANDOM" else 16)
        record = TokenRecord(
            token_id, user, token_type, key.id, float(created), None if expires is None else float(expires),
            mechanism.upper() if mechanism else None, label,
        )
        token = self._derive(record, key)
        self.store.put(record)
        self._cache([(_cache_key(record), token)])  # the HT lookup finds it without deriving it again
        self._enforce_cap(user)
        return token, record

    def _enforce_cap(self, user: str) -> None:
        """Revoke ``user``'s oldest live tokens beyond :attr:`max_tokens_per_user`.

        Two processes minting at once may leave one token too many for a
        while; the HT lookup then does more work for that user
        (:meth:`secrets_for`) until the next mint trims it.
        """
        now = self._clock()
        live = live_records(self.store, user, now)  # oldest first
        for record in live[: max(0, len(live) - self.max_tokens_per_user)]:
            self.store.revoke(record.id, now)

    def _new_id(self, size: int) -> str:
        """Random base64url id that does not start with ``-`` (so command lines never take it for an option)."""
        while True:
            token_id = _b64url(self._random(size))
            if not token_id.startswith("-"):
                return token_id

    def mint_after(
        self,
        success: Success,
        token_type: str = "RANDOM",
        *,
        strong_mechanisms: Collection[str] | None = None,
        **options: Any,
    ) -> tuple[str, TokenRecord]:
        """Mint for the identity of a successful authentication, which must be a strong one.

        A token-based login (REMEMBERME, HT, STOKEN) cannot mint a new token,
        so a stolen token cannot renew itself; ``strong_mechanisms`` narrows
        the accepted mechanisms further (e.g. SCRAM only).
        """
        mech = success.mechanism.upper()
        if not mech or mech.startswith(TOKEN_MECHANISM_PREFIXES):
            raise UsageError(f"tokens are minted only after a strong authentication, not {mech or 'unknown'}")
        if strong_mechanisms is not None and mech not in {m.upper() for m in strong_mechanisms}:
            raise UsageError(f"{mech} is not accepted for minting tokens here")
        return self.mint(success.identity, token_type, **options)

    # ------------------------------------------------------------ derivation

    def _derive(self, record: TokenRecord, key: Key) -> str:
        if record.type == "RANDOM":
            mac = hmac.digest(key.secret, b"saslkit-token\x00" + record.id.encode("ascii"), "sha256")
            return f"{_RANDOM_PREFIX}.{record.id}.{_b64url(mac)}"
        claims: dict[str, Any] = {
            "sub": record.user,
            "aud": self.audience,
            "iat": int(record.created),
            "jti": record.id,
        }
        if record.expires is not None:
            claims["exp"] = int(record.expires)
        if record.mechanism:
            claims["mech"] = record.mechanism
        algorithm = _JWT_ALGORITHMS[key.kind]
        signing_key: Any = self._ed25519_key(key) if key.kind == "ed25519" else key.secret
        return jwt.encode(claims, signing_key, algorithm=algorithm, headers={"kid": key.id})

    def _ed25519_key(self, key: Key) -> Ed25519PrivateKey:
        """The key object of an Ed25519 key (loading it costs about as much as a signature), kept per key."""
        cache_key = (key.id, key.secret)
        with self._derived_lock:
            loaded = self._signing_keys.get(cache_key)
        if loaded is None:
            loaded = Ed25519PrivateKey.from_private_bytes(key.secret)
            with self._derived_lock:
                if len(self._signing_keys) >= 64:  # a ring holds a handful of keys
                    self._signing_keys.clear()
                self._signing_keys[cache_key] = loaded
        return loaded

    def token_for(self, record: TokenRecord) -> str | None:
        """Re-derive a record's token string, or ``None`` if its key is retired.

        Derived strings are kept in a bounded in-process cache (a JWT costs an
        Ed25519 signature to rebuild); the cache holds nothing the key ring
        could not recompute, and a retired key is checked on every call.
        """
        key = self.keys.get(record.key_id)
        if key is None:
            return None
        cache_key = _cache_key(record)
        with self._derived_lock:
            token = self._derived.get(cache_key)
        if token is None:
            token = self._derive(record, key)  # outside the lock: a signature may take a while
            self._cache([(cache_key, token)])
        return token

    def _cache(self, entries: Collection[tuple[tuple[object, ...], str]]) -> None:
        """Insert into the bounded derived-token cache, evicting the oldest entries (FIFO).

        Threads share the cache: evicting and inserting is one step under
        the lock, so no thread sees a key vanish between two operations.
        """
        with self._derived_lock:
            for cache_key, token in entries:
                while len(self._derived) >= self.DERIVED_CACHE_SIZE:
                    del self._derived[next(iter(self._derived))]
                self._derived[cache_key] = token

    # ------------------------------------------------------------ verification

    def _parse(self, token: str) -> tuple[str, str]:
        """Return ``(type, id)`` from the token's public parts (nothing verified yet)."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenRejected("invalid-token", "malformed token")
        parts = token.split(".")
        if len(parts) != 3 or not all(_B64URL_RE.fullmatch(part) for part in parts):
            raise TokenRejected("invalid-token", "malformed token")
        if parts[0] == _RANDOM_PREFIX:
            if len(parts[1]) != 43:
                raise TokenRejected("invalid-token", "malformed token")
            return "RANDOM", parts[1]
        # A JWT (RFC 7519 §7.2): only the jti is read here; the whole string is
        # compared with the re-signed token afterwards, which checks the signature.
        claims = _jwt_claims(parts[1])
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenRejected("invalid-token", "token has no id")
        return "JWT", jti

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        """Check a bearer token; return its record or raise :class:`TokenRejected`."""
        token_type, token_id = self._parse(token)
        record = self.store.get(token_id)
        if record is None or record.type != token_type:
            raise TokenRejected("unknown-user", "unknown token")
        try:
            expected = self.token_for(record)
            if expected is None or not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii")):
                raise TokenRejected("invalid-token", "invalid token")
            self._check_state(record, mechanism)
        except TokenRejected as exc:
            raise identified(exc, record.user) from None
        return record

    def _check_state(self, record: TokenRecord, mechanism: str) -> None:
        now = self._clock()
        if record.revoked is not None:
            raise TokenRejected(
                "revoked",
                f"token was revoked on {_when(record.revoked)}; authenticate with your password to get a new one",
            )
        if record.expires is not None and now >= record.expires:
            raise TokenRejected("expired", f"token expired on {_when(record.expires)}")
        if record.mechanism is not None and record.mechanism != mechanism.upper():
            raise TokenRejected("wrong-mechanism", f"token is bound to {record.mechanism}")

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        """Active tokens of ``user`` usable with ``mechanism``, with their re-derived strings.

        The work must not tell how many tokens a user has, or whether the
        user exists (RFC 4422 §3.6 advice).  Every call fills exactly
        :attr:`max_tokens_per_user` (``cap``) slots, more only if a race left
        the user over the cap (the next mint trims it): slot *i* holds the
        user's *i*-th live token, or nothing (no token, or its key retired).

        * The store is read with ``list_live`` padded to ``cap`` records
          (:func:`~saslkit.tokens.records.live_records`): revoked and expired
          records are not read, and a live one costs what padding costs.
          Empty slots then go through the same steps as tokens.
        * Each slot has a key in the bounded derived-token cache: the
          token's (as in :meth:`token_for`) or, for an empty slot, the
          name's marker (the user name), which every call also looks up once.
          If all ``cap + 1`` keys are cached (a *hit*), nothing is derived.
        * Otherwise (a *miss*) every slot is derived at the same cost, one
          RANDOM derivation (an HMAC) plus one JWT signature, whether it
          holds a RANDOM token, a JWT or nothing (:meth:`_derive_slot`), and
          the tokens and the marker are cached.

        Tokens cached by :meth:`verify` or :meth:`mint` without the marker
        give no partial hit: such a name costs a full miss, never a count of
        hits.  So the first attempt at a name on this process costs ``cap``
        misses and later ones ``cap`` hits, whether the name exists or not
        and whatever it holds; revoking a token or retiring its key empties
        its slot without a miss, and a token minted here is cached at once.

        What the time still tells (this process's cache state, never a
        count): a name that hits on its first attempt was looked up here
        recently, by its user or by anyone, so a user who logs in with HT
        can be told from a name nobody uses until the cache forgets it; a
        token minted since on *another* process, or eviction under a flood
        of other names (the cache is FIFO, bounded at
        :attr:`DERIVED_CACHE_SIZE` entries, one per name plus one per token),
        turns a cached name into one miss, which looks like any name's first
        attempt; a user over the cap after a race costs one slot more per
        extra token; a store without ``list_live`` costs more per record.
        """
        now = self._clock()
        mech = mechanism.upper()
        cap = self.max_tokens_per_user
        records = [
            r for r in live_records(self.store, user, now, cap)
            if r.mechanism is None or r.mechanism == mech
        ]
        marker: tuple[object, ...] = (_SLOT, user, "RANDOM", "", 0.0, None, None)  # shaped like a token's key
        slots: list[tuple[tuple[object, ...], TokenRecord | None, Key | None]] = []
        for i in range(max(cap, len(records))):  # the same steps for a token and for padding
            real = i < len(records)
            record = records[i] if real else _PAD_RECORD
            key = self.keys.get(record.key_id)
            cache_key = _cache_key(record)
            if real and key is not None:
                slots.append((cache_key, record, key))
            else:
                slots.append((marker, None, None))
        with self._derived_lock:
            named = self._derived.get(marker)
            cached = [self._derived.get(cache_key) for cache_key, _, _ in slots]
        if named is not None and None not in cached:  # a hit
            return [(held, token) for (_, held, _), token in zip(slots, cached, strict=True)
                    if held is not None and token]
        out: list[tuple[TokenRecord, str]] = []
        entries: list[tuple[tuple[object, ...], str]] = []
        for cache_key, held, key in slots:  # a miss: derive every slot, outside the lock
            token = self._derive_slot(held, key)
            if held is not None and token is not None:
                out.append((held, token))
                entries.append((cache_key, token))
        entries.append((marker, ""))  # last: FIFO eviction takes the marker after the tokens
        self._cache(entries)
        return out

    def _derive_slot(self, record: TokenRecord | None, key: Key | None) -> str | None:
        """Derive ``record``'s token with ``key`` (or nothing) at the fixed cost of one HMAC plus one JWT signature.

        Each type takes the same steps whether it derives the record's token
        or a dummy: the dummy's key and record are made either way.
        """
        token: str | None = None
        for token_type, kind in (("RANDOM", "token"), ("JWT", self.jwt_key_kind)):
            dummy = self._dummy(kind, token_type)
            if record is not None and key is not None and record.type == token_type:
                token = self._derive(record, key)
            elif dummy is not None:
                self._derive(*dummy)
        return token

    def _dummy(self, kind: str, token_type: str) -> tuple[TokenRecord, Key] | None:
        """A record nobody holds and the current key of ``kind`` to derive it with (``None`` if the ring has none)."""
        try:
            key = self.keys.current(kind)
        except KeyRingError:
            return None  # no key of that kind: no real token of that type derives either
        return TokenRecord("A" * 43 if token_type == "RANDOM" else "A" * 22, "\x00dummy", token_type, key.id, 0.0), key

    #: ``last_used`` is written at most this often per token, so a busy token
    #: costs no store write on every login (resolution of ``token list``).
    LAST_USED_RESOLUTION = 60.0

    def mark_used(self, record: TokenRecord) -> None:
        """Record a use of ``record``: best effort, never raises, never waits for a lock.

        A login must not depend on a write succeeding (nor wait behind another
        process's write lock), so the store's ``touch`` skips the write when
        the store is busy and any store error is only logged at debug level.
        Done in line rather than by a background writer: the service stays
        free of threads and the write is at most one short statement; a
        skipped write is harmless because ``last_used`` only has
        :attr:`LAST_USED_RESOLUTION` resolution and the next login retries.
        """
        now = self._clock()
        if record.last_used is not None and now - record.last_used < self.LAST_USED_RESOLUTION:
            return
        try:
            self.store.touch(record.id, now)
        except StoreError as exc:
            _log.debug("token last_used not recorded (%s)", type(exc).__name__)

    # ------------------------------------------------------------ management

    def list(self, user: str | None = None) -> list[TokenRecord]:
        return self.store.list(user)

    def revoke(self, token_id: str) -> bool:
        return self.store.revoke(token_id, self._clock())

    def revoke_user(self, user: str, *, before: float | None = None) -> int:
        """Revoke a user's tokens (those created before ``before`` if given)."""
        return self.store.revoke_matching(self._clock(), user=user, before=before)

    def revoke_before(self, before: float) -> int:
        """Revoke every user's tokens created before ``before``."""
        return self.store.revoke_matching(self._clock(), before=before)

    @staticmethod
    def fingerprint(token: str) -> str:
        """A short, non-reversible name for a token, safe for logs."""
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


def _cache_key(record: TokenRecord) -> tuple[object, ...]:
    """The derived-token cache key of a record: every field its token string is derived from."""
    return (record.id, record.type, record.user, record.key_id, record.created, record.expires, record.mechanism)


def identified(exc: TokenRejected, user: str) -> TokenRejected:
    """Tag a rejection of an identified token with its user (``rejected_user`` reads it back).

    For logs and the per-user auth penalty (:attr:`saslkit.mechanism.Failure.authcid`), never for the peer.
    """
    setattr(exc, "user", user)  # noqa: B010 - an optional attribute, read with getattr
    return exc


def rejected_user(exc: TokenRejected) -> str | None:
    """The user of the token a :class:`TokenRejected` is about, when the token was identified."""
    user = getattr(exc, "user", None)
    return user if isinstance(user, str) else None


def _jwt_claims(payload: str) -> dict[str, Any]:
    """Decode a JWT payload part (already strict base64url) into one flat JSON object.

    The size is bounded before decoding and the JSON may nest nothing: the
    text left once strings are removed must hold exactly one ``{`` and no
    ``[``, so no depth reaches the decoder (RFC 7519 §7.2 step 10).  Any
    decoding error is a :class:`TokenRejected`.
    """
    if len(payload) > MAX_JWT_PAYLOAD or len(payload) % 4 == 1:
        raise TokenRejected("invalid-token", "malformed token")
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
        skeleton = _JSON_STRING_RE.sub('""', text)
        if skeleton.count("{") != 1 or "[" in skeleton:
            raise ValueError("claims must be one flat JSON object")
        claims = json.loads(text)
    except (ValueError, RecursionError, binascii.Error):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TokenRejected("invalid-token", "malformed token") from None
    if not isinstance(claims, dict) or any(isinstance(v, (dict, list)) for v in claims.values()):
        raise TokenRejected("invalid-token", "malformed token")
    return claims
