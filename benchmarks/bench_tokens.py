"""Server-side token verification per mechanism, against floors measured in the same run.

    python benchmarks/bench_tokens.py [--count N] [--rounds R] [--redis URL] [--json]

Measures, per exchange (server side, median over rounds):

* REMEMBERME with a RANDOM token on SQLite (and on Redis with ``--redis``),
  REMEMBERME with a JWT, HT2-SHA-256-NONE with a RANDOM token, STOKEN with a
  temporary (self-verifying) token;
* the floor: one HMAC-SHA-256 plus one primary-key lookup in the same SQLite
  file (the irreducible work of a stored, derived token);
* the CPU of a whole token reauthentication (client and server) against a
  whole SCRAM-SHA-256 login at 4096 iterations (client PBKDF2 included);
* HT enumeration (issue 8 item 10): a failed HT2-SHA-256-NONE exchange for
  an unknown user, a user with 1 token, a user at the per-user cap (RANDOM
  and JWT tokens) and a user who was minted 50 tokens (the cap revoked 30),
  as ratios to the unknown user (1.0 = indistinguishable): on the first
  attempt at the name on the process (derived-token cache cold: ``cap``
  slot derivations) and on later attempts (cache warm: ``cap`` lookups).

No assertion is made on the numbers; they are printed as ratios.
"""

from __future__ import annotations

import argparse
import gc
import hmac
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from saslkit import ClientCredentials, MemoryUserStore, ServerContext, default_registry, make_user  # noqa: E402
from saslkit.credentials import UserRecord  # noqa: E402
from saslkit.keys import KeyRing  # noqa: E402
from saslkit.mechanism import Failure, Success  # noqa: E402
from saslkit.stores import open_token_store  # noqa: E402
from saslkit.testing.loopback import run_exchange  # noqa: E402
from saslkit.tokens import SubmissionTokens, TokenService  # noqa: E402


def per_call(fn: Callable[[], object], count: int, rounds: int) -> float:
    """Median seconds per call over ``rounds`` rounds of ``count`` calls (GC off)."""
    for _ in range(max(1, count // 10)):
        fn()
    samples = []
    for _ in range(rounds):
        gc.disable()
        start = time.process_time()
        for _ in range(count):
            fn()
        samples.append((time.process_time() - start) / count)
        gc.enable()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", help="also measure REMEMBERME on this Redis, e.g. redis://127.0.0.1:6379/15")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="saslkit-bench-"))
    ring = KeyRing.open(tmp / "bench.keys", quiet=True)
    registry = default_registry()
    results: dict[str, float] = {}
    token_users = MemoryUserStore([UserRecord("alice")])  # token checks confirm the user

    def server_only(mech: str, ctx: ServerContext, message: bytes) -> Callable[[], object]:
        def run() -> object:
            result = registry.server(mech, ctx).step(message)
            assert isinstance(result, Success), result
            return result
        return run

    def remember_on(url: str) -> tuple[TokenService, str]:
        service = TokenService(open_token_store(url), ring)
        ctx = ServerContext(token_users, ring.server_secret, tls=True, tokens=service)
        token, _ = service.mint("alice")
        results[f"REMEMBERME RANDOM ({url.split(':')[0]})"] = per_call(
            server_only("REMEMBERME", ctx, token.encode()), args.count, args.rounds)
        return service, token

    if args.redis:
        remember_on(args.redis)
    service, token = remember_on(f"sqlite:///{tmp / 'tokens.db'}")
    ctx = ServerContext(token_users, ring.server_secret, tls=True, tokens=service)
    jwt_token, _ = service.mint("alice", "JWT")
    results["REMEMBERME JWT (sqlite)"] = per_call(
        server_only("REMEMBERME", ctx, jwt_token.encode()), args.count, args.rounds)
    ht_client = registry.client("HT2-SHA-256-NONE", ClientCredentials("alice", token))
    results["HT2-SHA-256-NONE RANDOM (sqlite)"] = per_call(
        server_only("HT2-SHA-256-NONE", ctx, ht_client.start() or b""), args.count, args.rounds)
    stokens = SubmissionTokens(service.store, ring)
    stoken, _ = stokens.generate("TEMP", "friend@example.com", "alice@foo.com")
    sctx = ServerContext(MemoryUserStore(), ring.server_secret, tls=True, stokens=stokens)
    results["STOKEN TEMP"] = per_call(
        server_only("STOKEN", sctx, f"alice@foo.com\x00{stoken}".encode()), args.count, args.rounds)

    # Floor: one HMAC and one indexed lookup on the same file.
    db = sqlite3.connect(tmp / "tokens.db")
    key = ring.current("token").secret
    token_id = token.split(".")[1]

    def floor() -> object:
        db.execute("SELECT * FROM tokens WHERE id=?", (token_id,)).fetchone()
        return hmac.digest(key, token_id.encode(), "sha256")

    results["floor: 1 HMAC + 1 indexed lookup"] = per_call(floor, args.count, args.rounds)

    # Whole reauthentication (client + server) vs a SCRAM-SHA-256 login at 4096 iterations.
    users = MemoryUserStore([make_user("alice", "pencil", iterations=4096, argon2_hash=False)])
    login_ctx = ServerContext(users, ring.server_secret, tls=True, tokens=service)

    def login(mech: str, creds: ClientCredentials) -> Callable[[], object]:
        def run() -> object:
            outcome = run_exchange(registry.client(mech, creds), registry.server(mech, login_ctx))[0]
            assert isinstance(outcome, Success), outcome
            return outcome
        return run

    results["login: SCRAM-SHA-256 i=4096 (client+server)"] = per_call(
        login("SCRAM-SHA-256", ClientCredentials("alice", "pencil")), max(50, args.count // 20), args.rounds)
    results["login: REMEMBERME (client+server)"] = per_call(
        login("REMEMBERME", ClientCredentials("", token)), args.count, args.rounds)
    results["login: HT2-SHA-256-NONE (client+server)"] = per_call(
        login("HT2-SHA-256-NONE", ClientCredentials("alice", token)), args.count, args.rounds)

    enumeration = ht_enumeration(ring, tmp, max(50, args.count // 10), args.rounds)

    floor = results["floor: 1 HMAC + 1 indexed lookup"]
    scram = results["login: SCRAM-SHA-256 i=4096 (client+server)"]
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "us_per_call": {k: round(v * 1e6, 2) for k, v in results.items()},
        "remember_random_sqlite_over_floor": round(results["REMEMBERME RANDOM (sqlite)"] / floor, 2),
        "scram_login_over_rememberme_login": round(scram / results["login: REMEMBERME (client+server)"], 1),
        "scram_login_over_ht2_login": round(scram / results["login: HT2-SHA-256-NONE (client+server)"], 1),
        "ht_enumeration": enumeration,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"token verification, CPU time per call (Python {report['python']}, median of {args.rounds} rounds)\n")
    for name, us in report["us_per_call"].items():
        print(f"  {name:48s} {us:10.2f} µs")
    print(f"\n  REMEMBERME RANDOM on SQLite / floor:            {report['remember_random_sqlite_over_floor']}x")
    print(f"  SCRAM-SHA-256 login / REMEMBERME login:         {report['scram_login_over_rememberme_login']}x")
    print(f"  SCRAM-SHA-256 login / HT2-SHA-256-NONE login:   {report['scram_login_over_ht2_login']}x")
    for when in ("first attempt", "later attempts"):
        part = enumeration[when]
        print(f"\nHT2-SHA-256-NONE failure, {when} at the name (cap {enumeration['cap']}), "
              "µs and ratio to an unknown user:")
        for name, us in part["us_per_call"].items():
            print(f"  {name:48s} {us:10.2f} µs  x{part['ratio_to_unknown'][name]:.3f}")


def ht_enumeration(ring: KeyRing, tmp: Path, count: int, rounds: int) -> dict[str, Any]:
    """A failed HT exchange (wrong token) costs the same for any user: unknown / 1 / cap / 50 minted.

    Measured twice: the first attempt at a name (the service's derived-token
    cache emptied before each, untimed) and later attempts (cache warm).
    Rounds are interleaved between the users so machine load hits them alike.
    """
    service = TokenService(open_token_store(f"sqlite:///{tmp / 'enum.db'}"), ring)
    cap = service.max_tokens_per_user
    service.mint("one")
    for _ in range(cap):
        service.mint("full")
    for _ in range(cap):
        service.mint("fulljwt", "JWT")
    for _ in range(50):
        service.mint("fifty")  # the cap revokes 30 of them
    users = MemoryUserStore([UserRecord(n) for n in ("one", "full", "fulljwt", "fifty")])
    ctx = ServerContext(users, ring.server_secret, tls=True, tokens=service)
    mech = "HT2-SHA-256-NONE"
    registry = default_registry()
    cases = {"unknown user": "nobody", "1 RANDOM token": "one", f"{cap} RANDOM tokens": "full",
             f"{cap} JWT tokens": "fulljwt", f"50 minted ({50 - cap} revoked)": "fifty"}
    messages = {name: registry.client(mech, ClientCredentials(user, "wrong-token")).start() or b""
                for name, user in cases.items()}

    def attempt(message: bytes) -> Callable[[], object]:
        def run() -> object:
            result = registry.server(mech, ctx).step(message)
            assert isinstance(result, Failure), result
            return result
        return run

    def first_attempt(message: bytes) -> float:
        """Seconds of one attempt with the derived-token cache emptied first (not timed)."""
        with service._derived_lock:
            service._derived.clear()
        gc.disable()
        start = time.process_time()
        attempt(message)()
        elapsed = time.process_time() - start
        gc.enable()
        return elapsed

    later: dict[str, list[float]] = {name: [] for name in cases}
    first: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, message in messages.items():
            first[name].extend(first_attempt(message) for _ in range(max(5, count // 10)))
        for name, message in messages.items():
            later[name].append(per_call(attempt(message), count, 1))

    def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
        us = {name: statistics.median(v) * 1e6 for name, v in samples.items()}
        unknown = us["unknown user"]
        return {
            "us_per_call": {k: round(v, 2) for k, v in us.items()},
            "ratio_to_unknown": {k: round(v / unknown, 3) for k, v in us.items()},
        }

    return {"cap": cap, "first attempt": summary(first), "later attempts": summary(later)}


if __name__ == "__main__":
    main()
