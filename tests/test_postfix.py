"""Interop: a private Postfix (``smtpd_sasl_type = dovecot``) in front of ``saslkit serve dovecot-auth``.

Clients: swaks (PLAIN, LOGIN), gsasl ``--smtp`` (SCRAM-SHA-256, SCRAM-SHA-1), smtplib (PLAIN) and saslkit's own
client (SCRAM-SHA-512, and REMEMBERME / HT2-SHA-256-NONE with a token minted beforehand).  Postfix's
``smtpd_sasl_security_options`` filters on the MECH flags; a token-store outage is a 454 through Postfix.
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import RedisServer
from mta_fixture import (
    DovecotAuth,
    Postfix,
    gsasl_smtp,
    make_users,
    mint_token,
    removed_on_exit,
    saslkit_smtp,
    swaks,
    world_readable_tmpdir,
)
from servers import ENV

pytestmark = [pytest.mark.interop, pytest.mark.slow]

PASSWORD = "correct horse 7"
TIMEOUT = 60


class Stack:
    def __init__(self, postfix: Postfix, auth: DovecotAuth, db: Path) -> None:
        self.postfix, self.auth, self.db = postfix, auth, db


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with removed_on_exit(world_readable_tmpdir("saslkit-postfix-")) as base:
        postfix = Postfix(base)
        db = base / "saslkit.db"
        make_users(db, {"alice": PASSWORD})
        auth = DovecotAuth(db, f"unix:{postfix.socket}", "--socket-group", "postfix")
        try:
            yield Stack(postfix, auth, db)
        finally:
            postfix.stop()
            assert auth.stop() == 0
            assert not postfix.socket.exists()  # removed on SIGTERM
            assert "Traceback" not in auth.log_text()
            assert PASSWORD not in auth.log_text()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks(stack: Stack, mech: str) -> None:
    ok = swaks(stack.postfix.port, mech, PASSWORD)
    assert "235 2.7.0 Authentication successful" in ok.stdout, ok.stdout + stack.postfix.log_text()
    bad = swaks(stack.postfix.port, mech, "wrong")
    assert "535 5.7.8" in bad.stdout and bad.returncode == 28
    log = stack.auth.log_text()
    assert f"auth ok rip=127.0.0.1 mechanism={mech} identity=alice service=smtp" in log
    assert f"auth failed rip=127.0.0.1 mechanism={mech} identity=alice" in log


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_gsasl_scram(stack: Stack, mech: str) -> None:
    ok = gsasl_smtp(stack.postfix.port, stack.postfix.cert, mech, PASSWORD)
    transcript = ok.stdout + ok.stderr
    assert ok.returncode == 0 and "235 2.7.0" in transcript, transcript
    assert "STARTTLS" in transcript and "334 " in transcript  # SCRAM's v= travels as a 334 through Postfix
    bad = gsasl_smtp(stack.postfix.port, stack.postfix.cert, mech, "wrong")
    assert bad.returncode != 0 and "535" in bad.stdout + bad.stderr


def test_smtplib_plain(stack: Stack) -> None:
    context = ssl.create_default_context(cafile=str(stack.postfix.cert))
    with smtplib.SMTP("127.0.0.1", stack.postfix.port, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=context)
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features["auth"].split()
        code, _ = smtp.login("alice", PASSWORD)
        assert code == 235
    with smtplib.SMTP("127.0.0.1", stack.postfix.port, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=context)
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            smtp.login("alice", "nope")
        assert failed.value.smtp_code == 535


def test_saslkit_client_scram_sha_512(stack: Stack) -> None:
    ok = saslkit_smtp(stack.postfix.port, stack.postfix.cert, "SCRAM-SHA-512", PASSWORD)
    assert ok.returncode == 0 and "S: 235 " in ok.stderr, ok.stderr
    assert "S: 334 v=<masked>" in ok.stderr  # the server signature is verified by the client
    bad = saslkit_smtp(stack.postfix.port, stack.postfix.cert, "SCRAM-SHA-512", "wrong")
    assert bad.returncode == 1 and "S: 535 " in bad.stderr


@pytest.mark.parametrize("mech", ["REMEMBERME", "HT2-SHA-256-NONE"])
def test_saslkit_client_tokens(stack: Stack, mech: str) -> None:
    token = mint_token(stack.db, "alice")
    ok = saslkit_smtp(stack.postfix.port, stack.postfix.cert, mech, token)
    assert ok.returncode == 0 and "S: 235 " in ok.stderr, ok.stderr + stack.auth.log_text()
    assert token not in ok.stderr and token not in stack.auth.log_text()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    bad = saslkit_smtp(stack.postfix.port, stack.postfix.cert, mech, forged)
    assert bad.returncode == 1 and "S: 535 " in bad.stderr


def ehlo_auth(port: int, cafile: Path) -> list[str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(cafile)))
        smtp.ehlo()
        return smtp.esmtp_features.get("auth", "").split()


def test_noplaintext_hides_plaintext_mechanisms(stack: Stack) -> None:
    """Postfix filters the MECH list by its flags: with noplaintext only mutual-auth mechanisms remain."""
    before = ehlo_auth(stack.postfix.port, stack.postfix.cert)
    assert {"PLAIN", "LOGIN", "REMEMBERME", "SCRAM-SHA-256"} <= set(before)
    stack.postfix.reconfigure("noanonymous, noplaintext")
    try:
        deadline = time.monotonic() + 20
        after = before
        while time.monotonic() < deadline and "PLAIN" in after:
            time.sleep(0.3)
            after = ehlo_auth(stack.postfix.port, stack.postfix.cert)
        assert not {"PLAIN", "LOGIN", "REMEMBERME", "STOKEN"} & set(after), after
        assert {"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "HT2-SHA-256-NONE"} <= set(after)
        stack.postfix.reconfigure("noanonymous, mutual_auth")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "HT2-SHA-256-NONE" not in after:
            time.sleep(0.3)
            after = ehlo_auth(stack.postfix.port, stack.postfix.cert)
        assert "PLAIN" not in after and "SCRAM-SHA-256" in after
    finally:
        stack.postfix.reconfigure("noanonymous")


def test_token_store_outage_is_454_and_service_resumes(start_redis: Callable[..., RedisServer]) -> None:
    """A token store that is down makes REMEMBERME a temporary failure: Postfix answers 454, never 235."""
    redis = start_redis()
    with removed_on_exit(world_readable_tmpdir("saslkit-postfix-")) as base:
        postfix = Postfix(base)
        db = base / "saslkit.db"
        make_users(db, {"alice": PASSWORD})
        token = mint_token(db, "alice", "--store", redis.url)
        auth = DovecotAuth(db, f"unix:{postfix.socket}", "--socket-group", "postfix", "--store", redis.url)
        stack = Stack(postfix, auth, db)
        try:
            assert "S: 235 " in saslkit_smtp(stack.postfix.port, stack.postfix.cert, "REMEMBERME", token).stderr
            redis.stop()
            down = saslkit_smtp(stack.postfix.port, stack.postfix.cert, "REMEMBERME", token)
            assert down.returncode == 1 and "S: 454 4.7.0" in down.stderr, down.stderr + postfix.log_text()
            # Passwords do not need the token store: SCRAM still works while it is down.
            assert "S: 235 " in saslkit_smtp(stack.postfix.port, stack.postfix.cert, "SCRAM-SHA-256", PASSWORD).stderr
            redis.start()  # an empty Redis (no persistence in the test): a token minted now works again
            fresh = mint_token(db, "alice", "--store", redis.url)
            assert "S: 235 " in saslkit_smtp(stack.postfix.port, stack.postfix.cert, "REMEMBERME", fresh).stderr
            gone = saslkit_smtp(stack.postfix.port, stack.postfix.cert, "REMEMBERME", token)  # its record is gone
            assert "S: 535 " in gone.stderr
            assert "auth temporary failure" in auth.log_text()
        finally:
            postfix.stop()
            auth.stop()


def test_tokens_for_mtas_example(stack: Stack) -> None:
    """docs/examples/tokens_for_mtas.py: a token from ``serve imap`` REMEMBERME (same database) logs in through
    Postfix with REMEMBERME and HT2-SHA-256-NONE."""
    from servers import ServerProcess

    class Imap(ServerProcess):
        protocol = "imap"
        log_prefix = "imap-for-postfix"

    imap = Imap(stack.db)
    try:
        example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "tokens_for_mtas.py"
        run = subprocess.run([sys.executable, str(example), "--imap", imap.address, "--imap-cafile",
                              str(imap.certificate), "--smtp", f"127.0.0.1:{stack.postfix.port}", "--smtp-cafile",
                              str(stack.postfix.cert), "--user", "alice"],
                             input=PASSWORD + "\n", capture_output=True, text=True, env=ENV, timeout=TIMEOUT,
                             check=False)
        assert run.returncode == 0, run.stdout + run.stderr + stack.auth.log_text()
        assert run.stdout.splitlines() == ["REMEMBERME: 235 2.7.0 Authentication successful",
                                           "HT2-SHA-256-NONE: 235 2.7.0 Authentication successful"]
    finally:
        imap.stop()


def test_idle_connections_are_closed_and_postfix_reconnects() -> None:
    """``--idle-timeout``: the auth server closes Postfix's idle connection; on a UNIX socket Postfix's next
    write fails at once and it reconnects, so the next login still succeeds."""
    with removed_on_exit(world_readable_tmpdir("saslkit-postfix-")) as base:
        postfix = Postfix(base)
        db = base / "saslkit.db"
        make_users(db, {"alice": PASSWORD})
        auth = DovecotAuth(db, f"unix:{postfix.socket}", "--socket-group", "postfix", "--idle-timeout", "1")
        stack = Stack(postfix, auth, db)
        try:
            context = ssl.create_default_context(cafile=str(postfix.cert))
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=TIMEOUT) as smtp:
                smtp.starttls(context=context)
                assert smtp.login("alice", PASSWORD)[0] == 235
                deadline = time.monotonic() + 30
                while "closing a client connection idle" not in auth.log_text() and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert "closing a client connection idle" in auth.log_text()
            # A new SMTP session, very likely served by the same smtpd process and its closed auth connection.
            assert "S: 235 " in saslkit_smtp(stack.postfix.port, stack.postfix.cert, "SCRAM-SHA-256", PASSWORD).stderr
            assert "Traceback" not in auth.log_text()
        finally:
            postfix.stop()
            auth.stop()
