"""Fixtures for the scale-out tests: a private PostgreSQL and a 3-master Redis Cluster, real servers on loopback.

PostgreSQL: ``initdb`` into a temporary directory (owned by the ``postgres``
user when the tests run as root: the server refuses to run as root), its own
port on 127.0.0.1 and its UNIX socket in that directory.  Redis Cluster:
three ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster
create … --cluster-replicas 0``.  Missing programs skip the tests on a
developer's machine and fail them under CI (``CI`` set), as for Redis.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import RedisServer, free_port, require_redis_server


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must run these tests")
    pytest.skip(message)


def postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    """One private PostgreSQL cluster: trust authentication on loopback, no fsync (test data only)."""

    def __init__(self, bindir: Path, port: int | None = None) -> None:
        self.bindir = bindir
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="saslkit-pg-"))
        self.data = self.directory / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        # The server refuses to run as root: run it as the unprivileged user the package creates.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            shutil.chown(self.directory, self.user)
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(self.data), "-U", "saslkit", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, user=self.user, timeout=120,
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://saslkit@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.directory),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=400", "-c", "shared_buffers=32MB"]
        log = open(self.directory / "postgres.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, user=self.user)
        log.close()
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): connected clients are disconnected at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reset(self) -> None:
        """Drop every table (an empty database for the next test)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def require_postgres() -> Path:
    bindir = postgres_bindir()
    if bindir is None:
        _missing("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install 'saslkit[postgres]')")
    assert bindir is not None
    return bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL."""
    server = PostgresServer(require_postgres())
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The session server's URL, every table dropped so each test starts empty."""
    postgres_server.reset()
    return postgres_server.url


class RedisClusterNodes:
    """Three redis-server masters in cluster mode, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, exe: str, directory: Path, masters: int = 3, *, persist: bool = False) -> None:
        """``persist``: append-only files, so a stopped and restarted master comes back with its keys."""
        self.nodes: list[RedisServer] = []
        for i in range(masters):
            node_dir = directory / f"node{i}"
            node_dir.mkdir()
            self.nodes.append(RedisServer(exe, node_dir, extra=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000", "--cluster-port", str(free_port()),
                "--cluster-require-full-coverage", "yes", *(("--appendonly", "yes") if persist else ())]))
        cli = shutil.which("redis-cli") or str(Path(exe).with_name("redis-cli"))
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )
        self.wait_ok()

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if node.proc is None:
                    continue
                with redis.Redis(port=node.port, socket_timeout=1, decode_responses=True) as client:
                    try:
                        states.append(client.execute_command("CLUSTER", "INFO"))
                    except redis.RedisError:
                        states.append("")
            if all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster not ok: {states}")
            time.sleep(0.05)

    def flush(self) -> None:
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=2) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """The session's 3-master Redis Cluster."""
    cluster = RedisClusterNodes(require_redis_server(), tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_nodes: RedisClusterNodes) -> str:
    """The cluster's ``redis-cluster://`` URL, every master flushed."""
    redis_cluster_nodes.wait_ok()
    redis_cluster_nodes.flush()
    return redis_cluster_nodes.url


class RedisSentinel:
    """One ``redis-server --sentinel`` watching one master (quorum 1): enough to test ``redis-sentinel://``."""

    def __init__(self, exe: str, directory: Path, master: RedisServer, service: str = "saslkit") -> None:
        self.exe, self.directory, self.master, self.service = exe, directory, master, service
        self.port = free_port()
        config = directory / "sentinel.conf"
        config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                          f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
                          f"sentinel down-after-milliseconds {service} 1000\n")
        self.proc = subprocess.Popen([exe, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        with redis.Redis(port=self.port, socket_timeout=1, decode_responses=True) as client:
            while True:
                try:
                    if client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service):
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis sentinel did not start")
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis-sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A master and one sentinel naming it."""
    exe = require_redis_server()
    directory = tmp_path_factory.mktemp("redis-sentinel")
    master = RedisServer(exe, directory)
    sentinel = RedisSentinel(exe, directory, master)
    yield sentinel
    sentinel.stop()
    master.stop()


@pytest.fixture
def redis_sentinel_url(redis_sentinel: RedisSentinel) -> str:
    """The ``redis-sentinel://`` URL, the master flushed."""
    with redis.Redis(port=redis_sentinel.master.port) as client:
        client.flushall()
    return redis_sentinel.url
