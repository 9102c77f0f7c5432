"""Server CPU per SMTP login and per NOOP: saslkit's servers against aiosmtpd driving scramp.

Three servers run as separate processes, each pinned to one core, on loopback,
without TLS, all holding the same user's SCRAM-SHA-256 stored keys in the same
SQLite database:

* ``serve``: ``saslkit serve smtp --allow-plaintext-auth --failure-delay 0 --auth-penalty off``;
* ``adapter``: aiosmtpd's ``SMTP`` server class replaced by saslkit's
  :class:`~saslkit.smtp.aiosmtpd.SaslkitSMTP` (``auth_penalty=None``, failure delay 0);
* ``baseline``: plain aiosmtpd with a ``SCRAM-SHA-256`` handler driven by
  ``scramp`` (``ScramMechanism.make_server`` with the stored keys read from the
  same store on each login).

The load generator is this process, pinned to the other core: asyncio clients
doing connect+EHLO+AUTH SCRAM-SHA-256+QUIT (one at a time and 16 at once) and
NOOPs on open connections (one connection, then 16).  Server CPU is read from
``/proc/PID/task/*/schedstat`` (time on CPU, summed over the server's threads)
before and after each measurement.  The servers are interleaved round by round
and the table shows medians of the rounds and the ratios saslkit/baseline.

    python benchmarks/bench_smtp_server.py [--quick] [--rounds N] [--json]

Makes no assertion about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import hmac
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import cpu_seconds, pin, wait_ready

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

USER = "alice"
PASSWORD = "correct horse battery staple"
MECHANISM = "SCRAM-SHA-256"
SERVERS = ("serve", "adapter", "baseline")
LABELS = {
    "serve": "saslkit serve smtp",
    "adapter": "saslkit aiosmtpd adapter",
    "baseline": "aiosmtpd + scramp",
}
TARGETS = {("login16", "serve"): 0.6, ("login16", "adapter"): 0.8,
           ("noop1", "serve"): 0.8, ("noop16", "serve"): 0.8}
READY = re.compile(r"(?:saslkit smtp|bench \w+) listening on (\S+):(\d+)")


# --- the servers under test (run as ``--serve KIND`` subprocesses) -------------------------------------------


def _serve_aiosmtpd(kind: str, db: str) -> None:
    """The adapter or the baseline on one asyncio loop in this process until SIGTERM."""
    import signal

    from aiosmtpd.smtp import SMTP

    from saslkit.keys import KeyRing, default_keys_path
    from saslkit.stores import open_user_store

    users = open_user_store(db)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 OK"

    if kind == "adapter":
        from saslkit.smtp.aiosmtpd import SaslkitAuth, SaslkitSMTP

        ring = KeyRing.open(default_keys_path(Path(db)), quiet=True)
        auth = SaslkitAuth(users, ring.server_secret, allow_plaintext_auth=True, failure_delay=0.0,
                           auth_penalty=None)

        def factory() -> SMTP:
            return SaslkitSMTP(Handler(), saslkit=auth, hostname="localhost")
    else:
        handler = _baseline_handler(users)

        def factory() -> SMTP:
            return SMTP(handler, hostname="localhost", auth_require_tls=False,
                        auth_exclude_mechanism=["LOGIN", "PLAIN"])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await loop.create_server(factory, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        print(f"bench {kind} listening on {host}:{port}", flush=True)
        await stop.wait()
        server.close()

    asyncio.run(main())


def _baseline_handler(users: Any) -> Any:
    """An aiosmtpd handler with AUTH SCRAM-SHA-256 done by scramp against the stored keys."""
    from aiosmtpd.smtp import MISSING, AuthResult, auth_mechanism
    from scramp import ScramException, ScramMechanism

    mechanism = ScramMechanism(MECHANISM)

    def stored_keys(username: str) -> tuple[bytes, bytes, bytes, int]:
        record = users.get_user(username)
        cred = record.scram.get("SHA-256") if record is not None else None
        if cred is None:
            raise ScramException("unknown user")
        return cred.salt, cred.stored_key, cred.server_key, cred.iterations

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 OK"

        @auth_mechanism(MECHANISM)
        async def auth_SCRAM_SHA_256(self, server: Any, args: list[str]) -> AuthResult:
            if len(args) > 1:
                try:
                    first = base64.b64decode(args[1], validate=True)
                except ValueError:
                    return AuthResult(success=False)
            else:
                answer = await server.challenge_auth("")
                if answer is MISSING:
                    return AuthResult(success=False, handled=True)
                first = answer
            names: list[str] = []

            def lookup(username: str) -> tuple[bytes, bytes, bytes, int]:
                names.append(username)
                return stored_keys(username)

            scram = mechanism.make_server(lookup)
            try:
                scram.set_client_first(first.decode())
                final = await server.challenge_auth(scram.get_server_first())
                if final is MISSING:
                    return AuthResult(success=False, handled=True)
                scram.set_client_final(final.decode())
                done = await server.challenge_auth(scram.get_server_final())
            except (ScramException, UnicodeDecodeError):
                return AuthResult(success=False)
            if done is MISSING:
                return AuthResult(success=False, handled=True)
            return AuthResult(success=True, auth_data=names[0])

    return Handler()


# --- the load generator --------------------------------------------------------------------------------------


class SmtpClientProtocol(asyncio.Protocol):
    """A lean SMTP client: send a line, wait for the complete (possibly multi-line) reply."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def _check(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.rfind(b"\r\n")
        if end < 0:
            return
        start = self.buffer.rfind(b"\r\n", 0, end) + 2 if self.buffer.count(b"\r\n") > 1 else 0
        last = self.buffer[start:end]
        if len(last) >= 4 and last[3:4] == b" ":
            reply = bytes(self.buffer[: end + 2])
            del self.buffer[: end + 2]
            self.waiter.set_result(reply)

    async def reply(self) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        self._check()
        return await self.waiter

    async def command(self, line: bytes) -> bytes:
        assert self.transport is not None
        self.transport.write(line + b"\r\n")
        return await self.reply()


@dataclass
class ScramKeys:
    """The client's SCRAM keys per (salt, iterations), derived once: the client's PBKDF2 is not measured."""

    cache: dict[tuple[str, int], tuple[bytes, bytes, bytes]] = field(default_factory=dict)

    def keys(self, salt_b64: str, iterations: int) -> tuple[bytes, bytes, bytes]:
        got = self.cache.get((salt_b64, iterations))
        if got is None:
            salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(salt_b64), iterations)
            client_key = hmac.digest(salted, b"Client Key", "sha256")
            got = (client_key, hashlib.sha256(client_key).digest(), hmac.digest(salted, b"Server Key", "sha256"))
            self.cache[(salt_b64, iterations)] = got
        return got


def _expect(reply: bytes, code: bytes) -> bytes:
    if not reply.startswith(code):
        raise RuntimeError(f"expected {code.decode()}, got {reply[:80]!r}")
    return reply


def _challenge(reply: bytes) -> str:
    return base64.b64decode(_expect(reply, b"334 ")[4:].strip()).decode()


async def _connect(port: int) -> SmtpClientProtocol:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(SmtpClientProtocol, "127.0.0.1", port)
    _expect(await proto.reply(), b"220")
    _expect(await proto.command(b"EHLO bench.example"), b"250")
    return proto


async def _close(proto: SmtpClientProtocol) -> None:
    _expect(await proto.command(b"QUIT"), b"221")
    assert proto.transport is not None
    proto.transport.close()
    await proto.lost


async def login(port: int, keys: ScramKeys) -> None:
    """connect, EHLO, AUTH SCRAM-SHA-256 with an initial response, the empty answer to ``v=``, QUIT."""
    proto = await _connect(port)
    nonce = secrets.token_urlsafe(18)
    bare = f"n={USER},r={nonce}"
    server_first = _challenge(await proto.command(
        f"AUTH {MECHANISM} ".encode() + base64.b64encode(f"n,,{bare}".encode())))
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    if not attrs["r"].startswith(nonce):
        raise RuntimeError("server nonce does not extend ours")
    client_key, stored_key, server_key = keys.keys(attrs["s"], int(attrs["i"]))
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = (int.from_bytes(client_key) ^ int.from_bytes(signature)).to_bytes(len(client_key))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}"
    server_final = _challenge(await proto.command(base64.b64encode(final.encode())))
    expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    if server_final != f"v={expected}":
        raise RuntimeError("bad server signature")
    _expect(await proto.command(b""), b"235")
    await _close(proto)


async def logins(port: int, count: int, concurrency: int, keys: ScramKeys) -> None:
    remaining = [count]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await login(port, keys)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def noops(port: int, count: int, concurrency: int) -> None:
    async def worker(n: int) -> None:
        proto = await _connect(port)
        for _ in range(n):
            _expect(await proto.command(b"NOOP"), b"250")
        await _close(proto)

    per, extra = divmod(count, concurrency)
    await asyncio.gather(*(worker(per + (i < extra)) for i in range(concurrency)))


# --- measurement ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[str]
    port: int


@contextlib.contextmanager
def start_servers(db: Path, core: int | None) -> Iterator[dict[str, Server]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    commands = {
        "serve": [sys.executable, "-m", "saslkit", "serve", "smtp", "--db", str(db), "--listen", "127.0.0.1:0",
                  "--allow-plaintext-auth", "--failure-delay", "0", "--auth-penalty", "off"],
        "adapter": [sys.executable, __file__, "--serve", "adapter", "--db", str(db)],
        "baseline": [sys.executable, __file__, "--serve", "baseline", "--db", str(db)],
    }
    procs: dict[str, subprocess.Popen[str]] = {}
    servers: dict[str, Server] = {}
    try:
        for kind, cmd in commands.items():  # cwd: ``-m saslkit`` imports from the current directory first
            procs[kind] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                           stdin=subprocess.DEVNULL, text=True, env=env, cwd=_ROOT)
        for kind, proc in procs.items():
            m = wait_ready(proc, READY, f"the {LABELS[kind]} server")
            if core is not None:
                pin(proc.pid, core)
            servers[kind] = Server(kind, proc, int(m.group(2)))
        yield servers
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Workload:
    name: str
    title: str
    unit: str
    count: int
    concurrency: int

    def run(self, port: int, keys: ScramKeys) -> Any:
        if self.name.startswith("login"):
            return logins(port, self.count, self.concurrency, keys)
        return noops(port, self.count, self.concurrency)


def workloads(args: argparse.Namespace) -> list[Workload]:
    return [
        Workload("login1", "SCRAM login, sequential", "login", args.logins // 2, 1),
        Workload("login16", "SCRAM login, 16 concurrent", "login", args.logins, 16),
        Workload("noop1", "NOOP, 1 connection", "NOOP", args.noops // 2, 1),
        Workload("noop16", "NOOP, 16 connections", "NOOP", args.noops, 16),
    ]


def measure(server: Server, load: Workload, keys: ScramKeys) -> tuple[float, float]:
    """(operations per second, server CPU microseconds per operation) for one run of ``load``."""
    gc.collect()
    cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    asyncio.run(load.run(server.port, keys))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server.proc.pid) - cpu0
    return load.count / elapsed, cpu / load.count * 1e6


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from saslkit.credentials import make_user
    from saslkit.stores import open_user_store

    server_core = client_core = None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        server_core, client_core = cores[0], cores[1]
        os.sched_setaffinity(0, {client_core})
    loads = workloads(args)
    results: dict[str, dict[str, dict[str, list[float]]]] = {
        w.name: {k: {"rate": [], "cpu": []} for k in SERVERS} for w in loads}
    with tempfile.TemporaryDirectory(prefix="saslkit-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        open_user_store(str(db)).put_user(make_user(USER, PASSWORD, hashes=("SHA-256",), argon2_hash=False))
        keys = ScramKeys()
        with start_servers(db, server_core) as servers:
            for kind in SERVERS:  # warm up: imports, first store access, the client's PBKDF2
                for load in loads:
                    asyncio.run(load.run(servers[kind].port, keys) if load.concurrency == 1 else
                                Workload(load.name, "", "", 16, 16).run(servers[kind].port, keys))
            for r in range(args.rounds):
                for load in loads:
                    order = SERVERS[r % 3:] + SERVERS[: r % 3]  # rotate who goes first
                    for kind in order:
                        rate, cpu = measure(servers[kind], load, keys)
                        results[load.name][kind]["rate"].append(rate)
                        results[load.name][kind]["cpu"].append(cpu)
    return {
        "python": platform.python_version(), "rounds": args.rounds, "server_core": server_core,
        "client_core": client_core, "workloads": [vars(w) for w in loads], "results": results,
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"SMTP servers on loopback, no TLS, user {USER!r} with SCRAM-SHA-256 stored keys in SQLite; "
          f"Python {report['python']}")
    pinned = (f"servers pinned to core {report['server_core']}, clients to core {report['client_core']}"
              if report["server_core"] is not None else "one core: nothing pinned")
    print(f"{pinned}; medians of {report['rounds']} interleaved rounds (min-max of CPU in brackets)")
    print()
    header = f"{'workload':<32} {'server':<26} {'ops/s':>8} {'CPU us/op':>21} {'CPU vs baseline':>16}"
    print(header)
    print("-" * len(header))
    for load in report["workloads"]:
        rows = report["results"][load["name"]]
        base = statistics.median(rows["baseline"]["cpu"])
        for kind in SERVERS:
            cpu = rows[kind]["cpu"]
            med = statistics.median(cpu)
            spread = f"{med:7.0f} [{min(cpu):5.0f}-{max(cpu):5.0f}]"
            ratio = med / base if base else float("nan")
            target = TARGETS.get((load["name"], kind))
            note = f"{ratio:5.2f}x" + (f" (<= {target})" if target else "") if kind != "baseline" else ""
            title = load["title"] + f" x{load['count']}" if kind == SERVERS[0] else ""
            print(f"{title:<32} {LABELS[kind]:<26} {statistics.median(rows[kind]['rate']):8.0f} {spread:>21} "
                  f"{note:>16}")
    print()
    print("CPU: server process time on CPU (/proc/PID/task/*/schedstat, all threads) per operation.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 short rounds (a smoke run, ~10 s)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; --quick 3)")
    parser.add_argument("--logins", type=int, help="logins per 16-concurrent run (default 400; half sequential)")
    parser.add_argument("--noops", type=int, help="NOOPs per 16-connection run (default 4000; half on one)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--serve", choices=("adapter", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve_aiosmtpd(args.serve, args.db)
        return
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.logins = args.logins or (48 if args.quick else 400)
    args.noops = args.noops or (320 if args.quick else 4000)
    report = run_benchmark(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
