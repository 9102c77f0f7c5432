"""Redis token store: token records shared by every server of a deployment.

Key layout (``P`` is the prefix, ``saslkit:`` by default):

* ``P token:<id>``: hash of one :class:`TokenRecord` (``None`` fields absent);
  EXPIREAT its ``expires``, so Redis forgets expired tokens by itself.
  Revoked tokens keep their hash until then, so ``get`` still says revoked.
* ``P user:<user>`` and ``P tokens``: sorted sets of token ids scored by
  ``created`` (one user's, everyone's), so listings come out oldest first
  (ties by id, like SQLite's ``ORDER BY created, id``).  Ids whose hash has
  expired are skipped and pruned when read.  An index expires with its last
  expiring member, and never while it holds a token without expiry.
* ``P stoken:<len(remote)>:<remote>:<local>``: hash of one
  :class:`StokenRecord`, EXPIREAT its ``expires``; the length prefix keeps
  ``("a:b", "c")`` and ``("a", "b:c")`` apart.

Every update is one Lua script, so it is atomic between servers.  Floats
travel as ``repr`` strings (exact round trip); Lua only compares them.  The
scripts touch keys they build from the prefix, so this suits one Redis (or
a replicated primary), not Redis Cluster.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, ReadOnlyError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..errors import StoreError, TemporaryFailure
from ..tokens.records import StokenRecord, TokenRecord

__all__ = ["RedisTokenStore"]

_log = logging.getLogger("saslkit.stores")

#: Unreachable servers must fail fast: a login waits on this.
SOCKET_TIMEOUT = 2.0

_TEMPORARY = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError)
_OPTIONAL = ("expires", "mechanism", "label", "last_used", "revoked")

# KEYS: token, user index, all index.  ARGV: id, created, expiry ms or "", field/value pairs.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
for i = 2, 3 do
    local ttl = redis.call('PTTL', KEYS[i])
    redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
    if ARGV[3] == '' then
        redis.call('PERSIST', KEYS[i])
    elseif ttl == -2 or (ttl >= 0 and now + ttl < tonumber(ARGV[3])) then
        redis.call('PEXPIREAT', KEYS[i], ARGV[3])
    end
end
return 1
"""

# KEYS: token.  ARGV: field, value.  Only on an existing hash: never resurrect an expired token.
_SET_FIELD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == 'revoked' and redis.call('HEXISTS', KEYS[1], 'revoked') == 1 then return 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: index.  ARGV: revoked-at, max score ("+inf" or "(before"), token key prefix.
_REVOKE_MATCHING = """
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])) do
    local key = ARGV[3] .. id
    if redis.call('EXISTS', key) == 0 then
        redis.call('ZREM', KEYS[1], id)
    elseif redis.call('HSETNX', key, 'revoked', ARGV[1]) == 1 then
        n = n + 1
    end
end
return n
"""

# KEYS: index.  ARGV: token key prefix, ids seen missing.  Re-checked here: an id may be back.
_PRUNE = """
for i = 2, #ARGV do
    if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0
"""

# KEYS: user index.  ARGV: token key prefix, now, slots, user, padding id, padding key id.
# The live records as {padding?, id, hash, ...}, oldest first, then padding records up to ``slots``:
# revoked and expired ones cost one HMGET here and are never sent; ids whose hash expired are pruned.
_LIST_LIVE = """
local out = {}
local now = tonumber(ARGV[2])
local live = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local key = ARGV[1] .. id
    local f = redis.call('HMGET', key, 'user', 'revoked', 'expires')
    if not f[1] then
        redis.call('ZREM', KEYS[1], id)
    elseif not f[2] and (not f[3] or tonumber(f[3]) > now) then
        live = live + 1
        out[#out + 1] = 0
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGETALL', key)
    end
end
for _ = live + 1, tonumber(ARGV[3]) do
    out[#out + 1] = 1
    out[#out + 1] = ARGV[5]
    out[#out + 1] = {'user', ARGV[4], 'type', 'RANDOM', 'key_id', ARGV[6], 'created', '0.0'}
end
return out
"""

# KEYS: stoken.  ARGV: now, expiry ms, field/value pairs.  Returns the live hash, or {} once stored.
_STOKEN_PUT_IF_ABSENT = """
local cur = redis.call('HGETALL', KEYS[1])
for i = 1, #cur, 2 do
    if cur[i] == 'expires' and tonumber(cur[i + 1]) > tonumber(ARGV[1]) then return cur end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return {}
"""

# KEYS: stoken.  ARGV: now, new expires, its ms.  Forward only, live tokens only.
_STOKEN_REFRESH = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'expires'))
if cur == nil or cur <= tonumber(ARGV[1]) or cur >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'expires', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
"""

# KEYS: stoken.  ARGV: now.  1 only if a live token went.
_STOKEN_DELETE = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'expires'))
redis.call('DEL', KEYS[1])
if cur ~= nil and cur > tonumber(ARGV[1]) then return 1 end
return 0
"""


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(t: float) -> int:
    """PEXPIREAT milliseconds, rounded up: a key never vanishes before its record expires."""
    return math.ceil(t * 1000)


def _flat(fields: Mapping[str, object]) -> list[str]:
    return [x for k, v in fields.items() if v is not None for x in (k, repr(v) if isinstance(v, float) else str(v))]


class RedisTokenStore:
    """A :class:`~saslkit.tokens.records.TokenStore` in Redis (redis-py, sync).

    Give it a URL (``redis://``, ``rediss://``, ``unix://``) or a client of
    your own.  The client is made with short socket timeouts and no retry:
    a retried script could apply twice, and a dead pooled connection is
    replaced at checkout anyway, so after a restart the next call works.
    """

    #: Every read is a network round trip: a login step reading it runs off the event loop.
    reads_may_block: bool = True

    def __init__(
        self, url_or_client: str | redis.Redis, *, prefix: str = "saslkit:", clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(url_or_client, str):
            self.client = redis.Redis.from_url(
                url_or_client,
                decode_responses=True,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            self._owned = True
        else:
            self.client, self._owned = url_or_client, False
        self.prefix = prefix
        self._clock = clock
        self._put = self.client.register_script(_PUT)
        self._set_field = self.client.register_script(_SET_FIELD)
        self._revoke_matching = self.client.register_script(_REVOKE_MATCHING)
        self._prune = self.client.register_script(_PRUNE)
        self._list_live = self.client.register_script(_LIST_LIVE)
        self._stoken_put = self.client.register_script(_STOKEN_PUT_IF_ABSENT)
        self._stoken_refresh = self.client.register_script(_STOKEN_REFRESH)
        self._stoken_delete = self.client.register_script(_STOKEN_DELETE)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Unreachable, loading or failed-over servers are temporary; the rest is a StoreError."""
        try:
            yield
        except _TEMPORARY as exc:
            _log.warning("token store (Redis) unavailable: %s: %s", type(exc).__name__, exc)
            raise TemporaryFailure(f"token store (Redis) unavailable: {exc}") from exc
        except RedisError as exc:
            _log.error("token store (Redis) failed: %s: %s", type(exc).__name__, exc)
            raise StoreError(f"token store (Redis) failed: {exc}") from exc

    def _token_key(self, token_id: str) -> str:
        return f"{self.prefix}token:{token_id}"

    def _index_key(self, user: str | None) -> str:
        return f"{self.prefix}tokens" if user is None else f"{self.prefix}user:{user}"

    def _stoken_key(self, remote: str, local: str) -> str:
        return f"{self.prefix}stoken:{len(remote)}:{remote}:{local}"

    @staticmethod
    def _record(token_id: str, h: Mapping[Any, Any]) -> TokenRecord | None:
        if not h:
            return None
        f = {_str(k): _str(v) for k, v in h.items()}
        try:
            return TokenRecord(
                id=token_id,
                user=f["user"],
                type=f["type"],
                key_id=f["key_id"],
                created=float(f["created"]),
                expires=float(f["expires"]) if "expires" in f else None,
                mechanism=f.get("mechanism"),
                label=f.get("label"),
                last_used=float(f["last_used"]) if "last_used" in f else None,
                revoked=float(f["revoked"]) if "revoked" in f else None,
            )
        except (KeyError, ValueError) as exc:
            raise StoreError(f"token store (Redis): bad record {token_id!r}: {exc!r}") from exc

    def put(self, record: TokenRecord) -> None:
        """Insert a new record; an id already stored is a :class:`StoreError`."""
        r = record
        fields = {"user": r.user, "type": r.type, "key_id": r.key_id, "created": r.created}
        fields.update({k: getattr(r, k) for k in _OPTIONAL})
        keys = [self._token_key(r.id), self._index_key(r.user), self._index_key(None)]
        expiry = "" if r.expires is None else str(_ms(r.expires))
        with self._errors():
            stored = self._put(keys=keys, args=[r.id, repr(r.created), expiry, *_flat(fields)])
        if not stored:
            raise StoreError(f"token store (Redis): token id {r.id!r} already stored")

    def get(self, token_id: str) -> TokenRecord | None:
        """One HGETALL: this is on every token verification."""
        with self._errors():
            h = self.client.hgetall(self._token_key(token_id))
        return self._record(token_id, h)

    def list_live(self, user: str, now: float, slots: int = 0) -> list[TokenRecord]:
        """``user``'s records neither revoked nor expired at ``now``, oldest first: one script (the HT lookup).

        Dead records are filtered inside Redis (one HMGET each), so only
        live ones travel and are decoded; stale ids are pruned on the way.
        Fewer than ``slots`` live records are followed by padding records,
        decoded like real ones and dropped last, so the decoding here costs
        the same for 0 to ``slots`` records.  Redis's own time still grows by
        a microsecond or two per record in the user's index: revoked records
        stay there until they expire (never, without a ``ttl``).
        """
        args = [self._token_key(""), repr(now), str(slots), user, "A" * 43, "token-1700000000-abcdef"]
        with self._errors():
            flat = self._list_live(keys=[self._index_key(user)], args=args)
        records = []
        for padding, token_id, fields in zip(flat[::3], flat[1::3], flat[2::3], strict=True):
            record = self._record(_str(token_id), dict(zip(fields[::2], fields[1::2], strict=True)))
            if record is not None and not padding:
                records.append(record)
        return records

    def list(self, user: str | None = None) -> list[TokenRecord]:
        index = self._index_key(user)
        with self._errors():
            ids = [_str(i) for i in self.client.zrange(index, 0, -1)]
            pipe = self.client.pipeline(transaction=False)
            for token_id in ids:
                pipe.hgetall(self._token_key(token_id))
            hashes = pipe.execute()
            records = [self._record(i, h) for i, h in zip(ids, hashes, strict=True)]
            stale = [i for i, r in zip(ids, records, strict=True) if r is None]
            if stale:
                self._prune(keys=[index], args=[self._token_key(""), *stale])
        return [r for r in records if r is not None]

    def revoke(self, token_id: str, at: float) -> bool:
        """Revoke once: a second revocation keeps the first time (it is what the user saw)."""
        with self._errors():
            return bool(self._set_field(keys=[self._token_key(token_id)], args=["revoked", repr(at)]))

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        """One script over the index (scores are ``created``): atomic, pruning stale ids as it goes."""
        upper = "+inf" if before is None else f"({before!r}"
        with self._errors():
            n = self._revoke_matching(keys=[self._index_key(user)], args=[repr(at), upper, self._token_key("")])
        return int(n)

    def touch(self, token_id: str, at: float) -> None:
        """Best effort (:meth:`TokenService.mark_used` ignores its errors): one script, no retry.

        Redis takes no lock a client could wait on, and the socket timeout
        bounds the call; an error is raised as usual for the caller to skip.
        """
        with self._errors():
            self._set_field(keys=[self._token_key(token_id)], args=["last_used", repr(at)])

    def stoken_get(self, remote: str, local: str) -> StokenRecord | None:
        with self._errors():
            h = self.client.hgetall(self._stoken_key(remote, local))
        record = self._stoken(remote, local, h)
        return record if record is not None and record.expires > self._clock() else None

    @staticmethod
    def _stoken(remote: str, local: str, h: Mapping[Any, Any] | Sequence[Any]) -> StokenRecord | None:
        if not isinstance(h, Mapping):  # a script's HGETALL comes back flat
            h = dict(zip(h[::2], h[1::2], strict=True))
        if not h:
            return None
        f = {_str(k): _str(v) for k, v in h.items()}
        try:
            return StokenRecord(remote, local, f["id"], f["key_id"], float(f["created"]), float(f["expires"]))
        except (KeyError, ValueError) as exc:
            raise StoreError(f"token store (Redis): bad stoken for {remote!r} -> {local!r}: {exc!r}") from exc

    def stoken_put_if_absent(self, record: StokenRecord) -> StokenRecord:
        """One script: check and store cannot interleave with another server's."""
        r = record
        fields = {"id": r.id, "key_id": r.key_id, "created": r.created, "expires": r.expires}
        with self._errors():
            cur = self._stoken_put(
                keys=[self._stoken_key(r.remote, r.local)],
                args=[repr(self._clock()), _ms(r.expires), *_flat(fields)],
            )
        return self._stoken(r.remote, r.local, cur) or record

    def stoken_refresh(self, remote: str, local: str, expires: float) -> None:
        """Forward only, and only a live token: an expired one must not come back."""
        with self._errors():
            self._stoken_refresh(
                keys=[self._stoken_key(remote, local)], args=[repr(self._clock()), repr(expires), _ms(expires)]
            )

    def stoken_delete(self, remote: str, local: str) -> bool:
        with self._errors():
            return bool(self._stoken_delete(keys=[self._stoken_key(remote, local)], args=[repr(self._clock())]))

    def close(self) -> None:
        """Close the connection pool if this store made it."""
        if self._owned:
            self.client.close()
