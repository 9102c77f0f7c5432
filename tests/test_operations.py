"""Operations: Prometheus metrics scraped from a running ``saslkit serve smtp|imap --metrics``, JSON log
lines, store errors logged with their cause, the startup check of the stores, and the missing extra."""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from servers import ENV, ServerProcess, saslkit_run

from saslkit.stdlib import smtp_login

PASSWORD = "pencil"


class Smtp(ServerProcess):
    protocol = "smtp"
    log_prefix = "ops-smtp"


class Imap(ServerProcess):
    protocol = "imap"
    log_prefix = "ops-imap"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "users.db"
    for user in ("alice", "a b"):
        added = saslkit_run("user", "add", user, "--db", str(path), "--iterations", "4096", stdin=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
    return path


def _metrics_url(server: ServerProcess) -> str:
    found = re.search(r"saslkit: metrics on (http://\S+/metrics)", server.log.read_text())
    assert found, server.log.read_text()
    return found.group(1)


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback endpoint
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (0 if absent)."""
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if metric == name and all(have.get(k) == v for k, v in labels.items()):
            return value
    return 0.0


def _smtp_login(server: ServerProcess, user: str, password: str) -> bool:
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.check_hostname = False
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
        smtp.starttls(context=context)
        try:
            smtp_login(smtp, user, password, "SCRAM-SHA-256")
        except smtplib.SMTPAuthenticationError:
            return False
        return True


@pytest.fixture(scope="module")
def smtp_server(db: Path) -> Iterator[Smtp]:
    server = Smtp(db, "--metrics", "127.0.0.1:0", "--log-format", "json", "--auth-penalty", "0.2:1")
    try:
        yield server
    finally:
        assert server.stop() == 0


def test_metrics_move_after_a_success_and_a_failure(smtp_server: Smtp) -> None:
    url = _metrics_url(smtp_server)
    before = _scrape(url)
    assert _sample(before, "saslkit_connections_active", protocol="smtp") == 0
    ok = {"protocol": "smtp", "mechanism": "SCRAM-SHA-256", "outcome": "ok"}
    failed = {**ok, "outcome": "failed"}
    assert _smtp_login(smtp_server, "alice", PASSWORD)
    assert not _smtp_login(smtp_server, "alice", "wrong")
    assert not _smtp_login(smtp_server, "alice", "wrong")  # waits for the penalty of the failure before
    after = _scrape(url)
    assert _sample(after, "saslkit_auth_total", **ok) == _sample(before, "saslkit_auth_total", **ok) + 1
    assert _sample(after, "saslkit_auth_total", **failed) == _sample(before, "saslkit_auth_total", **failed) + 2
    durations = {"protocol": "smtp", "mechanism": "SCRAM-SHA-256"}
    assert _sample(after, "saslkit_auth_duration_seconds_count", **durations) == 3
    assert _sample(after, "saslkit_auth_duration_seconds_sum", **durations) > 0
    assert _sample(after, "saslkit_auth_penalty_delay_seconds_count", protocol="smtp") >= 1
    assert _sample(after, "saslkit_auth_penalty_delay_seconds_sum", protocol="smtp") > 0


def test_connections_gauge_counts_open_connections(smtp_server: Smtp) -> None:
    url = _metrics_url(smtp_server)
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=30) as smtp:
        smtp.ehlo()
        assert _sample(_scrape(url), "saslkit_connections_active", protocol="smtp") == 1


def test_unknown_mechanisms_do_not_add_label_values(smtp_server: Smtp) -> None:
    url = _metrics_url(smtp_server)
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=30) as smtp:
        smtp.ehlo()
        for n in range(3):
            smtp.docmd("AUTH", f"X-MADE-UP-{n}")
    samples = _scrape(url)
    assert not any("X-MADE-UP" in key for key in samples)
    assert _sample(samples, "saslkit_auth_total", protocol="smtp", mechanism="other", outcome="refused") >= 3


def test_json_log_lines(smtp_server: Smtp) -> None:
    assert not _smtp_login(smtp_server, "a b", "wrong")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in smtp_server.log.read_text().splitlines() if line.startswith("{")]
        failed = [e for e in lines if e.get("event") == "auth failed" and e.get("identity") == "a b"]
        if failed:
            break
        time.sleep(0.05)
    assert failed, smtp_server.log.read_text()
    line = failed[0]
    assert {"time", "level", "logger", "message", "peer", "mechanism", "reason"} <= line.keys()
    assert line["mechanism"] == "SCRAM-SHA-256" and line["peer"] == "127.0.0.1"
    assert 'identity="a b"' in line["message"]  # the logfmt text, quoted
    assert PASSWORD not in smtp_server.log.read_text()


def test_imap_metrics(db: Path) -> None:
    import imaplib

    from saslkit.stdlib import imap_login

    server = Imap(db, "--metrics", "127.0.0.1:0")
    try:
        imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
        context = ssl.create_default_context(cafile=str(server.certificate))
        context.check_hostname = False
        imap.starttls(ssl_context=context)
        imap_login(imap, "alice", PASSWORD, "PLAIN")
        imap.logout()
        samples = _scrape(_metrics_url(server))
    finally:
        assert server.stop() == 0
    assert _sample(samples, "saslkit_auth_total", protocol="imap", mechanism="PLAIN", outcome="ok") == 1


def test_unreachable_redis_is_warned_at_start_and_logged_with_its_cause(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ENV, "SASLKIT_STORE", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    server = Smtp(db)
    try:
        startup = server.log.read_text()
        assert "WARNING: token store unreachable at startup" in startup
        assert "Connection refused" in startup or "Error" in startup
        context = ssl.create_default_context(cafile=str(server.certificate))
        context.check_hostname = False
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
            smtp.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
                smtp_login(smtp, "alice", f"sk1.{'A' * 43}.{'B' * 43}", "REMEMBERME", token=True)
            assert exc.value.smtp_code == 454  # temporary
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert re.search(r"token store \(Redis\) unavailable: ConnectionError: .*127\.0\.0\.1", log), log
    assert "auth temporary failure" in log


def test_metrics_without_the_extra_names_it(tmp_path: Path) -> None:
    code = ("import sys\nsys.modules['prometheus_client'] = None\nfrom saslkit.cli import main\n"
            f"sys.exit(main(['serve', 'smtp', '--listen', '127.0.0.1:0', '--db', {str(tmp_path / 'x.db')!r}, "
            "'--metrics', '127.0.0.1:0']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60,
                          check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "saslkit: --metrics (Prometheus) needs the prometheus_client package: pip install 'saslkit[metrics]'")
    assert not (tmp_path / "x.db").exists()  # nothing started, nothing created


def test_dovecot_auth_metrics_and_json_logs(db: Path, tmp_path: Path) -> None:
    """``serve dovecot-auth --metrics --log-format json``: outcomes counted per mechanism, the penalty delay
    observed, and one JSON object per outcome naming mechanism, identity, service and rip (never the password)."""
    import base64
    import socket

    from mta_fixture import DovecotAuth

    auth = DovecotAuth(db, f"unix:{tmp_path / 'auth.sock'}", "--metrics", "127.0.0.1:0", "--log-format", "json",
                       "--auth-penalty", "1:2", log=tmp_path / "dovecot-auth.log")
    try:
        found = re.search(r"saslkit: metrics on (http://\S+/metrics)", auth.log_text())
        assert found, auth.log_text()
        before = _scrape(found.group(1))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(tmp_path / "auth.sock"))
            replies = sock.makefile("rb")
            while replies.readline() != b"DONE\n":
                pass

            def auth_plain(request_id: int, password: str) -> bytes:
                resp = base64.b64encode(f"\0alice\0{password}".encode()).decode()
                sock.sendall(f"AUTH\t{request_id}\tPLAIN\tservice=smtp\tsecured\trip=192.0.2.8\tresp={resp}\n"
                             .encode())
                return replies.readline()

            sock.sendall(b"VERSION\t1\t0\nCPID\t7\n")
            assert auth_plain(1, "Wr0ng-Passw0rd").startswith(b"FAIL\t1\t")
            assert auth_plain(2, PASSWORD).startswith(b"OK\t2\tuser=alice")  # penalized: waits 1 s
        after = _scrape(found.group(1))
        labels = {"protocol": "dovecot-auth", "mechanism": "PLAIN"}
        for outcome in ("ok", "failed"):
            assert _sample(after, "saslkit_auth_total", **labels, outcome=outcome) == \
                _sample(before, "saslkit_auth_total", **labels, outcome=outcome) + 1
        assert _sample(after, "saslkit_auth_penalty_delay_seconds_sum", protocol="dovecot-auth") == \
            _sample(before, "saslkit_auth_penalty_delay_seconds_sum", protocol="dovecot-auth") + 1.0
    finally:
        assert auth.stop() == 0
    records = [json.loads(line) for line in auth.log_text().splitlines() if line.startswith("{")]
    outcomes = [r for r in records if r.get("mechanism") == "PLAIN"]
    assert [(r["event"], r["identity"], r["service"], r["rip"]) for r in outcomes] == [
        ("auth failed", "alice", "smtp", "192.0.2.8"), ("auth ok", "alice", "smtp", "192.0.2.8")]
    assert PASSWORD not in auth.log_text() and "Wr0ng-Passw0rd" not in auth.log_text()
