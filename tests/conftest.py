"""Shared fixtures: a real redis-server on a free loopback port (never a mock).

Without ``redis-server`` on PATH the Redis tests skip on a developer's
machine but fail under CI (``CI`` set): CI installs it and must run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    """A loopback port nothing listens on (also what an 'unreachable Redis' test dials)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the Redis tests")
        pytest.skip(message)
    return exe


class RedisServer:
    """One private redis-server process: no persistence, loopback only."""

    def __init__(self, exe: str, directory: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.exe, self.directory = exe, directory
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.exe, "--save", "", "--appendonly", "no", "--port", str(self.port)]
        args += ["--bind", "127.0.0.1", "--dir", str(self.directory), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate (SIGTERM: redis exits cleanly, and saves nothing with --save '')."""
        if self.proc is not None:
            from servers import terminate

            terminate(self.proc, timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server."""
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its database flushed so each test starts empty."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers for tests that stop them; all stopped at the end."""
    exe = require_redis_server()
    servers: list[RedisServer] = []

    def start(port: int | None = None) -> RedisServer:
        servers.append(RedisServer(exe, tmp_path, port))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# PostgreSQL and Redis Cluster (the scale-out tests): defined beside, registered here.
from scale_fixtures import (  # noqa: E402, F401
    postgres_server,
    postgres_url,
    redis_cluster_nodes,
    redis_cluster_url,
    redis_sentinel,
    redis_sentinel_url,
)
