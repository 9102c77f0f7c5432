"""Submission tokens (draft-slusarz-extra-smtp-submission-token-00 §5).

Every token is bound to a (remote, local) address pair (§5.1).  Addresses
are compared case-insensitively (lower-cased), a choice the draft leaves open
(§7.3.1 "normalization?").

* Temporary tokens are self-verifying (§5.3.1): nothing is stored.
  ``st1.t.<key id>.<expiry>.<remote b64url>.<mac>`` with
  ``mac = HMAC-SHA-256(token key, "stoken-temp" NUL remote NUL local NUL expiry)``.
  Default lifetime one week.
* Permanent tokens are stored (§5.3.2), one per pair, default lifetime one
  year, refreshed on every successful use:
  ``st1.p.<id>.<remote b64url>.<mac>`` with
  ``mac = HMAC-SHA-256(token key, "stoken-perm" NUL id NUL remote NUL local)``.
  Generating again returns the existing token (§5.4.1).

The remote address travels inside the token because ``AUTH STOKEN`` carries
only ``recipient NUL token`` (§7.3.1) and the MAC must cover the pair.

Tokens are parsed strictly before anything is checked: base64url parts are
RFC 4648 §5 without padding and canonical (what :func:`_b64url` would
write), the key id is 1..64 of ``A-Z a-z 0-9 - _``, the expiry 1..12 digits
without a leading zero, the id 22 and the MAC 43 characters, the remote
address valid UTF-8 that is already a normalized address.  Anything else is
``TokenRejected("invalid-token")``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import TokenRejected, UsageError
from ..keys import KeyRing
from .records import StokenRecord, TokenStore

__all__ = ["PERM_TTL", "TEMP_TTL", "SubmissionTokens", "VerifiedStoken", "normalize_address", "stoken_remote"]

TEMP_TTL = 7 * 24 * 3600
PERM_TTL = 365 * 24 * 3600
MAX_ADDRESS = 320  # RFC 5321 §4.5.3.1.1/.2: 64 + 1 + 255
MAX_STOKEN = 1024


def normalize_address(address: str, *, what: str = "address") -> str:
    """Strip ``<>`` and lower-case; raise :class:`UsageError` on something that is no address."""
    addr = address.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    local, sep, domain = addr.rpartition("@")
    if (
        not sep
        or not local
        or not domain
        or len(addr) > MAX_ADDRESS
        or any(ch.isspace() or ch in "<>\x00" for ch in addr)
        or not addr.isprintable()
    ):
        raise UsageError(f"invalid {what} {address!r}")
    return addr.lower()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EXPIRY_RE = re.compile(r"[1-9][0-9]{0,11}")
_ID_LENGTH = 22  # 16 random octets
_MAC_LENGTH = 43  # HMAC-SHA-256


def _malformed() -> TokenRejected:
    return TokenRejected("invalid-token", "malformed submission token")


def _unb64url(text: str) -> bytes:
    """Strict base64url (RFC 4648 §5): alphabet only, no padding, canonical trailing bits."""
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise _malformed()
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _malformed() from None
    if _b64url(data) != text:
        raise _malformed()
    return data


@dataclass(frozen=True)
class _Parsed:
    kind: str  # "TEMP" or "PERM"
    remote: str
    mac: str
    key_id: str = ""  # TEMP
    expiry: str = ""  # TEMP
    token_id: str = ""  # PERM


def _remote(text: str) -> str:
    if len(text) > (MAX_ADDRESS * 4 + 2) // 3:
        raise _malformed()
    try:
        remote = _unb64url(text).decode("utf-8")
        if normalize_address(remote) != remote:
            raise _malformed()
    except (UnicodeDecodeError, UsageError):
        raise _malformed() from None
    return remote


def _parse(token: str) -> _Parsed:
    """Check the whole grammar of a submission token (nothing verified yet)."""
    if len(token) > MAX_STOKEN or not token.isascii():
        raise _malformed()
    parts = token.split(".")
    if len(parts) == 6 and parts[:2] == ["st1", "t"]:
        _, _, key_id, expiry, remote_b64, mac = parts
        if not _KEY_ID_RE.fullmatch(key_id) or not _EXPIRY_RE.fullmatch(expiry):
            raise _malformed()
        parsed = _Parsed("TEMP", _remote(remote_b64), mac, key_id=key_id, expiry=expiry)
    elif len(parts) == 5 and parts[:2] == ["st1", "p"]:
        _, _, token_id, remote_b64, mac = parts
        if len(token_id) != _ID_LENGTH:
            raise _malformed()
        _unb64url(token_id)
        parsed = _Parsed("PERM", _remote(remote_b64), mac, token_id=token_id)
    else:
        raise _malformed()
    if len(mac) != _MAC_LENGTH:
        raise _malformed()
    _unb64url(mac)
    return parsed


def stoken_remote(token: str) -> str | None:
    """The remote address a well-formed token claims (unverified: for logs and penalties only), else ``None``."""
    try:
        return _parse(token).remote
    except TokenRejected:
        return None


@dataclass(frozen=True)
class VerifiedStoken:
    """A submission token that checked out: who may deliver to whom."""

    remote: str
    local: str
    kind: str  # "TEMP" or "PERM"
    expires: float


class SubmissionTokens:
    """Generate, verify and revoke submission tokens (draft §5.3, §5.4)."""

    def __init__(
        self,
        store: TokenStore,
        keys: KeyRing,
        *,
        temp_ttl: float = TEMP_TTL,
        perm_ttl: float = PERM_TTL,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.store = store
        self.keys = keys
        self.temp_ttl = temp_ttl
        self.perm_ttl = perm_ttl
        self._clock = clock
        self._random = random_bytes

    def _mac(self, secret: bytes, *fields: str) -> str:
        return _b64url(hmac.digest(secret, "\x00".join(fields).encode("utf-8"), "sha256"))

    def generate(self, kind: str, remote: str, local: str) -> tuple[str, float]:
        """``GENSTOKEN`` (§5.4.1): a token and its expiry; an existing permanent token is returned again."""
        remote = normalize_address(remote, what="remote address")
        local = normalize_address(local, what="local address")
        kind = kind.upper()
        key = self.keys.current("token")
        now = self._clock()
        if kind == "TEMP":
            expires = int(now + self.temp_ttl)
            mac = self._mac(key.secret, "stoken-temp", remote, local, str(expires))
            return f"st1.t.{key.id}.{expires}.{_b64url(remote.encode())}.{mac}", float(expires)
        if kind != "PERM":
            raise UsageError("token kind is TEMP or PERM")
        candidate = StokenRecord(remote, local, _b64url(self._random(16)), key.id, now, now + self.perm_ttl)
        record = self.store.stoken_put_if_absent(candidate)
        return self._perm_token(record), record.expires

    def _perm_token(self, record: StokenRecord) -> str:
        key = self.keys.get(record.key_id)
        if key is None:
            raise TokenRejected("invalid-token", "the key of this submission token was retired")
        mac = self._mac(key.secret, "stoken-perm", record.id, record.remote, record.local)
        return f"st1.p.{record.id}.{_b64url(record.remote.encode())}.{mac}"

    def revoke(self, remote: str, local: str) -> bool:
        """``REVSTOKEN`` (§5.4.2): drop the pair's permanent token; temporary ones lapse by time."""
        return self.store.stoken_delete(
            normalize_address(remote, what="remote address"), normalize_address(local, what="local address")
        )

    def verify(self, local: str, token: str) -> VerifiedStoken:
        """Check ``token`` for delivery to ``local``; raise :class:`TokenRejected` otherwise."""
        try:
            local = normalize_address(local, what="recipient")
        except UsageError:
            raise TokenRejected("invalid-encoding", "invalid recipient address") from None
        parsed = _parse(token)
        remote = parsed.remote
        now = self._clock()
        if parsed.kind == "TEMP":
            key = self.keys.get(parsed.key_id)
            if key is None:
                raise TokenRejected("invalid-token", "invalid submission token")
            expected = self._mac(key.secret, "stoken-temp", remote, local, parsed.expiry)
            if not hmac.compare_digest(expected.encode(), parsed.mac.encode()):
                raise TokenRejected("invalid-token", "invalid submission token")
            if now >= int(parsed.expiry):
                raise TokenRejected("expired", "submission token expired")
            return VerifiedStoken(remote, local, "TEMP", float(parsed.expiry))
        record = self.store.stoken_get(remote, local)
        if record is None or record.id != parsed.token_id:
            raise TokenRejected("invalid-token", "unknown or revoked submission token")
        if not hmac.compare_digest(self._perm_token(record).encode(), token.encode()):
            raise TokenRejected("invalid-token", "invalid submission token")
        if now >= record.expires:
            raise TokenRejected("expired", "submission token expired")
        expires = now + self.perm_ttl
        self.store.stoken_refresh(remote, local, expires)  # §5.3.2: refreshed on use
        return VerifiedStoken(remote, local, "PERM", expires)
