"""NOOP latency on one connection while 16 argon2 PLAIN logins run: ``saslkit serve smtp`` and ``serve imap``.

The password check of PLAIN (argon2id) must never run on a server's event
loop: while 16 clients log in at once (SMTP ``AUTH PLAIN`` with an initial
response; IMAP ``LOGIN`` with both arguments sent as synchronizing literals,
RFC 9051 §4.3), a 17th connection sends NOOPs one after the other and this
script records each round trip.  The load is generated from this process with
asyncio (no threads), the server runs as its own process; no TLS
(``--allow-plaintext-auth``), auth penalty off, failure delay 0.

    python benchmarks/bench_noop_latency.py [--rounds N]

Prints, per protocol and round, the number of NOOPs answered during the logins
and their p50/p99/max round trip.  Makes no assertion about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import wait_ready

_ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
PASSWORD = "correct horse battery staple"
LOGINS = 16
READY_RE = re.compile(r"saslkit (?:smtp|imap) listening on (\S+):(\d+)")


def saslkit(*args: str, stdin: str = "") -> None:
    subprocess.run([sys.executable, "-m", "saslkit", *args], input=stdin, text=True, env=ENV, check=True,
                   capture_output=True)


def start_server(protocol: str, db: Path) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "saslkit", "serve", protocol, "--listen", "127.0.0.1:0", "--db", str(db),
         "--allow-plaintext-auth", "--failure-delay", "0", "--auth-penalty", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    match = wait_ready(proc, READY_RE, f"saslkit serve {protocol}")
    return proc, match.group(1), int(match.group(2))


async def smtp_reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode()
        if not line or line[3:4] != "-":
            return line


async def smtp_login(host: str, port: int, user: str, go: asyncio.Event) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    await smtp_reply(reader)
    writer.write(b"EHLO bench\r\n")
    await smtp_reply(reader)
    await go.wait()
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    writer.write(f"AUTH PLAIN {token}\r\n".encode())
    reply = await smtp_reply(reader)
    writer.close()
    return reply


async def imap_login(host: str, port: int, user: str, go: asyncio.Event) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()
    await go.wait()
    name, secret = user.encode(), PASSWORD.encode()
    writer.write(b"a LOGIN {%d}\r\n" % len(name))
    await reader.readline()  # + Ready for literal data
    writer.write(name + b" {%d}\r\n" % len(secret))
    await reader.readline()
    writer.write(secret + b"\r\n")
    while not (line := (await reader.readline()).decode()).startswith("a "):
        pass
    writer.close()
    return line


async def noop_round(protocol: str, host: str, port: int) -> list[float]:
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()
    if protocol == "smtp":
        writer.write(b"EHLO watcher\r\n")
        await smtp_reply(reader)
    go, window, running = asyncio.Event(), list[float](), True
    login = smtp_login if protocol == "smtp" else imap_login
    logins = [asyncio.create_task(login(host, port, f"user{i:02d}", go)) for i in range(LOGINS)]
    await asyncio.sleep(0.3)

    async def watch() -> None:
        while running:
            started = time.perf_counter()
            writer.write(b"NOOP\r\n" if protocol == "smtp" else b"n NOOP\r\n")
            line = await smtp_reply(reader) if protocol == "smtp" else (await reader.readline()).decode()
            assert line.startswith(("250", "n OK")), line
            if running:
                window.append(time.perf_counter() - started)

    go.set()
    watcher = asyncio.create_task(watch())
    replies = await asyncio.gather(*logins)
    running = False
    await watcher
    writer.close()
    ok = sum(r.startswith(("235", "a OK")) for r in replies)
    if ok != LOGINS:
        raise SystemExit(f"{protocol}: only {ok} of {LOGINS} logins succeeded: {replies[:2]}")
    return window


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        for i in range(LOGINS):
            saslkit("user", "add", f"user{i:02d}", "--db", str(db), stdin=PASSWORD + "\n")
        print(f"{LOGINS} concurrent argon2 PLAIN logins, one NOOP connection; {os.cpu_count()} CPUs")
        for protocol in ("smtp", "imap"):
            proc, host, port = start_server(protocol, db)
            try:
                for n in range(args.rounds):
                    window = asyncio.run(noop_round(protocol, host, port))
                    what = "AUTH PLAIN" if protocol == "smtp" else "LOGIN {literals}"
                    p50, p99 = statistics.median(window) * 1000, percentile(window, 0.99) * 1000
                    print(f"{protocol:4} {what:16} round {n + 1}: NOOPs={len(window):5} "
                          f"p50={p50:6.2f} ms p99={p99:6.2f} ms max={max(window) * 1000:6.2f} ms")
            finally:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
