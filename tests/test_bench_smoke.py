"""The SMTP server benchmark's ``--quick`` mode runs and prints its table (no timing assertions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smtp_server_quick_prints_its_table() -> None:
    pytest.importorskip("aiosmtpd")
    pytest.importorskip("scramp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_smtp_server.py"), "--quick"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for label in ("saslkit serve smtp", "saslkit aiosmtpd adapter", "aiosmtpd + scramp",
                  "SCRAM login, 16 concurrent", "NOOP, 16 connections", "CPU vs baseline"):
        assert label in done.stdout


def test_bench_dovecot_auth_quick_prints_its_table() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_dovecot_auth.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for label in ("SCRAM-SHA-256", "PLAIN(argon2)", "saslkit", "exchanges/s", "CPU ms/exchange"):
        assert label in done.stdout


def test_bench_tls_handshake_quick_prints_its_table() -> None:
    pytest.importorskip("OpenSSL")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_tls_handshake.py"), "--quick"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for label in ("pyOpenSSL memory BIOs (saslkit.net.tls)", "stdlib ssl (loop.start_tls)",
                  "server CPU per handshake"):
        assert label in done.stdout
