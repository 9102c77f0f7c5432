"""Redis token store: token records shared by every server of a deployment, on one Redis or a Redis Cluster.

Key layout (``P`` is the prefix, ``saslkit:`` by default; ``U`` the user and
``I`` a token id, each with ``%``, ``{`` and ``}`` percent-escaped, so the
hash tags ``{…}`` below are unambiguous):

* ``P{u:U}:token:I``: hash of one :class:`TokenRecord` (``None`` fields
  absent); EXPIREAT its ``expires``, so Redis forgets expired tokens by
  itself.  Revoked tokens keep their hash until then, so ``get`` still says
  revoked.
* ``P{u:U}:tokens``: the user's token ids, a sorted set scored by
  ``created`` (ties by id, like SQLite's ``ORDER BY created, id``).  Ids whose
  hash expired are skipped and pruned when read.  It expires with its last
  expiring member, and never while it holds a token without expiry.
* ``P{t:I}``: the id's user (a string, same expiry as the record): a
  bearer token names only its id, so ``get`` reads this (once per id and
  process: it never changes), then the hash.
* ``P{all}:tokens``: every token id, scored by ``created`` (``list()`` and
  ``revoke_matching`` without a user); written before the record, so no
  record is ever missing from it.
* ``P{stoken:N:R:L}``: hash of one :class:`StokenRecord` (``N`` the length
  of the escaped remote address ``R``), EXPIREAT its ``expires``.

One user's keys share one hash slot (the ``{u:U}`` tag), so every script
touches keys of one slot only, and every key it touches is passed in
``KEYS``: the layout works unchanged on one Redis (or Valkey) and on a Redis
Cluster (``redis-cluster://host:port[,host:port…]``).  Updates to one
user's tokens are one script, atomic between servers; a script that acts on
ids read just before (revocation) checks in Redis that the index has not
changed meanwhile, and is retried if it has.  Floats travel as ``repr``
strings (exact round trip); Lua only compares them.
"""

from __future__ import annotations

import builtins
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import BusyLoadingError, ClusterError, ReadOnlyError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..errors import StoreError, TemporaryFailure, UsageError
from ..penalty import MemoryPenaltyStore, PenaltyStore
from ..tokens.records import StokenRecord, TokenRecord

__all__ = ["RedisPenaltyStore", "RedisTokenStore", "connect", "escape_tag"]

_log = logging.getLogger("saslkit.stores")

#: Unreachable servers must fail fast: a login waits on this.
SOCKET_TIMEOUT = 2.0
CLUSTER_SCHEMES = ("redis-cluster://", "rediss-cluster://")
SENTINEL_SCHEMES = ("redis-sentinel://",)

#: Unreachable, loading, failed-over or (cluster) slot-less servers: a temporary failure.
TEMPORARY_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, ClusterError, RedisClusterException,
)
_OPTIONAL = ("expires", "mechanism", "label", "last_used", "revoked")
#: How often a revocation re-reads an index that changed under it before giving up (temporarily).
_REVOKE_ATTEMPTS = 20

def _index_add(index_key: str) -> str:
    """Lua: add ARGV[1] (score ARGV[2]) to the sorted set ``index_key``, which outlives every member: its expiry
    moves to ARGV[3] (ms) when that is later, and it never expires once a member never does (ARGV[3] "")."""
    return f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = redis.call('PTTL', {index_key})
redis.call('ZADD', {index_key}, ARGV[2], ARGV[1])
if ARGV[3] == '' then
    redis.call('PERSIST', {index_key})
elseif ttl == -2 or (ttl >= 0 and now + ttl < tonumber(ARGV[3])) then
    redis.call('PEXPIREAT', {index_key}, ARGV[3])
end
return 1
"""


# KEYS: token, user index.  ARGV: id, created, expiry ms or "", field/value pairs.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
""" + _index_add("KEYS[2]")

# KEYS: an index.  ARGV: id, created, expiry ms or "".
_INDEX_ADD = _index_add("KEYS[1]")

# KEYS: token.  ARGV: field, value.  Only on an existing hash: never resurrect an expired token.
_SET_FIELD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == 'revoked' and redis.call('HEXISTS', KEYS[1], 'revoked') == 1 then return 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: user index, then the token keys of ARGV[3..].  ARGV: revoked-at, max score ("+inf" or "(before"), ids.
# -1 if the index's matching ids are no longer exactly those (read them again); else how many were revoked.
_REVOKE_IDS = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if #ids ~= #ARGV - 2 then return -1 end
for i, id in ipairs(ids) do
    if id ~= ARGV[i + 2] then return -1 end
end
local n = 0
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
        redis.call('ZREM', KEYS[1], ARGV[i + 1])
    elseif redis.call('HSETNX', KEYS[i], 'revoked', ARGV[1]) == 1 then
        n = n + 1
    end
end
return n
"""

# KEYS: an index, then one key per id of ARGV (the token hash, or the id's user pointer).
# ARGV: ids seen missing.  Re-checked here: an id may be back.
_PRUNE = """
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i - 1]) end
end
return 0
"""

# KEYS: user index, then the token keys of the ids ARGV[6..].  ARGV: now, slots, user, padding id,
# padding key id, ids.  The live records as {padding?, id, hash, ...}, oldest first, then padding records up to
# ``slots``: revoked and expired ones cost one HMGET here and are never sent; ids whose hash expired are pruned.
_LIST_LIVE = """
local out = {}
local now = tonumber(ARGV[1])
local live = 0
for i = 2, #KEYS do
    local id = ARGV[i + 4]
    local f = redis.call('HMGET', KEYS[i], 'user', 'revoked', 'expires')
    if not f[1] then
        redis.call('ZREM', KEYS[1], id)
    elseif not f[2] and (not f[3] or tonumber(f[3]) > now) then
        live = live + 1
        out[#out + 1] = 0
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGETALL', KEYS[i])
    end
end
for _ = live + 1, tonumber(ARGV[2]) do
    out[#out + 1] = 1
    out[#out + 1] = ARGV[4]
    out[#out + 1] = {'user', ARGV[3], 'type', 'RANDOM', 'key_id', ARGV[5], 'created', '0.0'}
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


def escape_tag(text: str) -> str:
    """``text`` with ``%``, ``{`` and ``}`` percent-escaped: safe inside a ``{…}`` hash tag, and injective."""
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _addresses(url: str, what: str) -> tuple[list[tuple[str, int]], dict[str, Any], str]:
    """``scheme://[user:password@]host:port[,host:port…][/path]`` -> addresses, connection options, path."""
    options: dict[str, Any] = {"ssl": url.startswith("rediss-")}
    rest = url.partition("://")[2]
    netloc, path = re.split(r"[/?#]", rest, maxsplit=1)[0], ""
    if rest[len(netloc):].startswith("/"):
        path = re.split(r"[?#]", rest[len(netloc) + 1:], maxsplit=1)[0]
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    addresses = []
    for address in netloc.split(","):
        host, sep, port = address.strip().rpartition(":")
        if not sep or not (port.isascii() and port.isdigit() and int(port) <= 65535) or not host.strip("[]"):
            raise UsageError(f"a {what}")
        addresses.append((host.strip("[]"), int(port)))
    return addresses, options, path


def _cluster_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """``redis-cluster://[user:password@]host:port[,host:port…]`` -> startup nodes and connection options."""
    addresses, options, _ = _addresses(url, "Redis Cluster URL is redis-cluster://HOST:PORT[,HOST:PORT…]")
    return [ClusterNode(h, p) for h, p in addresses], options  # type: ignore[no-untyped-call]


def _sentinel_master(url: str, common: dict[str, Any]) -> redis.Redis:
    """``redis-sentinel://[user:password@]host:port[,host:port…]/SERVICE[/DB]``: the master the sentinels name.

    The client asks the sentinels for the master's address on every new connection, so after a failover the
    next call reaches the new master.  The credentials are the master's; the sentinels are asked without any.
    """
    usage = "Redis Sentinel URL is redis-sentinel://HOST:PORT[,HOST:PORT…]/SERVICE[/DB]"
    addresses, options, path = _addresses(url, usage)
    service, _, db = path.partition("/")
    if not service or not (db == "" or (db.isascii() and db.isdigit())):
        raise UsageError(f"a {usage}")
    options.pop("ssl")
    timeouts = {k: common[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(addresses, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        unquote(service), db=int(db or 0), retry=Retry(NoBackoff(), 0), **common, **options)
    return master


def connect(url: str) -> redis.Redis | RedisCluster:
    """A client for ``redis://``, ``rediss://``, ``unix://`` (one server), ``redis-cluster://`` (a cluster) or
    ``redis-sentinel://`` (the master that Redis Sentinel names).

    Short socket timeouts and no retry: a retried script could apply twice, and
    a dead pooled connection is replaced at checkout anyway, so after a restart
    the next call works.  A cluster client learns the slot map from any
    startup node that answers (it connects at once: an unreachable cluster is a
    :class:`TemporaryFailure` here).
    """
    common: dict[str, Any] = {
        "decode_responses": True, "socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT,
    }
    if url.startswith(CLUSTER_SCHEMES):
        nodes, options = _cluster_nodes(url)
        try:
            # One retry, for a MOVED/ASK after a failover or resharding (every script here is idempotent).
            return RedisCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), 1), **common, **options)
        except TEMPORARY_ERRORS as exc:
            raise TemporaryFailure(f"Redis Cluster unavailable: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"Redis Cluster failed: {exc}") from exc
    if url.startswith(SENTINEL_SCHEMES):
        return _sentinel_master(url, common)
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(t: float) -> int:
    """PEXPIREAT milliseconds, rounded up: a key never vanishes before its record expires."""
    return math.ceil(t * 1000)


def _flat(fields: Mapping[str, object]) -> list[str]:
    return [x for k, v in fields.items() if v is not None for x in (k, repr(v) if isinstance(v, float) else str(v))]


class _LazyClient:
    """The redis-py client, made on first use when given a URL: a cluster client connects as it is made, and a
    front-end may start before its Redis (it then answers temporary failures until Redis is there)."""

    _url: str | None
    _client: redis.Redis | RedisCluster | None
    _owned: bool

    def _set_client(self, url_or_client: str | redis.Redis | RedisCluster) -> None:
        self._client_lock = threading.Lock()
        if isinstance(url_or_client, str):
            self._url, self._client, self._owned = url_or_client, None, True
            if not url_or_client.startswith(CLUSTER_SCHEMES):
                self.client  # noqa: B018 - one server: made at once (redis-py connects lazily itself)
            else:
                try:
                    self.client  # noqa: B018 - connect now if the cluster is there
                except TemporaryFailure:
                    pass
        else:
            self._url, self._client, self._owned = None, url_or_client, False
            self._register(url_or_client)

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The client (made now if it was not yet: :class:`TemporaryFailure` if the cluster is unreachable)."""
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    assert self._url is not None
                    client = connect(self._url)
                    self._register(client)
                    self._client = client
        return client

    def _register(self, client: redis.Redis | RedisCluster) -> None:
        """Register the Lua scripts on ``client``."""

    def close(self) -> None:
        """Close the connection pool if this store made it."""
        if self._owned and self._client is not None:
            self._client.close()


class RedisTokenStore(_LazyClient):
    """A :class:`~saslkit.tokens.records.TokenStore` in Redis or Redis Cluster (redis-py, sync).

    Give it a URL (``redis://``, ``rediss://``, ``unix://``, ``redis-cluster://``;
    see :func:`connect`) or a client of your own (``redis.Redis`` or
    ``redis.cluster.RedisCluster``).
    """

    #: Every read is a network round trip: a login step reading it runs off the event loop.
    reads_may_block: bool = True

    def __init__(
        self,
        url_or_client: str | redis.Redis | RedisCluster,
        *,
        prefix: str = "saslkit:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise UsageError("the Redis key prefix cannot contain { or } (they make hash tags)")
        self.prefix = prefix
        self._clock = clock
        self._owner_cache: OrderedDict[str, str] = OrderedDict()
        self._owners_lock = threading.Lock()
        self._set_client(url_or_client)

    def _register(self, client: redis.Redis | RedisCluster) -> None:
        self._put = client.register_script(_PUT)
        self._index_add = client.register_script(_INDEX_ADD)
        self._set_field = client.register_script(_SET_FIELD)
        self._revoke_ids = client.register_script(_REVOKE_IDS)
        self._prune = client.register_script(_PRUNE)
        self._list_live_script = client.register_script(_LIST_LIVE)
        self._stoken_put = client.register_script(_STOKEN_PUT_IF_ABSENT)
        self._stoken_refresh = client.register_script(_STOKEN_REFRESH)
        self._stoken_delete = client.register_script(_STOKEN_DELETE)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Unreachable, loading or failed-over servers are temporary; the rest is a StoreError."""
        try:
            self.client  # noqa: B018 - made (connected, for a cluster) before the first command
            yield
        except TEMPORARY_ERRORS as exc:
            _log.warning("token store (Redis) unavailable: %s: %s", type(exc).__name__, exc)
            raise TemporaryFailure(f"token store (Redis) unavailable: {exc}") from exc
        except RedisError as exc:
            _log.error("token store (Redis) failed: %s: %s", type(exc).__name__, exc)
            raise StoreError(f"token store (Redis) failed: {exc}") from exc

    # -- keys (see the module doc) --

    def _token_key(self, user: str, token_id: str) -> str:
        return f"{self.prefix}{{u:{escape_tag(user)}}}:token:{token_id}"

    def _index_key(self, user: str | None) -> str:
        return f"{self.prefix}{{all}}:tokens" if user is None else f"{self.prefix}{{u:{escape_tag(user)}}}:tokens"

    def _owner_key(self, token_id: str) -> str:
        return f"{self.prefix}{{t:{escape_tag(token_id)}}}"

    def _stoken_key(self, remote: str, local: str) -> str:
        r = escape_tag(remote)
        return f"{self.prefix}{{stoken:{len(r)}:{r}:{escape_tag(local)}}}"

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
        """Insert a new record; an id already stored is a :class:`StoreError`.

        The id's owner pointer is claimed first (``SET NX``: duplicates stop
        there), then the id joins the all-tokens index, then one script on the
        user's slot writes the hash and the user's index.
        """
        r = record
        fields = {"user": r.user, "type": r.type, "key_id": r.key_id, "created": r.created}
        fields.update({k: getattr(r, k) for k in _OPTIONAL})
        expiry = "" if r.expires is None else str(_ms(r.expires))
        with self._errors():
            if r.expires is None:
                claimed = self.client.set(self._owner_key(r.id), r.user, nx=True)
            else:
                claimed = self.client.set(self._owner_key(r.id), r.user, nx=True, pxat=_ms(r.expires))
            if not claimed:
                raise StoreError(f"token store (Redis): token id {r.id!r} already stored")
            self._index_add(keys=[self._index_key(None)], args=[r.id, repr(r.created), expiry])
            keys = [self._token_key(r.user, r.id), self._index_key(r.user)]
            stored = self._put(keys=keys, args=[r.id, repr(r.created), expiry, *_flat(fields)])
        if not stored:
            raise StoreError(f"token store (Redis): token id {r.id!r} already stored")

    #: Token ids whose owner this process remembers (least recently used go first).
    OWNER_CACHE_SIZE = 10000

    def _owner(self, token_id: str) -> str | None:
        """The user a token id belongs to: remembered once read, as it never changes (ids are random and claimed
        with ``SET NX``).  Only this mapping is kept, never a record: revocation is read from Redis every time."""
        with self._owners_lock:
            owner = self._owner_cache.get(token_id)
            if owner is not None:
                self._owner_cache.move_to_end(token_id)
                return owner
        value = self.client.get(self._owner_key(token_id))
        if value is None:
            return None
        owner = _str(value)
        with self._owners_lock:
            self._owner_cache[token_id] = owner
            while len(self._owner_cache) > self.OWNER_CACHE_SIZE:
                self._owner_cache.popitem(last=False)
        return owner

    def get(self, token_id: str) -> TokenRecord | None:
        """The id's owner (remembered after the first time), then its hash: on every token verification."""
        with self._errors():
            owner = self._owner(token_id)
            if owner is None:
                return None
            h = self.client.hgetall(self._token_key(owner, token_id))
        return self._record(token_id, h)

    def _list_live_flat(self, user: str, now: float, slots: int, pad_id: str, pad_key_id: str) -> builtins.list[Any]:
        index = self._index_key(user)
        ids = [_str(i) for i in self.client.zrange(index, 0, -1)]
        keys = [index, *(self._token_key(user, i) for i in ids)]
        return list(self._list_live_script(keys=keys, args=[repr(now), str(slots), user, pad_id, pad_key_id, *ids]))

    def list_live(self, user: str, now: float, slots: int = 0) -> list[TokenRecord]:
        """``user``'s records neither revoked nor expired at ``now``, oldest first: the HT lookup.

        The index is read, then one script filters the records inside Redis
        (one HMGET each), so only live ones travel and are decoded; stale ids
        are pruned on the way.  Fewer than ``slots`` live records are
        followed by padding records, decoded like real ones and dropped last,
        so the decoding here costs the same for 0 to ``slots`` records.
        """
        with self._errors():
            flat = self._list_live_flat(user, now, slots, "A" * 43, "token-1700000000-abcdef")
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
            if user is None:
                owners = self._owners(ids)
                stale = [i for i, o in zip(ids, owners, strict=True) if o is None]
                if stale:  # owner pointers share the ids' slots, not the index's: ZREM after the read
                    self.client.zrem(index, *stale)
                pairs = [(i, o) for i, o in zip(ids, owners, strict=True) if o is not None]
            else:
                pairs = [(i, user) for i in ids]
            pipe = self.client.pipeline(transaction=False)
            for token_id, owner in pairs:
                pipe.hgetall(self._token_key(owner, token_id))
            hashes = pipe.execute()
            records = [self._record(i, h) for (i, _), h in zip(pairs, hashes, strict=True)]
            if user is not None:
                stale = [i for (i, _), r in zip(pairs, records, strict=True) if r is None]
                if stale:
                    self._prune(keys=[index, *(self._token_key(user, i) for i in stale)], args=stale)
        return [r for r in records if r is not None]

    def _owners(self, ids: Sequence[str]) -> builtins.list[str | None]:
        pipe = self.client.pipeline(transaction=False)
        for token_id in ids:
            pipe.get(self._owner_key(token_id))
        return [None if o is None else _str(o) for o in pipe.execute()]

    def revoke(self, token_id: str, at: float) -> bool:
        """Revoke once: a second revocation keeps the first time (it is what the user saw)."""
        with self._errors():
            owner = self._owner(token_id)
            if owner is None:
                return False
            return bool(self._set_field(keys=[self._token_key(owner, token_id)], args=["revoked", repr(at)]))

    def _revoke_user(self, user: str, at: float, upper: str) -> int:
        """One script on the user's slot over the ids read just before; read again if the index changed."""
        index = self._index_key(user)
        for _ in range(_REVOKE_ATTEMPTS):
            ids = [_str(i) for i in self.client.zrangebyscore(index, "-inf", upper)]
            keys = [index, *(self._token_key(user, i) for i in ids)]
            n = int(self._revoke_ids(keys=keys, args=[repr(at), upper, *ids]))
            if n >= 0:
                return n
        raise TemporaryFailure(f"token store (Redis): the tokens of {user!r} kept changing during revocation")

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        """Revoke the live tokens of ``user`` (or everyone's) created before ``before``; return how many.

        One user's revocation is atomic (one script on its slot).  Without a
        user, the users are found through the all-tokens index and revoked
        one after another (each atomic; a Redis Cluster has no cross-slot
        transaction).
        """
        upper = "+inf" if before is None else f"({before!r}"
        with self._errors():
            if user is not None:
                return self._revoke_user(user, at, upper)
            index = self._index_key(None)
            ids = [_str(i) for i in self.client.zrangebyscore(index, "-inf", upper)]
            owners = self._owners(ids)
            stale = [i for i, o in zip(ids, owners, strict=True) if o is None]
            if stale:
                self.client.zrem(index, *stale)
            return sum(self._revoke_user(u, at, upper) for u in dict.fromkeys(o for o in owners if o is not None))

    def touch(self, token_id: str, at: float) -> None:
        """Best effort (:meth:`TokenService.mark_used` ignores its errors): no retry, bounded by the timeout."""
        with self._errors():
            owner = self._owner(token_id)
            if owner is not None:
                self._set_field(keys=[self._token_key(owner, token_id)], args=["last_used", repr(at)])

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



# KEYS: one penalty count.  ARGV: lifetime ms.  The new count; the key goes ``lifetime`` after its last failure.
_PENALTY_RECORD = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""


class RedisPenaltyStore(_LazyClient):
    """A :class:`~saslkit.penalty.PenaltyStore` in Redis or Redis Cluster: failures seen by one front-end
    delay the next attempt on every other (per remote IP and per user, as :class:`~saslkit.penalty.AuthPenalty`
    keys them).

    Each count is one key ``P{penalty:K}`` (one slot per key, so any key may
    live on any master), forgotten ``expire`` seconds after its last failure:
    keys never outlive that bound.  The auth penalty must never stop
    authentication, so while Redis cannot be reached the counts fall back
    to an in-process :class:`~saslkit.penalty.MemoryPenaltyStore` (penalties
    per front-end, as without Redis) and a warning is logged once per outage.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis | RedisCluster,
        *,
        prefix: str = "saslkit:",
        expire: float = 3600.0,
        fallback: PenaltyStore | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise UsageError("the Redis key prefix cannot contain { or } (they make hash tags)")
        if not 0 < expire < 1e9:
            raise UsageError("the penalty lifetime must be positive")
        self.prefix = prefix
        self.expire = expire
        self.fallback: PenaltyStore = fallback or MemoryPenaltyStore(expire=expire)
        self._degraded = False
        self._set_client(url_or_client)

    def _register(self, client: redis.Redis | RedisCluster) -> None:
        self._record = client.register_script(_PENALTY_RECORD)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{{penalty:{escape_tag(key)}}}"

    def _failed(self, exc: Exception) -> None:
        if not self._degraded:
            self._degraded = True
            _log.warning("penalty store (Redis) unavailable, counting failures in this process: %s", exc)

    def _ok(self) -> None:
        if self._degraded:
            self._degraded = False
            _log.warning("penalty store (Redis) reachable again")

    def get(self, key: str) -> int:
        try:
            value = self.client.get(self._key(key))
        except (RedisError, RedisClusterException, TemporaryFailure) as exc:
            self._failed(exc)
            return self.fallback.get(key)
        self._ok()
        try:
            return max(0, int(_str(value))) if value is not None else 0
        except ValueError:
            return 0

    def record(self, key: str) -> int:
        try:
            self.client  # noqa: B018 - made (connected, for a cluster) before the first command
            count = int(self._record(keys=[self._key(key)], args=[math.ceil(self.expire * 1000)]))
        except (RedisError, RedisClusterException, TemporaryFailure) as exc:
            self._failed(exc)
            return self.fallback.record(key)
        self._ok()
        return count

    def reset(self, key: str) -> None:
        try:
            self.client.delete(self._key(key))
        except (RedisError, RedisClusterException, TemporaryFailure) as exc:
            self._failed(exc)
        self.fallback.reset(key)
