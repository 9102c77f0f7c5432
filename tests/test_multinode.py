"""Scale-out, end to end: three ``saslkit serve smtp`` and one ``saslkit serve imap`` front-ends sharing users in
PostgreSQL and tokens and penalties in a 3-master Redis Cluster (real servers on loopback, started here).

The tests run in file order on one deployment: users and tokens first, then coherence after revocation and
password change (the very first attempt on every node after the command returns is rejected: no front-end
caches credentials or token records; the time is measured and printed), shared penalties, and last the
outages (PostgreSQL stopped, then one Redis master stopped: 454 / ``NO [UNAVAILABLE]``, never a success, and
service resumes when it returns).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from conftest import require_redis_server
from scale_fixtures import PostgresServer, RedisClusterNodes, require_postgres
from servers import saslkit_run, start_serve, terminate

from saslkit.imap.client import ImapAuthError, ImapClient
from saslkit.net.client import client_tls_context
from saslkit.smtp.client import SmtpAuthError, SmtpClient

pytestmark = pytest.mark.slow

#: The penalty the front-ends run with: small, so the deliberate failures here cost little time.
PENALTY = ("0.5", "1")


class Node:
    """One ``saslkit serve smtp|imap`` front-end on a free loopback port."""

    def __init__(self, protocol: str, name: str, common: list[str], log_dir: Path) -> None:
        self.protocol, self.name = protocol, name
        self.log = log_dir / f"{name}.log"
        self.proc, m, self._log_fh = start_serve(protocol, "--listen", "127.0.0.1:0", *common, "--failure-delay", "0",
                                                 "--auth-penalty", ":".join(PENALTY), "--metrics", "127.0.0.1:0",
                                                 log=self.log)
        self.port = int(m.group(2))

    def penalty_delays(self) -> tuple[float, float]:
        """From this node's ``/metrics``: how many replies the auth penalty delayed, and their delays' sum (s)."""
        found = re.search(r"metrics on (http://\S+)", self.log.read_text())
        assert found, self.log.read_text()
        with urllib.request.urlopen(found.group(1), timeout=10) as page:  # noqa: S310 - our loopback endpoint
            text = page.read().decode()
        values = {}
        for kind in ("count", "sum"):
            m = re.search(rf'^saslkit_auth_penalty_delay_seconds_{kind}{{protocol="{self.protocol}"}} (\S+)$', text,
                          re.MULTILINE)
            values[kind] = float(m.group(1)) if m else 0.0
        return values["count"], values["sum"]

    def stop(self) -> None:
        terminate(self.proc)
        self._log_fh.close()


@dataclass
class Attempt:
    node: str
    ok: bool
    temporary: bool
    reply: str
    started: float
    finished: float


@dataclass
class Deployment:
    postgres: PostgresServer
    cluster: RedisClusterNodes
    common: list[str]
    nodes: list[Node]
    cafile: str

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        result = saslkit_run(*args, *self.common, stdin=stdin)
        return result

    def login(self, node: Node, mech: str, user: str, secret: str) -> Attempt:
        """One AUTH / AUTHENTICATE on ``node``: success, rejection, or temporary failure (454 / [UNAVAILABLE])."""
        context = client_tls_context(cafile=self.cafile)
        started = time.monotonic()
        if node.protocol == "smtp":
            with SmtpClient("127.0.0.1", node.port, ssl_context=context, timeout=60) as smtp:
                smtp.connect("starttls")
                try:
                    smtp.authenticate(mech, user, secret)
                    ok, temporary, reply = True, False, "235"
                except SmtpAuthError as exc:
                    code = getattr(exc.reply, "code", None)
                    ok, temporary, reply = False, code == 454, str(exc.reply)
                smtp.quit()
        else:
            with ImapClient("127.0.0.1", node.port, ssl_context=context, timeout=60) as imap:
                imap.connect("starttls")
                try:
                    imap.authenticate(mech, user, secret)
                    ok, temporary, reply = True, False, "OK"
                except ImapAuthError as exc:
                    ok, temporary, reply = False, "[UNAVAILABLE]" in str(exc.reply), str(exc.reply)
                imap.logout()
        return Attempt(node.name, ok, temporary, reply, started, time.monotonic())

    def everywhere(self, mech: str, user: str, secret: str) -> list[Attempt]:
        """One attempt on every node at once (threads)."""
        results: list[Attempt | None] = [None] * len(self.nodes)

        def run(i: int) -> None:
            results[i] = self.login(self.nodes[i], mech, user, secret)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(self.nodes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def mint(self, node: Node, user: str, password: str) -> str:
        """SCRAM-SHA-256 login on ``node``, then REMEMBERME RANDOM: the token it hands out."""
        with SmtpClient("127.0.0.1", node.port, ssl_context=client_tls_context(cafile=self.cafile)) as smtp:
            smtp.connect("starttls")
            smtp.authenticate("SCRAM-SHA-256", user, password)
            token = smtp.remember("RANDOM")
            smtp.quit()
        return token


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    bindir = require_postgres()
    exe = require_redis_server()
    directory = tmp_path_factory.mktemp("multinode")
    postgres = PostgresServer(bindir)
    # Append-only files: a stopped master comes back with its keys (as a failed-over replica would have them).
    cluster = RedisClusterNodes(exe, directory, persist=True)
    keys = directory / "keys.json"
    common = ["--db", postgres.url, "--store", cluster.url, "--keys", str(keys)]
    serve = [*common, "--penalty-store", cluster.url]
    nodes: list[Node] = []
    try:
        assert saslkit_run("keys", "init", *common).returncode == 0
        for i in range(3):  # one after another: the first writes the shared self-signed certificate
            nodes.append(Node("smtp", f"smtp{i + 1}", serve, directory))
        nodes.append(Node("imap", "imap1", serve, directory))
        yield Deployment(postgres, cluster, common, nodes, str(directory / "saslkit-tls.crt"))
    finally:
        for node in nodes:
            node.stop()
        cluster.stop()
        postgres.remove()


def test_user_added_once_logs_in_everywhere(deployment: Deployment) -> None:
    result = deployment.cli("user", "add", "alice", stdin="pencil\n")
    assert result.returncode == 0, result.stderr
    for mech in ("SCRAM-SHA-256", "PLAIN"):
        attempts = deployment.everywhere(mech, "alice", "pencil")
        assert [a.ok for a in attempts] == [True] * 4, attempts
    assert not any(a.ok for a in deployment.everywhere("SCRAM-SHA-256", "alice", "wrong"))
    deployment.login(deployment.nodes[0], "SCRAM-SHA-256", "alice", "pencil")  # resets the penalty counts


def test_concurrent_adds_of_one_name_have_one_winner(deployment: Deployment) -> None:
    results: list[int] = []

    def add(password: str) -> None:
        results.append(deployment.cli("user", "add", "bob", stdin=password + "\n").returncode)

    threads = [threading.Thread(target=add, args=(f"pw{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 1, 1]


def test_token_minted_on_one_works_on_all(deployment: Deployment) -> None:
    token = deployment.mint(deployment.nodes[0], "alice", "pencil")
    attempts = deployment.everywhere("REMEMBERME", "alice", token)
    assert [a.ok for a in attempts] == [True] * 4, attempts


def _report(what: str, attempts: list[Attempt], t0: float) -> float:
    """Print when each node's first attempt after the command started and when its rejection arrived.

    Every attempt is rejected (asserted by the caller), so a node is coherent by the time its attempt
    started plus the attempt's own processing; the reply may then be held by the (shared) auth penalty,
    which the failures of the other nodes' concurrent attempts raise.
    """
    started = max(a.started - t0 for a in attempts)
    worst = max(a.finished - t0 for a in attempts)
    detail = ", ".join(f"{a.node} {a.started - t0:.3f}->{a.finished - t0:.3f}s" for a in attempts)
    print(f"\ncoherence: {what}: the first attempt on every node (started within {started:.3f} s of the command "
          f"returning) was rejected; last rejection received {worst:.3f} s after, penalty holds included "
          f"({detail})")
    return worst


def test_revocation_on_any_node_rejects_everywhere_at_once(deployment: Deployment) -> None:
    """``saslkit token revoke``: the very first attempt on every node after it returns is rejected."""
    token = deployment.mint(deployment.nodes[1], "alice", "pencil")
    assert all(a.ok for a in deployment.everywhere("REMEMBERME", "alice", token))
    token_id = token.split(".")[1]
    result = deployment.cli("token", "revoke", token_id)
    t0 = time.monotonic()
    assert result.returncode == 0, result.stderr
    attempts = deployment.everywhere("REMEMBERME", "alice", token)
    assert [(a.ok, a.temporary) for a in attempts] == [(False, False)] * 4, attempts
    _report("token revoke", attempts, t0)
    deployment.login(deployment.nodes[0], "SCRAM-SHA-256", "alice", "pencil")  # resets the penalty counts


def test_password_change_rejects_old_password_and_tokens_everywhere(deployment: Deployment) -> None:
    token = deployment.mint(deployment.nodes[2], "alice", "pencil")
    result = deployment.cli("user", "passwd", "alice", stdin="crayon\n")
    t0 = time.monotonic()
    assert result.returncode == 0, result.stderr
    old_password = deployment.everywhere("SCRAM-SHA-256", "alice", "pencil")
    old_token = deployment.everywhere("REMEMBERME", "alice", token)
    assert [(a.ok, a.temporary) for a in old_password + old_token] == [(False, False)] * 8
    _report("user passwd (old password, then old token)", old_password + old_token, t0)
    assert all(a.ok for a in deployment.everywhere("SCRAM-SHA-256", "alice", "crayon"))


def test_failures_on_node_a_delay_node_b(deployment: Deployment) -> None:
    """Three failures on smtp1 from 127.0.0.1; the next attempt on smtp2 waits out the shared penalty (node B's
    own metrics say which delay its reply got; no clock is asserted on)."""
    a, b = deployment.nodes[0], deployment.nodes[1]
    deployment.login(a, "SCRAM-SHA-256", "alice", "crayon")  # counts reset
    quick = deployment.login(b, "SCRAM-SHA-256", "alice", "crayon")
    for _ in range(3):
        assert not deployment.login(a, "SCRAM-SHA-256", "alice", "wrong").ok
    probe = redis.RedisCluster(host="127.0.0.1", port=deployment.cluster.nodes[0].port, decode_responses=True)
    assert probe.get("saslkit:{penalty:ip:127.0.0.1}") == "3"  # the count every node reads
    assert probe.get("saslkit:{penalty:user:alice}") == "3"
    assert 0 < probe.pttl("saslkit:{penalty:ip:127.0.0.1}") <= 3600_000  # bounded lifetime
    probe.close()
    count_before, sum_before = b.penalty_delays()
    delayed = deployment.login(b, "SCRAM-SHA-256", "alice", "crayon")
    assert delayed.ok
    penalty = min(float(PENALTY[0]) * 4, float(PENALTY[1]))
    count_after, sum_after = b.penalty_delays()
    assert count_after == count_before + 1  # node B delayed exactly this reply, on node A's failures
    assert sum_after - sum_before == pytest.approx(penalty)
    print(f"\npenalty: node B replied in {quick.finished - quick.started:.3f} s unpenalized, "
          f"{delayed.finished - delayed.started:.3f} s after 3 failures on node A (penalty {penalty} s)")


def _until_ok(deployment: Deployment, mech: str, user: str, secret: str, timeout: float = 60) -> float:
    """Retry on every node until all succeed (service resumed); how long that took.  Never a rejection."""
    started = time.monotonic()
    while True:
        attempts = deployment.everywhere(mech, user, secret)
        assert not any(not a.ok and not a.temporary for a in attempts), attempts
        if all(a.ok for a in attempts):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, attempts
        time.sleep(0.2)


def test_postgres_down_is_temporary_everywhere_and_service_resumes(deployment: Deployment) -> None:
    token = deployment.mint(deployment.nodes[0], "alice", "crayon")
    deployment.postgres.stop()
    try:
        for mech, secret in (("SCRAM-SHA-256", "crayon"), ("PLAIN", "crayon"), ("REMEMBERME", token),
                             ("SCRAM-SHA-256", "wrong")):
            attempts = deployment.everywhere(mech, "alice", secret)
            assert [(a.ok, a.temporary) for a in attempts] == [(False, True)] * 4, (mech, attempts)
            assert all(("454" in a.reply) if a.node.startswith("smtp") else ("[UNAVAILABLE]" in a.reply)
                       for a in attempts), attempts
    finally:
        deployment.postgres.start()
    took = _until_ok(deployment, "SCRAM-SHA-256", "alice", "crayon")
    assert all(a.ok for a in deployment.everywhere("REMEMBERME", "alice", token))
    print(f"\noutage: PostgreSQL back, every node logging in again after {took:.2f} s")


def _master_of(cluster: RedisClusterNodes, key: str) -> int:
    """Index of the node serving ``key``'s slot."""
    with redis.Redis(port=cluster.nodes[0].port, decode_responses=True) as client:
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(master[1])
                return next(i for i, n in enumerate(cluster.nodes) if n.port == port)
    raise AssertionError(f"no master for slot of {key}")


def test_redis_master_down_is_temporary_and_service_resumes(deployment: Deployment) -> None:
    token = deployment.mint(deployment.nodes[0], "alice", "crayon")
    revoked = deployment.mint(deployment.nodes[0], "alice", "crayon")
    assert deployment.cli("token", "revoke", revoked.split(".")[1]).returncode == 0
    victim = deployment.cluster.nodes[_master_of(deployment.cluster, "saslkit:{u:alice}:tokens")]
    victim.stop()
    try:
        for secret in (token, revoked):
            attempts = deployment.everywhere("REMEMBERME", "alice", secret)
            assert [(a.ok, a.temporary) for a in attempts] == [(False, True)] * 4, attempts
            assert all(("454" in a.reply) if a.node.startswith("smtp") else ("[UNAVAILABLE]" in a.reply)
                       for a in attempts), attempts
        # Passwords (users in PostgreSQL) still work: the penalty counts fall back to each process meanwhile.
        assert all(a.ok for a in deployment.everywhere("SCRAM-SHA-256", "alice", "crayon"))
    finally:
        victim.start()
    deployment.cluster.wait_ok()
    took = _until_ok(deployment, "REMEMBERME", "alice", token)
    assert not any(a.ok for a in deployment.everywhere("REMEMBERME", "alice", revoked))
    print(f"\noutage: Redis master back, tokens verified on every node again after {took:.2f} s")
