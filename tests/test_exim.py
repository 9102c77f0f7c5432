"""Interop: a private Exim (``driver = dovecot``, one authenticator per mechanism) in front of
``saslkit serve dovecot-auth``.

Exim opens one auth-server connection per authentication, reads the whole handshake before it writes, sends
``resp=`` empty when the SMTP client gave no initial response, and turns an auth server that hangs up into a
temporary failure (4xx).  Its binary comes from Debian's exim4-daemon-heavy (see ``mta_fixture.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import RedisServer
from mta_fixture import (
    DovecotAuth,
    Exim,
    gsasl_smtp,
    make_users,
    mint_token,
    removed_on_exit,
    saslkit_smtp,
    swaks,
    world_readable_tmpdir,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow]

PASSWORD = "correct horse 7"
MECHANISMS = ["PLAIN", "LOGIN", "SCRAM-SHA-256", "REMEMBERME"]


class Stack:
    def __init__(self, exim: Exim, auth: DovecotAuth, db: Path) -> None:
        self.exim, self.auth, self.db = exim, auth, db


def start_stack(base: Path, *extra: str) -> Stack:
    db = base / "saslkit.db"
    make_users(db, {"alice": PASSWORD})
    socket_path = base / "saslkit-auth"
    auth = DovecotAuth(db, f"unix:{socket_path}", "--socket-group", "Debian-exim", *extra)
    try:
        exim = Exim(base, socket_path, MECHANISMS)
    except BaseException:
        auth.stop()
        raise
    return Stack(exim, auth, db)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with removed_on_exit(world_readable_tmpdir("saslkit-exim-")) as base:
        stack = start_stack(base)
        try:
            yield stack
        finally:
            stack.exim.stop()
            assert stack.auth.stop() == 0
            assert "Traceback" not in stack.auth.log_text() and PASSWORD not in stack.auth.log_text()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks(stack: Stack, mech: str) -> None:
    ok = swaks(stack.exim.port, mech, PASSWORD)
    assert "235 Authentication succeeded" in ok.stdout, ok.stdout + stack.exim.log_text()
    assert f"250-AUTH {' '.join(MECHANISMS)}" in ok.stdout
    bad = swaks(stack.exim.port, mech, "wrong")
    assert "535 Incorrect authentication data" in bad.stdout and bad.returncode == 28
    assert f"auth ok rip=127.0.0.1 mechanism={mech} identity=alice service=smtp" in stack.auth.log_text()


def test_gsasl_scram_sha_256(stack: Stack) -> None:
    ok = gsasl_smtp(stack.exim.port, stack.exim.cert, "SCRAM-SHA-256", PASSWORD)
    assert ok.returncode == 0 and "235 Authentication succeeded" in ok.stdout, ok.stdout + ok.stderr
    bad = gsasl_smtp(stack.exim.port, stack.exim.cert, "SCRAM-SHA-256", "wrong")
    assert bad.returncode != 0 and "535" in bad.stdout


def test_saslkit_client_scram_and_rememberme(stack: Stack) -> None:
    scram = saslkit_smtp(stack.exim.port, stack.exim.cert, "SCRAM-SHA-256", PASSWORD)
    assert scram.returncode == 0 and "S: 334 v=<masked>" in scram.stderr and "S: 235 " in scram.stderr
    token = mint_token(stack.db, "alice")
    assert "S: 235 " in saslkit_smtp(stack.exim.port, stack.exim.cert, "REMEMBERME", token).stderr
    assert "S: 535 " in saslkit_smtp(stack.exim.port, stack.exim.cert, "REMEMBERME", token[:-4] + "AAAA").stderr


def test_token_store_outage_is_a_temporary_failure(start_redis: Callable[..., RedisServer]) -> None:
    redis = start_redis()
    with removed_on_exit(world_readable_tmpdir("saslkit-exim-")) as base:
        stack = start_stack(base, "--store", redis.url)
        try:
            token = mint_token(stack.db, "alice", "--store", redis.url)
            assert "S: 235 " in saslkit_smtp(stack.exim.port, stack.exim.cert, "REMEMBERME", token).stderr
            redis.stop()
            down = saslkit_smtp(stack.exim.port, stack.exim.cert, "REMEMBERME", token)
            assert down.returncode == 1 and "S: 435 " in down.stderr, down.stderr + stack.exim.log_text()
            assert "S: 235 " not in down.stderr
        finally:
            stack.exim.stop()
            stack.auth.stop()
