"""Token records and the :class:`TokenStore` protocol.

A record describes one reauthentication token without holding it: RANDOM
tokens are re-derived from the record's id with a key-ring key, JWTs are
re-signed from the stored claims (Ed25519 and HMAC signatures are
deterministic), so a copy of the store authenticates nobody without the key
ring.  Permanent submission tokens (draft-slusarz-extra-smtp-submission-token-00
§5) are records keyed by an address pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..credentials import UserRecord

__all__ = [
    "TOKEN_TYPES",
    "StokenRecord",
    "TokenRecord",
    "TokenStore",
    "TokenVerifier",
    "live_records",
    "token_user_current",
]

#: Token types a server can mint (the REMEMBERME EHLO/CAPABILITY parameters).
TOKEN_TYPES = ("RANDOM", "JWT")


@dataclass(frozen=True)
class TokenRecord:
    """One minted reauthentication token (never the token itself).

    ``id`` is the RANDOM token id or the JWT ``jti``; ``key_id`` names the
    key-ring key it was derived or signed with; ``mechanism`` pins it to one
    mechanism (HT-09 §5: a pinned token used with another mechanism fails).
    Times are POSIX seconds.
    """

    id: str
    user: str
    type: str
    key_id: str
    created: float
    expires: float | None = None
    mechanism: str | None = None
    label: str | None = None
    last_used: float | None = None
    revoked: float | None = None

    def active(self, now: float) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked is None and (self.expires is None or now < self.expires)

    def with_(self, **changes: object) -> TokenRecord:
        return replace(self, **changes)  # type: ignore[arg-type]


def token_user_current(record: TokenRecord, user: UserRecord | None) -> bool:
    """May ``record`` still authenticate ``user`` (``get_user(record.user)``, ``None`` if gone)?

    Every token check (REMEMBERME, HT-*, HT2-*) asks this after the token's
    secret matched: a deleted user's tokens and tokens minted before the
    user's last credential change never authenticate, on any process
    sharing the stores (issue 8 item 7; the CLI also revokes them).  Token
    ``created`` is whole seconds (JWT ``iat``), so the comparison has
    one-second resolution: a token minted in the same second as, but before,
    a change (``created == floor(changed)``) still passes; the revocation
    the CLI does on every credential change covers that second.
    """
    if user is None:
        return False
    return user.changed is None or record.created >= math.floor(user.changed)


@dataclass(frozen=True)
class StokenRecord:
    """A permanent submission token bound to a (remote, local) address pair."""

    remote: str
    local: str
    id: str
    key_id: str
    created: float
    expires: float


@runtime_checkable
class TokenStore(Protocol):
    """Where token records live: SQLite by default, Redis when servers share them.

    Every method raises :class:`~saslkit.errors.TemporaryFailure` when the
    backend is unreachable; none ever reports success it did not achieve.

    Optional method (not a member of the protocol, so stores written before
    it still type-check and pass ``isinstance``; :func:`live_records` falls
    back to :meth:`list` without it): ``list_live(user: str, now: float,
    slots: int = 0) -> list[TokenRecord]``, the user's records neither
    revoked nor expired at ``now``, oldest first.  The HT lookup calls it on
    every attempt, so its time must not depend on the user's dead records
    (it should not read them) nor on how many live ones up to ``slots`` there
    are (pad the reading and decoding up to ``slots``); issue 8 item 10.
    """

    def put(self, record: TokenRecord) -> None:
        """Insert a new record (ids are unique)."""
        ...

    def get(self, token_id: str) -> TokenRecord | None:
        """The record with that id, revoked or not, or ``None``."""
        ...

    def list(self, user: str | None = None) -> list[TokenRecord]:
        """Records of one user (or all), oldest first."""
        ...

    def revoke(self, token_id: str, at: float) -> bool:
        """Mark one token revoked; False if it does not exist."""
        ...

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        """Revoke every token of ``user`` (or all users) created before ``before`` (or ever)."""
        ...

    def touch(self, token_id: str, at: float) -> None:
        """Record a successful use."""
        ...

    def stoken_get(self, remote: str, local: str) -> StokenRecord | None:
        """The live permanent submission token of the pair, or ``None``."""
        ...

    def stoken_put_if_absent(self, record: StokenRecord) -> StokenRecord:
        """Store ``record`` unless a live one exists for its pair; return the one that is stored."""
        ...

    def stoken_refresh(self, remote: str, local: str, expires: float) -> None:
        """Push the expiry of the pair's token forward (refresh on use)."""
        ...

    def stoken_delete(self, remote: str, local: str) -> bool:
        """Remove the pair's permanent token; False if there was none."""
        ...

    def close(self) -> None: ...


def live_records(store: TokenStore, user: str, now: float, slots: int = 0) -> list[TokenRecord]:
    """``user``'s records active at ``now`` (:meth:`TokenRecord.active`), oldest first.

    Uses the store's ``list_live`` (padded to ``slots``) when it has one (see
    :class:`TokenStore`), else filters :meth:`TokenStore.list`, whose time
    grows with every record the user ever had.
    """
    list_live = getattr(store, "list_live", None)
    if callable(list_live):
        records: list[TokenRecord] = list_live(user, now, slots)
        return records
    return [r for r in store.list(user) if r.active(now)]


@runtime_checkable
class TokenVerifier(Protocol):
    """What token mechanisms (REMEMBERME, HT-*, HT2-*) need from the token service.

    Implemented by :class:`saslkit.tokens.reauth.TokenService`.  Methods
    raise :class:`~saslkit.errors.TokenRejected` for a token that must not
    authenticate and :class:`~saslkit.errors.TemporaryFailure` when the store
    is unreachable; they never report success otherwise.

    An implementation may have an ``int`` attribute ``max_tokens_per_user``:
    HT servers then compute that many candidate HMACs for every lookup
    (default :data:`~saslkit.tokens.reauth.DEFAULT_MAX_TOKENS_PER_USER`).
    """

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        """Check a bearer token (REMEMBERME): the token alone names its user."""
        ...

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        """The user's active tokens usable with ``mechanism``, each with its token string.

        HT servers HMAC with the token string (HT-09 §3.1), so they need it
        back: it is re-derived with the key ring, never read from the store.
        """
        ...

    def mark_used(self, record: TokenRecord) -> None:
        """Record a successful authentication with ``record``: best effort, it never raises or blocks."""
        ...
