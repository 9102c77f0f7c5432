"""The auth penalty: slow down guessing across connections, per remote IP and per user.

After ``n`` consecutive failed authentications from one remote IP (IPv6: its
/48, as Dovecot does) or for one prepared username, the next attempt's final
reply waits ``min(base * 2**(n-1), cap)`` seconds: 2, 4, 8, 15, 15... with
the defaults, Dovecot's ``auth_penalty`` (src/auth/auth-penalty.h:
``AUTH_PENALTY_INIT_SECS`` 2, ``AUTH_PENALTY_MAX_SECS`` 15).  The larger of
the IP's and the user's delay applies.  A success resets both counts.

*Every* final reply of a penalized attempt is delayed, success and failure
alike (Dovecot delays the next request from a penalized IP whatever its
outcome), so the delay tells nothing about whether the password was right.
Challenges in the middle of an exchange are not delayed.

Sans-IO: :class:`AuthPenalty` only computes delays; the sessions put them in
``Reply.delay`` and the driver sleeps.  Counts live in a
:class:`PenaltyStore` (get/record/reset by key); :class:`MemoryPenaltyStore`
is bounded (least recently used entries go first) and forgets a key
``expire`` seconds after its last failure, on an injected clock.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .errors import UsageError

__all__ = ["AuthPenalty", "MemoryPenaltyStore", "PenaltyStore", "address_key", "attempt_delay", "parse_auth_penalty"]

IPV6_PREFIX = 48  # Dovecot's PENALTY_IPV6_MASK_BITS: one site cannot flood the table with addresses


class PenaltyStore(Protocol):
    """Consecutive-failure counts by key (shared by every connection, called from worker threads)."""

    def get(self, key: str) -> int:
        """The count for ``key`` (0 if none or expired)."""
        ...

    def record(self, key: str) -> int:
        """One more failure for ``key``; returns the new count."""
        ...

    def reset(self, key: str) -> None:
        """Forget ``key`` (after a success)."""
        ...


class MemoryPenaltyStore:
    """An in-process :class:`PenaltyStore`: at most ``max_entries`` keys, each forgotten ``expire``
    seconds after its last failure (``clock`` is injected: :func:`time.monotonic` by default)."""

    def __init__(self, *, max_entries: int = 65536, expire: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or expire <= 0:
            raise UsageError("max_entries must be at least 1 and expire positive")
        self.max_entries = max_entries
        self.expire = expire
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (count, last failure)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> int:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return 0
            if self._clock() - entry[1] >= self.expire:
                del self._entries[key]
                return 0
            return entry[0]

    def record(self, key: str) -> int:
        now = self._clock()
        with self._lock:
            entry = self._entries.pop(key, None)
            count = 1 if entry is None or now - entry[1] >= self.expire else entry[0] + 1
            self._entries[key] = (count, now)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)  # the least recently failed key
            return count

    def reset(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


def address_key(peer: str, ipv6_prefix: int = IPV6_PREFIX) -> str:
    """``ip:<address>`` for IPv4 (an IPv4-mapped IPv6 address counts as its IPv4 one), ``ip:<network>``
    of ``ipv6_prefix`` bits for IPv6, whose holders get whole networks; anything else as given."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return f"ip:{peer}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network((address, ipv6_prefix), strict=False)}"
    return f"ip:{address}"


@dataclass
class AuthPenalty:
    """Delays after consecutive failures, per remote IP and per prepared username (see the module doc)."""

    base: float = 2.0
    cap: float = 15.0
    store: PenaltyStore = field(default_factory=MemoryPenaltyStore)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap and math.isfinite(self.cap)):
            raise UsageError("the auth penalty needs 0 < base <= cap")

    @staticmethod
    def keys(peer: str, authcid: str | None) -> list[str]:
        """The store keys of one attempt: the remote IP's, and the user's when the mechanism knew it."""
        keys = [address_key(peer)] if peer else []
        if authcid:
            keys.append(f"user:{authcid}")
        return keys

    def seconds(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        return min(self.base * 2.0 ** min(failures - 1, 32), self.cap)

    def delay(self, peer: str, authcid: str | None) -> float:
        """How long this attempt's final reply waits (decided before its outcome is recorded)."""
        return self.seconds(max((self.store.get(k) for k in self.keys(peer, authcid)), default=0))

    def failed(self, peer: str, authcid: str | None) -> None:
        for key in self.keys(peer, authcid):
            self.store.record(key)

    def succeeded(self, peer: str, authcid: str | None) -> None:
        for key in self.keys(peer, authcid):
            self.store.reset(key)

    def settle(self, peer: str, authcid: str | None, success: bool) -> float:
        """One attempt ended: its reply's delay (from the counts before it), then record the outcome."""
        wait = self.delay(peer, authcid)
        if success:
            self.succeeded(peer, authcid)
        else:
            self.failed(peer, authcid)
        return wait


def attempt_delay(penalty: AuthPenalty | None, peer: str, authcid: str | None, success: bool | None) -> float:
    """The penalty delay of one attempt's final reply, recording its outcome (``success`` None: a
    temporary failure, delayed but not counted); 0 without a penalty.  What every binding calls."""
    if penalty is None:
        return 0.0
    if success is None:
        return penalty.delay(peer, authcid)
    return penalty.settle(peer, authcid, success)


def parse_auth_penalty(spec: str) -> AuthPenalty | None:
    """``BASE:CAP`` in seconds (``2:15``), or ``off`` (None)."""
    if spec.strip().lower() == "off":
        return None
    base, sep, cap = spec.partition(":")
    try:
        if not sep:
            raise ValueError
        return AuthPenalty(float(base), float(cap))
    except (ValueError, UsageError):
        raise UsageError("the auth penalty is BASE:CAP in seconds (0 < BASE <= CAP), or off") from None
