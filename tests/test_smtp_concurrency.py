"""Liveness of the reference SMTP server while argon2 logins run (issue 4, "Must show").

The in-process :class:`saslkit.smtp.server.SmtpServer` runs on its own asyncio
loop in a thread, as it would in ``saslkit serve smtp``.  Sixteen users have
argon2id hashes with argon2-cffi's default (RFC 9106 low-memory) parameters,
about 50 ms of CPU each.  One connection sends NOOPs in a loop while sixteen
other connections send ``AUTH PLAIN`` at the same moment.  The logins must all
succeed, the NOOPs must keep being answered while they are in flight, and the
password checks must have run in the server's worker pool, not on its loop.

No clock is asserted on: liveness shows as NOOPs answered while the logins
are in flight (a server that hashed on its event loop would hold every NOOP
behind the queued logins) and as every password check having run in the
worker pool.  The NOOP p50/p99 are printed (``pytest -s``); latency figures
live in ``benchmarks/bench_noop_latency.py``.

PLAIN runs without TLS here (``allow_plaintext_auth``, loopback only) so that
the figures measure the password checks, not TLS handshakes.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saslkit.credentials import UserRecord, make_user
from saslkit.keys import KeyRing
from saslkit.smtp.server import SmtpServer
from saslkit.smtp.session import SmtpConfig
from saslkit.stores.sqlite import SQLiteUserStore

LOGINS = 16
PASSWORD = "pencil"
MIN_NOOPS_DURING_LOGINS = 10
TIMEOUT = 120.0


class RecordingUserStore:
    """The SQLite user store, noting which thread each lookup (and so each argon2 check) ran in."""

    def __init__(self, inner: SQLiteUserStore) -> None:
        self.inner = inner
        self.threads: list[str] = []

    @property
    def default_iterations(self) -> int:
        return self.inner.default_iterations

    def get_user(self, username: str) -> UserRecord | None:
        self.threads.append(threading.current_thread().name)
        return self.inner.get_user(username)


class ServerThread:
    """An SmtpServer on its own event loop in a thread, like the CLI's."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self.ready = threading.Event()
        self.address: tuple[str, int] = ("", 0)
        self.loop_thread_name = ""
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="smtp-server-loop", daemon=True)
        self._thread.start()
        assert self.ready.wait(TIMEOUT), "server did not start"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.loop_thread_name = threading.current_thread().name
        self.address = await self.server.start("127.0.0.1", 0)
        self.ready.set()
        await self.server.serve_until(self._stop)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[ServerThread, RecordingUserStore]]:
    sqlite = SQLiteUserStore(tmp_path / "users.db")
    for i in range(LOGINS):
        sqlite.put_user(make_user(f"user{i:02d}", PASSWORD, iterations=4096))  # argon2id, default parameters
    users = RecordingUserStore(sqlite)
    ring = KeyRing.open(tmp_path / "k.keys", quiet=True)
    config = SmtpConfig(hostname="localhost", allow_plaintext_auth=True, failure_delay=0)
    thread = ServerThread(SmtpServer(config, users, ring.server_secret))
    yield thread, users
    thread.close()
    sqlite.close()


async def read_reply(reader: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), TIMEOUT)).decode().rstrip("\r\n")
        assert line, "connection closed"
        lines.append(line)
        if line[3:4] != "-":
            return lines


async def connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    assert (await read_reply(reader))[0].startswith("220 ")
    writer.write(b"EHLO load.example\r\n")
    ehlo = await read_reply(reader)
    assert any(x[4:].startswith("AUTH ") and "PLAIN" in x.split() for x in ehlo)
    return reader, writer


async def login(host: str, port: int, user: str, start: asyncio.Event) -> tuple[str, float]:
    reader, writer = await connect(host, port)
    await start.wait()
    t0 = time.perf_counter()
    writer.write(b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{PASSWORD}".encode()) + b"\r\n")
    (reply,) = await read_reply(reader)
    elapsed = time.perf_counter() - t0
    writer.write(b"QUIT\r\n")
    await read_reply(reader)
    writer.close()
    await writer.wait_closed()
    return reply, elapsed


async def scenario(host: str, port: int) -> dict[str, object]:
    noop_reader, noop_writer = await connect(host, port)
    start = asyncio.Event()
    tasks = [asyncio.create_task(login(host, port, f"user{i:02d}", start)) for i in range(LOGINS)]
    await asyncio.sleep(0.2)  # every login connection has said EHLO and waits for the signal
    window: list[float] = []  # NOOP round trips that overlapped the logins
    in_flight = True

    async def noops() -> None:
        while in_flight:
            t0 = time.perf_counter()
            noop_writer.write(b"NOOP\r\n")
            (reply,) = await read_reply(noop_reader)
            assert reply.startswith("250 2.0.0"), reply
            if in_flight:
                window.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    start.set()
    noop_task = asyncio.create_task(noops())
    results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    login_wall = time.perf_counter() - t0
    in_flight = False
    await asyncio.wait_for(noop_task, TIMEOUT)
    noop_writer.write(b"QUIT\r\n")
    await read_reply(noop_reader)
    noop_writer.close()
    await noop_writer.wait_closed()
    return {"results": results, "window": window, "login_wall": login_wall}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_noops_stay_live_during_16_argon2_logins(smtp_server: tuple[ServerThread, RecordingUserStore]) -> None:
    thread, users = smtp_server
    host, port = thread.address
    outcome = asyncio.run(scenario(host, port))
    results: list[tuple[str, float]] = outcome["results"]  # type: ignore[assignment]
    window: list[float] = outcome["window"]  # type: ignore[assignment]
    login_wall: float = outcome["login_wall"]  # type: ignore[assignment]

    assert [reply[:10] for reply, _ in results] == ["235 2.7.0 "] * LOGINS
    assert len(window) >= MIN_NOOPS_DURING_LOGINS, f"only {len(window)} NOOPs answered during the logins"
    p50, p99, worst = percentile(window, 0.50), percentile(window, 0.99), max(window)
    login_times = sorted(t for _, t in results)
    print(f"\n{LOGINS} concurrent argon2 PLAIN logins in {login_wall * 1000:.0f} ms "
          f"(each {login_times[0] * 1000:.0f}-{login_times[-1] * 1000:.0f} ms, "
          f"median {statistics.median(login_times) * 1000:.0f} ms, {thread.server.workers} workers); "
          f"NOOP round trip during the logins: n={len(window)} p50={p50 * 1000:.2f} ms "
          f"p99={p99 * 1000:.2f} ms max={worst * 1000:.2f} ms")
    # Every password check ran in the worker pool, none on the event loop's thread.
    assert len(users.threads) == LOGINS
    assert all(name.startswith("saslkit-smtp") for name in users.threads), users.threads
    assert thread.loop_thread_name not in users.threads


def test_workers_run_nicer_than_the_event_loop() -> None:
    """Pool threads lower their own priority (argon2's lane threads inherit it), the loop's thread keeps its own."""
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from saslkit.net.server import WORKER_NICENESS, yield_to_event_loop

    if not hasattr(os, "setpriority"):
        pytest.skip("no per-thread priorities here")
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with ThreadPoolExecutor(1, initializer=yield_to_event_loop) as pool:
        worker = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert worker == min(own + WORKER_NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
