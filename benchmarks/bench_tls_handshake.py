"""TLS 1.3 handshakes per second: saslkit's pyOpenSSL memory-BIO layer against the stdlib's ``ssl``, same run.

Two ``saslkit serve imap --implicit-tls`` processes run on loopback, on the
same certificate (ECDSA P-256, made by ``saslkit serve``) and database, one
with ``--tls-library pyopenssl`` (``saslkit.net.tls``: tls-exporter) and one
with ``--tls-library ssl`` (asyncio's ``loop.start_tls``).  This process is
the load: asyncio clients on the stdlib's ``ssl`` (TLS 1.3, the certificate
verified), each doing connect, handshake, read the greeting (so the server
finished its side), close; ``--concurrency`` at once.

For each layer and round: handshakes per second (wall clock) and the server's
CPU time per handshake (``/proc/PID/task/*/schedstat``, all threads), which
is what the layer costs and is less disturbed by other load on the machine.
The layers alternate round by round; the table shows medians over the rounds
and the ratio pyOpenSSL/stdlib of the CPU per handshake (above 1: slower).

    python benchmarks/bench_tls_handshake.py [--quick] [--rounds N] [--handshakes M] [--json]

Makes no assertion about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import cpu_seconds, wait_ready

_ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("pyopenssl", "ssl")
LABELS = {"pyopenssl": "pyOpenSSL memory BIOs (saslkit.net.tls)", "ssl": "stdlib ssl (loop.start_tls)"}
READY = re.compile(r"saslkit imap listening on (\S+):(\d+)")


@dataclass
class Server:
    layer: str
    proc: subprocess.Popen[str]
    port: int


@contextlib.contextmanager
def start_servers(directory: Path) -> Iterator[dict[str, Server]]:
    env = {**os.environ, "SASLKIT_DB": str(directory / "users.db"), "SASLKIT_KEYS": str(directory / "k.keys"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("SASLKIT_STORE", None)
    subprocess.run([sys.executable, "-m", "saslkit", "user", "add", "alice", "--iterations", "4096"],
                   input="pencil\n", text=True, env=env, capture_output=True, check=True)
    servers: dict[str, Server] = {}
    try:
        for layer in LAYERS:
            proc = subprocess.Popen(
                [sys.executable, "-m", "saslkit", "serve", "imap", "--listen", "127.0.0.1:0", "--implicit-tls",
                 "--tls-library", layer, "--max-connections-per-ip", "1000", "--auth-penalty", "off"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env)
            m = wait_ready(proc, READY, f"saslkit serve imap --tls-library {layer}")
            servers[layer] = Server(layer, proc, int(m.group(2)))
        yield servers
    finally:
        for server in servers.values():
            server.proc.terminate()
            server.proc.wait(timeout=20)


async def handshake(port: int, context: ssl.SSLContext) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    greeting = await reader.readline()
    if not greeting.startswith(b"* OK"):
        raise RuntimeError(f"unexpected greeting {greeting!r}")
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def handshakes(port: int, count: int, concurrency: int, context: ssl.SSLContext) -> None:
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await handshake(port, context)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure(server: Server, count: int, concurrency: int, context: ssl.SSLContext) -> tuple[float, float]:
    """(handshakes per second, server CPU microseconds per handshake)."""
    cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    asyncio.run(handshakes(server.port, count, concurrency, context))
    wall, cpu = time.perf_counter() - t0, cpu_seconds(server.proc.pid) - cpu0
    return count / wall, cpu / count * 1e6


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, start_servers(Path(tmp)) as servers:
        context = ssl.create_default_context(cafile=str(Path(tmp) / "saslkit-tls.crt"))
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
        for server in servers.values():  # warm up: imports, first connections
            measure(server, max(20, args.handshakes // 10), args.concurrency, context)
        rounds: dict[str, list[tuple[float, float]]] = {layer: [] for layer in LAYERS}
        for n in range(args.rounds):
            order = LAYERS if n % 2 == 0 else LAYERS[::-1]
            for layer in order:
                rounds[layer].append(measure(servers[layer], args.handshakes, args.concurrency, context))
    result: dict[str, Any] = {"rounds": args.rounds, "handshakes": args.handshakes, "concurrency": args.concurrency,
                              "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION, "layers": {}}
    for layer in LAYERS:
        rates, cpus = [r for r, _ in rounds[layer]], [c for _, c in rounds[layer]]
        result["layers"][layer] = {"handshakes_per_s": statistics.median(rates),
                                   "server_cpu_us": statistics.median(cpus), "cpu_us_rounds": cpus}
    layers = result["layers"]
    result["cpu_ratio"] = layers["pyopenssl"]["server_cpu_us"] / layers["ssl"]["server_cpu_us"]
    result["rate_ratio"] = layers["ssl"]["handshakes_per_s"] / layers["pyopenssl"]["handshakes_per_s"]
    return result


def print_table(report: dict[str, Any]) -> None:
    print(f"TLS 1.3 handshakes, saslkit serve imap --implicit-tls; {report['rounds']} rounds x "
          f"{report['handshakes']} handshakes, {report['concurrency']} at once ({report['openssl']})")
    print(f"{'layer':42} {'handshakes/s':>13} {'server CPU us/handshake':>24}")
    for layer in LAYERS:
        row = report["layers"][layer]
        print(f"{LABELS[layer]:42} {row['handshakes_per_s']:13.0f} {row['server_cpu_us']:24.0f}")
    print(f"pyOpenSSL / stdlib, server CPU per handshake: {report['cpu_ratio']:.2f}x "
          f"(wall-clock time per handshake: {report['rate_ratio']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (a smoke run, a few seconds)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--handshakes", type=int, default=600, help="handshakes per layer and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.handshakes = 3, 60
    report = run_benchmark(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
