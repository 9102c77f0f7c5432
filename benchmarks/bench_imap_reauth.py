"""IMAP re-authentication on one TLS connection versus a new TLS connection and a SCRAM login, same run.

    python benchmarks/bench_imap_reauth.py [--count N] [--warmup W] [--server subprocess|thread]
                                           [--implicit-tls] [--iterations I] [--json]

Wall time per re-authentication, as a client sees it (saslkit's blocking
``ImapClient``), against saslkit's reference IMAP server on loopback with its
SQLite user and token store: by default a ``saslkit serve imap`` subprocess
(client and server in separate processes, as deployed), or with ``--server
thread`` an in-process ``ImapServer`` on its own asyncio loop in a background
thread (client and server then share one interpreter lock):

(a) ``UNAUTHENTICATE`` + ``AUTHENTICATE REMEMBERME <initial response>``
    written together (RFC 8437 §3 pipelining, RFC 4959 SASL-IR) on one
    existing TLS connection, up to the tagged OK of the AUTHENTICATE;
(b) a new connection: TCP connect, greeting, STARTTLS (or ``--implicit-tls``)
    and the TLS handshake, CAPABILITY, ``AUTHENTICATE SCRAM-SHA-256`` with
    the client's PBKDF2 at the user's iteration count (default 10000, the
    ``saslkit user add`` default), up to the tagged OK (LOGOUT not timed);
(c) for reference, a new connection as in (b) with ``AUTHENTICATE REMEMBERME``.

For scale it also times a NOOP round trip on the kept connection (the floor
of (a): one round trip) and the client's PBKDF2 alone (part of (b)).  The
kinds are timed in interleaved blocks (``--rounds`` rounds, each timing a
block of every kind in turn) so machine drift hits all of them, without
timing (a) while the server is still closing the connection of a (b) or (c);
garbage collection is off while timing.  The medians are reported with the
ratio (b)/(a); the goal is at least 10x.  No assertion is made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from _common import stop, wait_ready  # noqa: E402

from saslkit.credentials import DEFAULT_ITERATIONS, make_user  # noqa: E402
from saslkit.imap.client import ImapClient  # noqa: E402
from saslkit.imap.server import ImapServer  # noqa: E402
from saslkit.imap.session import ImapConfig  # noqa: E402
from saslkit.keys import KeyRing, default_keys_path  # noqa: E402
from saslkit.net.client import client_tls_context  # noqa: E402
from saslkit.net.server import ensure_certificate  # noqa: E402
from saslkit.stores import open_token_store, open_user_store  # noqa: E402
from saslkit.tokens import TokenService  # noqa: E402

USER = "alice"
PASSWORD = "correct horse battery staple"
GOAL = 10.0


class BackgroundServer:
    """An :class:`ImapServer` on its own asyncio loop (``asyncio.run``) in a daemon thread."""

    def __init__(self, server: ImapServer) -> None:
        self.server = server
        self.address: tuple[str, int] = ("", 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="imap-server", daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self.address = await self.server.start("127.0.0.1", 0)
        self._ready.set()
        await self.server.serve_until(self._stop)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the IMAP server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextlib.contextmanager
def thread_server(db: Path, cert_path: Path, key_path: Path, implicit_tls: bool) -> Iterator[tuple[str, int]]:
    """An in-process ImapServer on the benchmark's database, in a background thread."""
    ring = KeyRing.open(default_keys_path(db), quiet=True)
    tokens = TokenService(open_token_store(str(db)), ring)  # the tokens live in the users' SQLite file, as served
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.minimum_version = ssl.TLSVersion.TLSv1_2
    server_tls.load_cert_chain(cert_path, key_path)
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    imap_server = ImapServer(
        ImapConfig(hostname="localhost", tls_available=not implicit_tls, failure_delay=0.0),
        open_user_store(str(db)), ring.server_secret, tokens=tokens, ssl_context=server_tls,
        certificate_der=der, implicit_tls=implicit_tls,
    )
    with BackgroundServer(imap_server) as background:
        yield background.address


@contextlib.contextmanager
def subprocess_server(db: Path, implicit_tls: bool) -> Iterator[tuple[str, int]]:
    """``saslkit serve imap`` on the benchmark's database (it finds the certificate beside it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "saslkit", "serve", "imap", "--listen", "127.0.0.1:0", "--db", str(db),
           "--failure-delay", "0", *(["--implicit-tls"] if implicit_tls else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        m = wait_ready(proc, re.compile(r"saslkit imap listening on (\S+):(\d+)"), "saslkit serve imap")
        yield m.group(1), int(m.group(2))
    finally:
        stop(proc)


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    deciles = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return {"median": statistics.median(ms), "p10": deciles[0], "p90": deciles[-1], "min": ms[0], "max": ms[-1],
            "n": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="timed samples of each kind (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed samples of each kind first (default 20)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved blocks of each kind (default 10)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"SCRAM iteration count of the user (default {DEFAULT_ITERATIONS}, saslkit's default)")
    parser.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte instead of STARTTLS")
    parser.add_argument("--server", choices=("subprocess", "thread"), default="subprocess",
                        help="saslkit serve imap in a subprocess (default) or an in-process server thread")
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    args = parser.parse_args()
    if args.count < 2 or args.warmup < 0 or not 1 <= args.rounds <= args.count:
        parser.error("--count must be at least 2, --warmup not negative, --rounds from 1 to --count")

    with tempfile.TemporaryDirectory(prefix="saslkit-bench-imap-") as tmp_dir:
        run_benchmark(args, Path(tmp_dir))


def run_benchmark(args: argparse.Namespace, tmp: Path) -> None:
    db = tmp / "users.db"
    open_user_store(str(db)).put_user(make_user(USER, PASSWORD, iterations=args.iterations))
    KeyRing.open(default_keys_path(db), quiet=True)
    cert_path, key_path, _ = ensure_certificate(tmp, "localhost")  # where saslkit serve imap looks for it
    client_tls = client_tls_context(cafile=str(cert_path))
    tls_mode = "implicit" if args.implicit_tls else "starttls"
    if args.server == "thread":
        running = thread_server(db, cert_path, key_path, args.implicit_tls)
    else:
        running = subprocess_server(db, args.implicit_tls)

    with running as (host, port):

        def new_client() -> ImapClient:
            return ImapClient(host, port, ssl_context=client_tls, timeout=30)

        # The long-lived connection of (a): a password login, then a REMEMBERME token for re-authentication.
        kept = new_client()
        kept.connect(tls_mode)
        kept.authenticate("SCRAM-SHA-256", USER, PASSWORD)
        token = kept.remember("RANDOM")
        tls_version = kept.tls_version

        def reauth_same_connection() -> None:
            if not kept.reauthenticate("REMEMBERME", USER, token).pipelined:
                raise RuntimeError("UNAUTHENTICATE and AUTHENTICATE were not pipelined")

        def new_connection(mechanism: str, secret: str) -> Callable[[], float]:
            def run() -> float:
                imap = new_client()
                start = time.perf_counter()
                imap.connect(tls_mode)
                imap.authenticate(mechanism, USER, secret)
                elapsed = time.perf_counter() - start
                imap.logout()
                return elapsed
            return run

        def timed(fn: Callable[[], object]) -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        kinds: dict[str, Callable[[], float]] = {
            "noop": lambda: timed(lambda: kept.command("NOOP")),
            "a": lambda: timed(reauth_same_connection),
            "b": new_connection("SCRAM-SHA-256", PASSWORD),
            "c": new_connection("REMEMBERME", token),
        }
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for run in kinds.values():  # warm-up
            for _ in range(args.warmup):
                run()
        for round_no in range(args.rounds):
            block = args.count // args.rounds + (1 if round_no < args.count % args.rounds else 0)
            for kind, run in kinds.items():
                gc.collect()
                gc.disable()
                try:
                    samples[kind] += [run() for _ in range(block)]
                finally:
                    gc.enable()
        kept.logout()

    salt = os.urandom(16)
    pbkdf2 = []
    for _ in range(max(5, args.count // 10)):
        start = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, args.iterations)
        pbkdf2.append(time.perf_counter() - start)

    results = {key: summary(values) for key, values in samples.items()}
    results["pbkdf2"] = summary(pbkdf2)
    ratio = results["b"]["median"] / results["a"]["median"]
    labels = {
        "noop": "    NOOP round trip on the same TLS connection (the floor of a)",
        "a": "(a) UNAUTHENTICATE + AUTHENTICATE REMEMBERME <IR>, pipelined, same TLS connection",
        "b": f"(b) new TCP + {'TLS' if args.implicit_tls else 'STARTTLS'} + AUTHENTICATE SCRAM-SHA-256 "
             "(client PBKDF2 included)",
        "c": f"(c) new TCP + {'TLS' if args.implicit_tls else 'STARTTLS'} + AUTHENTICATE REMEMBERME (reference)",
        "pbkdf2": f"    client PBKDF2-HMAC-SHA-256 alone, {args.iterations} iterations (part of b)",
    }
    if args.json:
        print(json.dumps({
            "benchmark": "imap-reauth", "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "server": args.server, "tls_mode": tls_mode, "tls_version": tls_version,
            "scram_iterations": args.iterations, "count": args.count, "warmup": args.warmup, "rounds": args.rounds,
            "results_ms": results, "labels": labels, "ratio_b_over_a": ratio, "goal": GOAL,
            "goal_met": ratio >= GOAL,
        }, indent=2))
        return
    where = "a saslkit serve imap subprocess" if args.server == "subprocess" else "an in-process ImapServer thread"
    print(f"IMAP re-authentication against {where} on loopback ({tls_mode}, {tls_version})")
    print(f"user {USER}: SCRAM-SHA-256 credential with {args.iterations} iterations"
          f"{' (the saslkit default)' if args.iterations == DEFAULT_ITERATIONS else ''}; "
          f"{args.count} timed samples of each kind after {args.warmup} warm-up, in {args.rounds} interleaved rounds")
    print()
    width = max(len(label) for label in labels.values())
    print(f"{'wall time per re-authentication, ms':<{width}}  {'median':>8} {'p10':>8} {'p90':>8}")
    for key, label in labels.items():
        r = results[key]
        print(f"{label:<{width}}  {r['median']:8.3f} {r['p10']:8.3f} {r['p90']:8.3f}")
    print()
    print(f"ratio (b)/(a) of the medians: {ratio:.1f}x  (goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
