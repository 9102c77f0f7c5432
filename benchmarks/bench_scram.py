"""Time the server side of a full SCRAM exchange: saslkit against scramp.

One exchange is: build the server mechanism, take client-first, produce
server-first, take client-final, verify the proof against the stored keys and
produce server-final (``v=``).  The server holds StoredKey/ServerKey, so it
runs no PBKDF2; the client messages are computed once per round with a fixed
client nonce and both servers use the same fixed server nonce, salt and keys,
so the precomputed client-final stays valid and client-side PBKDF2 is outside
the timing.

    python benchmarks/bench_scram.py [--rounds N] [--exchanges M] [--json]

Prints the median microseconds per exchange over the rounds for each library
and the ratio scramp/saslkit.  Makes no assertion about the numbers.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Measure the checkout this script lives in, even if another saslkit is installed.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import saslkit  # noqa: E402
from saslkit import (  # noqa: E402
    Challenge,
    ClientCredentials,
    MemoryUserStore,
    ScramCredential,
    ServerContext,
    Success,
    UserRecord,
    default_registry,
)

try:
    import scramp
except ImportError:  # pragma: no cover - the benchmark still times saslkit
    scramp = None

USER = "user"
PASSWORD = "pencil"
SALT = bytes(range(16))
ITERATIONS = 4096
C_NONCE = "fyko+d2lbbFgONRv9qkxdawL"  # RFC 5802 §5's example client nonce
S_NONCE = "3rfcNHYJY1ZVvWVs7j"
SERVER_SECRET = b"bench-server-secret-0123456789ab"
HASHES = {"SCRAM-SHA-1": "SHA-1", "SCRAM-SHA-256": "SHA-256", "SCRAM-SHA-512": "SHA-512"}

Exchange = Callable[[], None]


def client_messages(mech: str) -> tuple[bytes, bytes]:
    """client-first and client-final from a fixed client (one PBKDF2, untimed)."""
    creds = ClientCredentials(USER, PASSWORD, nonce_factory=lambda: C_NONCE)
    client = default_registry().client(mech, creds)
    first = client.start()
    assert first is not None  # SCRAM always has an initial response
    server_first = f"r={C_NONCE}{S_NONCE},s={base64.b64encode(SALT).decode()},i={ITERATIONS}".encode()
    return first, client.step(server_first)


def saslkit_exchange(mech: str, first: bytes, final: bytes) -> Exchange:
    cred = ScramCredential.derive(HASHES[mech], PASSWORD, SALT, ITERATIONS)
    users = MemoryUserStore([UserRecord(USER, {cred.hash_name: cred})], default_iterations=ITERATIONS)
    ctx = ServerContext(users, server_secret=SERVER_SECRET, nonce_factory=lambda: S_NONCE)
    make_server = default_registry().server

    def exchange() -> None:
        server = make_server(mech, ctx)
        server.step(first)
        server.step(final)

    # Correctness check, once, outside the timing.
    server = make_server(mech, ctx)
    assert isinstance(server.step(first), Challenge)
    outcome = server.step(final)
    if not isinstance(outcome, Success):
        raise SystemExit(f"saslkit server rejected the precomputed exchange: {outcome!r}")
    return exchange


def scramp_exchange(mech: str, first: bytes, final: bytes) -> Exchange:
    assert scramp is not None
    mechanism = scramp.ScramMechanism(mech)
    salt, stored_key, server_key, iterations = mechanism.make_auth_info(PASSWORD, iteration_count=ITERATIONS, salt=SALT)
    db = {USER: (salt, stored_key, server_key, iterations)}
    auth_fn = db.get
    first_s, final_s = first.decode(), final.decode()

    def exchange() -> None:
        server = mechanism.make_server(auth_fn, s_nonce=S_NONCE)
        server.set_client_first(first_s)
        server.get_server_first()
        server.set_client_final(final_s)
        server.get_server_final()

    server = mechanism.make_server(auth_fn, s_nonce=S_NONCE)
    server.set_client_first(first_s)
    server.get_server_first()
    server.set_client_final(final_s)  # raises ScramException if the proof does not verify
    if not server.get_server_final().startswith("v="):
        raise SystemExit("scramp server rejected the precomputed exchange")
    return exchange


def time_round(exchange: Exchange, count: int) -> float:
    """Seconds per exchange over ``count`` back-to-back exchanges (GC off, like timeit)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(count):
            exchange()
        elapsed = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / count


def run(mech: str, rounds: int, exchanges: int, warmup: int) -> dict[str, Any]:
    libraries: dict[str, Callable[[str, bytes, bytes], Exchange]] = {"saslkit": saslkit_exchange}
    if scramp is not None:
        libraries["scramp"] = scramp_exchange
    samples: dict[str, list[float]] = {name: [] for name in libraries}
    for factory in libraries.values():  # warm-up: caches, imports, specialisation
        first, final = client_messages(mech)
        exchange = factory(mech, first, final)
        for _ in range(warmup):
            exchange()
    for _ in range(rounds):
        first, final = client_messages(mech)  # once per round, outside the timing
        for name, factory in libraries.items():  # interleaved so drift hits both alike
            samples[name].append(time_round(factory(mech, first, final), exchanges))
    results: dict[str, dict[str, Any]] = {
        name: {
            "median_us": statistics.median(values) * 1e6,
            "min_us": min(values) * 1e6,
            "max_us": max(values) * 1e6,
            "samples_us": [v * 1e6 for v in values],
        }
        for name, values in samples.items()
    }
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["scramp"] / medians["saslkit"] if "scramp" in medians else None
    return {
        "mechanism": mech,
        "measured": "server side: new mechanism, client-first -> server-first, client-final -> v=",
        "iterations": ITERATIONS,
        "rounds": rounds,
        "exchanges_per_round": exchanges,
        "warmup": warmup,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "saslkit_version": saslkit.__version__,
        "scramp_version": getattr(scramp, "__version__", None) if scramp is not None else None,
        "results": results,
        "ratio_scramp_over_saslkit": ratio,
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"{report['mechanism']} server side with stored keys ({report['iterations']} iterations, no PBKDF2)")
    print(
        f"Python {report['python']}, {report['rounds']} rounds x {report['exchanges_per_round']} "
        f"exchanges, {report['warmup']} warm-up"
    )
    print()
    print(f"{'library':<10}{'version':>10}{'median µs':>12}{'min µs':>10}{'max µs':>10}")
    versions = {"saslkit": report["saslkit_version"], "scramp": report["scramp_version"]}
    for name, r in report["results"].items():
        print(f"{name:<10}{versions[name] or '?':>10}{r['median_us']:>12.1f}{r['min_us']:>10.1f}{r['max_us']:>10.1f}")
    print()
    if report["ratio_scramp_over_saslkit"] is None:
        print("scramp is not installed: no ratio")
    else:
        print(f"ratio scramp/saslkit (median): {report['ratio_scramp_over_saslkit']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per library (default 7)")
    parser.add_argument("--exchanges", type=int, default=2000, help="exchanges per round (default 2000)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed exchanges first (default 500)")
    parser.add_argument("--mechanism", default="SCRAM-SHA-256", choices=sorted(HASHES))
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.exchanges < 1 or args.warmup < 0:
        parser.error("--rounds and --exchanges must be >= 1, --warmup >= 0")
    report = run(args.mechanism, args.rounds, args.exchanges, args.warmup)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
