"""Logins per second with users and tokens on SQLite, PostgreSQL, Redis and Redis Cluster, 16 concurrent clients.

    python benchmarks/bench_stores.py [--clients 16] [--seconds 3] [--rounds 3] [--users 64]
                                      [--postgres URL] [--redis URL] [--redis-cluster URL] [--quick] [--json]

Without URLs, private servers are started for the run (a PostgreSQL from
``initdb``, one ``redis-server`` and a 3-master Redis Cluster, as the tests
start them: tests/scale_fixtures.py).

What one front-end process does per login, server side, with ``--clients``
threads at once (the stores' network waits overlap, the CPU work takes turns
on the GIL, as in ``saslkit serve``):

* **SCRAM-SHA-256**: a new server mechanism, client-first (the user store
  lookup: SQLite file or PostgreSQL), client-final (proof verified, ``v=``).
  The client messages are computed once per user with fixed nonces, so no
  client PBKDF2 is timed.  Redis holds no users: n/a there.
* **REMEMBERME** (RANDOM token): the token service's verification (token
  record read from the token store, MAC re-derived and compared), the user
  lookup that confirms the token predates the last credential change, and
  the best-effort ``last_used`` write.  Users are on SQLite for the SQLite
  row and on PostgreSQL for the others (the deployment docs/deployment.md
  describes: users in PostgreSQL, tokens in PostgreSQL or Redis).

Logins are spread over ``--users`` users (so a cluster's masters all work).
Backends are interleaved round by round; the table shows the median logins
per second over the rounds and the ratio to SQLite measured in the same run.
No assertion is made on the numbers.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from saslkit import ClientCredentials, ServerContext, default_registry  # noqa: E402
from saslkit.credentials import ScramCredential, UserRecord  # noqa: E402
from saslkit.keys import KeyRing  # noqa: E402
from saslkit.mechanism import Challenge, Success  # noqa: E402
from saslkit.stores import open_token_store, open_user_store  # noqa: E402
from saslkit.tokens import TokenService  # noqa: E402

SALT = bytes(range(16))
ITERATIONS = 4096
PASSWORD = "pencil"
C_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
S_NONCE = "3rfcNHYJY1ZVvWVs7j"

Login = Callable[[int], None]


@contextmanager
def private_servers(want: set[str]) -> Iterator[dict[str, str]]:
    """Start the servers the run needs and has no URL for (the test suite's launchers)."""
    sys.path.insert(0, str(_ROOT / "tests"))
    from conftest import RedisServer, require_redis_server  # type: ignore[import-not-found]
    from scale_fixtures import PostgresServer, RedisClusterNodes, postgres_bindir  # type: ignore[import-not-found]

    urls: dict[str, str] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="saslkit-bench-stores-")))
        if "postgres" in want:
            bindir = postgres_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL is not installed: give --postgres URL")
            pg = PostgresServer(bindir)
            stack.callback(pg.remove)
            urls["postgres"] = pg.url
        if "redis" in want:
            (tmp / "redis").mkdir()
            single = RedisServer(require_redis_server(), tmp / "redis")
            stack.callback(single.stop)
            urls["redis"] = single.url
        if "redis-cluster" in want:
            (tmp / "cluster").mkdir()
            cluster = RedisClusterNodes(require_redis_server(), tmp / "cluster")
            stack.callback(cluster.stop)
            urls["redis-cluster"] = cluster.url
        yield urls


def users_and_messages(count: int) -> tuple[list[UserRecord], list[tuple[bytes, bytes]]]:
    """``count`` users with SCRAM-SHA-256 keys, and each one's client-first and client-final (fixed nonces)."""
    registry = default_registry()
    cred = ScramCredential.derive("SHA-256", PASSWORD, SALT, ITERATIONS)
    records, messages = [], []
    server_first = f"r={C_NONCE}{S_NONCE},s={base64.b64encode(SALT).decode()},i={ITERATIONS}".encode()
    for i in range(count):
        name = f"user{i:04d}"
        records.append(UserRecord(name, {"SHA-256": cred}))
        client = registry.client("SCRAM-SHA-256", ClientCredentials(name, PASSWORD, nonce_factory=lambda: C_NONCE))
        first = client.start()
        assert first is not None
        messages.append((first, client.step(server_first)))
    return records, messages


def scram_login(users: Any, secret: bytes, messages: list[tuple[bytes, bytes]]) -> Login:
    ctx = ServerContext(users, server_secret=secret, nonce_factory=lambda: S_NONCE, tls=True)
    make_server = default_registry().server

    def login(i: int) -> None:
        first, final = messages[i % len(messages)]
        server = make_server("SCRAM-SHA-256", ctx)
        if not isinstance(server.step(first), Challenge) or not isinstance(server.step(final), Success):
            raise SystemExit("SCRAM-SHA-256 login failed")

    return login


def token_login(users: Any, tokens: TokenService, secret: bytes, token_strings: list[str]) -> Login:
    ctx = ServerContext(users, server_secret=secret, tls=True, tokens=tokens)
    make_server = default_registry().server
    encoded = [t.encode() for t in token_strings]

    def login(i: int) -> None:
        outcome = make_server("REMEMBERME", ctx).step(encoded[i % len(encoded)])
        if not isinstance(outcome, Success):
            raise SystemExit(f"REMEMBERME login failed: {outcome!r}")

    return login


def rate(login: Login, clients: int, seconds: float) -> float:
    """Logins per second with ``clients`` threads running ``login`` back to back for ``seconds``."""
    counts = [0] * clients
    stop = threading.Event()
    start = threading.Barrier(clients + 1)

    def worker(n: int) -> None:
        start.wait()
        i = n * 7919
        while not stop.is_set():
            login(i)
            i += 1
            counts[n] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--postgres", help="postgresql://… (default: start a private one)")
    parser.add_argument("--redis", help="redis://… (default: start a private one)")
    parser.add_argument("--redis-cluster", help="redis-cluster://host:port,… (default: start a private one)")
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke run)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.users = 0.5, 1, 8
    # SQLite's best-effort last_used write gives up at once while another thread writes (logged as a warning).
    logging.getLogger("saslkit.stores").setLevel(logging.ERROR)

    given = {"postgres": args.postgres, "redis": args.redis, "redis-cluster": args.redis_cluster}
    with private_servers({k for k, v in given.items() if not v}) as started:
        urls = {k: v or started[k] for k, v in given.items()}
        tmp = Path(tempfile.mkdtemp(prefix="saslkit-bench-stores-"))
        ring = KeyRing.open(tmp / "bench.keys", quiet=True)
        records, messages = users_and_messages(args.users)
        sqlite_users = open_user_store(f"sqlite:///{tmp / 'users.db'}")
        pg_users = open_user_store(urls["postgres"])
        for store in (sqlite_users, pg_users):
            for record in records:
                store.put_user(record)
        logins: dict[tuple[str, str], Login] = {
            ("SCRAM-SHA-256", "SQLite"): scram_login(sqlite_users, ring.server_secret, messages),
            ("SCRAM-SHA-256", "PostgreSQL"): scram_login(pg_users, ring.server_secret, messages),
        }
        backends = (("SQLite", f"sqlite:///{tmp / 'users.db'}", sqlite_users),
                    ("PostgreSQL", urls["postgres"], pg_users),
                    ("Redis", urls["redis"], pg_users),
                    ("Redis Cluster", urls["redis-cluster"], pg_users))
        for label, url, users in backends:
            service = TokenService(open_token_store(url), ring)
            tokens = [service.mint(r.username)[0] for r in records]
            logins[("REMEMBERME", label)] = token_login(users, service, ring.server_secret, tokens)
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in logins}
        for _ in range(args.rounds):
            for key, login in logins.items():
                samples[key].append(rate(login, args.clients, args.seconds))

    medians = {key: statistics.median(v) for key, v in samples.items()}
    report = {
        "clients": args.clients, "seconds": args.seconds, "rounds": args.rounds, "users": args.users,
        "logins_per_second": {f"{mech} / {backend}": round(v, 1) for (mech, backend), v in medians.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"logins per second, {args.clients} concurrent clients, median of {args.rounds} round(s) of "
          f"{args.seconds} s, {args.users} users")
    print(f"{'store':<16}{'SCRAM-SHA-256':>14}{'vs SQLite':>11}{'REMEMBERME':>14}{'vs SQLite':>11}")
    for backend in ("SQLite", "PostgreSQL", "Redis", "Redis Cluster"):
        line = f"{backend:<16}"
        for mech in ("SCRAM-SHA-256", "REMEMBERME"):
            value = medians.get((mech, backend))
            if value is None:
                line += f"{'n/a':>14}{'':>11}"
            else:
                line += f"{value:>14.0f}{value / medians[(mech, 'SQLite')]:>10.2f}x"
        print(line)
    print("(Redis holds no users: its REMEMBERME rows confirm the user in PostgreSQL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
