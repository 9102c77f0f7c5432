"""Interop: ``saslkit client imap`` -> Dovecot's IMAP server (a real ``dovecot -F``).

Debian packages: ``dovecot-core dovecot-imapd`` (``.ci/run`` installs them).
Without them the module skips on a developer's machine and fails under CI
(``CI`` set), which must run it.  The throwaway configuration (loopback, a
free port, STARTTLS with a self-signed certificate, ``ssl = required``, a
``passwd-file`` holding the ``{SCRAM-SHA-256}`` line that ``saslkit user
show --format dovecot`` prints) is in ``dovecot_fixture.py``, shared with the
submission tests.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from dovecot_fixture import PASSWORD, Dovecot, dovecot_client, dovecot_fixture, saslkit_run

pytestmark = pytest.mark.interop


dovecot = dovecot_fixture("imap")


def client(dovecot: Dovecot, mech: str, secret: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return dovecot_client("imap", dovecot, mech, secret, *extra)


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_dovecot_imap_accepts_saslkit_credentials(dovecot: Dovecot, mech: str) -> None:
    r = client(dovecot, mech, PASSWORD, "--insecure")
    assert r.returncode == 0, r.stderr + dovecot.log_text()
    transcript = r.stderr
    # Dovecot counts a loopback peer as secure (same IP both ends), so even before TLS it lists PLAIN and no
    # LOGINDISABLED; the client still does STARTTLS, as asked.
    assert re.search(r"^S: \* OK \[CAPABILITY [^\]]*\bSTARTTLS\b[^\]]*\] Dovecot", transcript, re.M), transcript
    assert "C: a001 STARTTLS" in transcript and "* TLS established" in transcript
    assert re.search(rf"^S: \* CAPABILITY .*\bAUTH={mech}\b", transcript, re.M)
    assert re.search(rf"^C: a003 AUTHENTICATE {mech} \S", transcript, re.M)  # Dovecot advertises SASL-IR
    assert re.search(r"^S: a003 OK \[CAPABILITY [^\]]*\] Logged in", transcript, re.M), transcript
    assert PASSWORD not in transcript
    if mech.startswith("SCRAM"):
        # Dovecot 2.3 offers no -PLUS: a client able to bind says so with the "y" flag (RFC 5802 §6) ...
        assert f"C: a003 AUTHENTICATE {mech} y,,n=alice," in transcript
        # ... and its v= comes as a "+" continuation, verified by the client before it trusts the OK.
        assert "S: + v=<masked>" in transcript and "C: (empty)" in transcript
    else:
        assert "password=<masked>" in transcript
    assert dovecot.wait_for_log(f"Login: user=<alice>, method={mech},"), dovecot.log_text()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_dovecot_imap_wrong_password_exits_1(dovecot: Dovecot, mech: str) -> None:
    r = client(dovecot, mech, "not-the-password", "--insecure")
    assert r.returncode == 1, r.stderr
    assert re.search(r"^S: a003 NO \[AUTHENTICATIONFAILED\] ", r.stderr, re.M), r.stderr
    assert "not-the-password" not in r.stderr


def test_dovecot_imap_cafile_and_what_it_does_not_offer(dovecot: Dovecot) -> None:
    r = client(dovecot, "SCRAM-SHA-256", PASSWORD, "--cafile", str(dovecot.cert))
    assert r.returncode == 0, r.stderr
    # The passwd-file holds only the {SCRAM-SHA-256} keys: Dovecot offers SCRAM-SHA-1 but cannot verify it.
    sha1 = client(dovecot, "SCRAM-SHA-1", PASSWORD, "--insecure")
    assert sha1.returncode == 1 and "NO [AUTHENTICATIONFAILED]" in sha1.stderr
    plus = client(dovecot, "SCRAM-SHA-256-PLUS", PASSWORD, "--insecure")
    assert plus.returncode == 1 and "does not offer SCRAM-SHA-256-PLUS" in plus.stderr
    remember = client(dovecot, "PLAIN", PASSWORD, "--insecure", "--remember", "RANDOM")
    assert remember.returncode == 1 and "does not offer REMEMBERME" in remember.stderr
    # Dovecot 2.3 has no UNAUTHENTICATE (RFC 8437): the client says so after logging in, and exits 1.
    reauth = saslkit_run("client", "imap", f"127.0.0.1:{dovecot.port}", "--mech", "PLAIN", "--user", "alice",
                         "--insecure", "--reauth-as", "alice", "-v", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert reauth.returncode == 1 and "does not offer UNAUTHENTICATE" in reauth.stderr
    assert "S: a003 OK " in reauth.stderr and "UNAUTHENTICATE" not in "".join(
        line for line in reauth.stderr.splitlines() if line.startswith("C: "))
