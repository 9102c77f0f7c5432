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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import TokenRejected, UsageError
from ..keys import Key, KeyRing
from ..mechanism import Success
from .records import TOKEN_TYPES, TokenRecord, TokenStore

__all__ = ["MAX_TOKEN_LENGTH", "TokenService"]

MAX_TOKEN_LENGTH = 4096
_RANDOM_PREFIX = "sk1"
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
    names this service in JWT ``aud``.  Implements
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
    ) -> None:
        if jwt_key_kind not in _JWT_ALGORITHMS:
            raise UsageError(f"JWT keys are ed25519 or hs256, not {jwt_key_kind!r}")
        self.store = store
        self.keys = keys
        self.audience = audience
        self.jwt_key_kind = jwt_key_kind
        self.default_ttl = default_ttl
        self._clock = clock
        self._random = random_bytes
        self._derived: dict[tuple[object, ...], str] = {}

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
        return token, record

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
        signing_key: Any = Ed25519PrivateKey.from_private_bytes(key.secret) if key.kind == "ed25519" else key.secret
        return jwt.encode(claims, signing_key, algorithm=algorithm, headers={"kid": key.id})

    def token_for(self, record: TokenRecord) -> str | None:
        """Re-derive a record's token string, or ``None`` if its key is retired.

        Derived strings are kept in a bounded in-process cache (a JWT costs an
        Ed25519 signature to rebuild); the cache holds nothing the key ring
        could not recompute, and a retired key is checked on every call.
        """
        key = self.keys.get(record.key_id)
        if key is None:
            return None
        cache_key = (record.id, record.type, record.user, record.key_id, record.created, record.expires,
                     record.mechanism)
        token = self._derived.get(cache_key)
        if token is None:
            token = self._derive(record, key)
            if len(self._derived) >= self.DERIVED_CACHE_SIZE:
                self._derived.pop(next(iter(self._derived)))
            self._derived[cache_key] = token
        return token

    # ------------------------------------------------------------ verification

    def _parse(self, token: str) -> tuple[str, str]:
        """Return ``(type, id)`` from the token's public parts (nothing verified yet)."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenRejected("invalid-token", "malformed token")
        if token.startswith(_RANDOM_PREFIX + "."):
            parts = token.split(".")
            if len(parts) != 3 or len(parts[1]) != 43:
                raise TokenRejected("invalid-token", "malformed token")
            return "RANDOM", parts[1]
        # A JWT (RFC 7519 §7.2): only the jti is read here; the whole string is
        # compared with the re-signed token afterwards, which checks the signature.
        parts = token.split(".")
        try:
            if len(parts) != 3:
                raise ValueError("not a JWS compact serialization")
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise TokenRejected("invalid-token", "malformed token") from None
        jti = claims.get("jti") if isinstance(claims, dict) else None
        if not isinstance(jti, str) or not jti:
            raise TokenRejected("invalid-token", "token has no id")
        return "JWT", jti

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        """Check a bearer token; return its record or raise :class:`TokenRejected`."""
        token_type, token_id = self._parse(token)
        record = self.store.get(token_id)
        if record is None or record.type != token_type:
            raise TokenRejected("unknown-user", "unknown token")
        expected = self.token_for(record)
        if expected is None or not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii")):
            raise TokenRejected("invalid-token", "invalid token")
        self._check_state(record, mechanism)
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
        """Active tokens of ``user`` usable with ``mechanism``, with their re-derived strings."""
        now = self._clock()
        mech = mechanism.upper()
        out: list[tuple[TokenRecord, str]] = []
        for record in self.store.list(user):
            if not record.active(now) or (record.mechanism is not None and record.mechanism != mech):
                continue
            token = self.token_for(record)
            if token is not None:
                out.append((record, token))
        return out

    #: ``last_used`` is written at most this often per token, so a busy token
    #: costs no store write on every login (resolution of ``token list``).
    LAST_USED_RESOLUTION = 60.0

    def mark_used(self, record: TokenRecord) -> None:
        now = self._clock()
        if record.last_used is None or now - record.last_used >= self.LAST_USED_RESOLUTION:
            self.store.touch(record.id, now)

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
