"""Interop: ``saslkit client smtp`` -> Dovecot's submission service (a real ``dovecot -F``).

Debian packages: ``dovecot-core dovecot-submissiond`` (``.ci/run`` installs
them).  Without the ``dovecot`` binary the module skips on a developer's
machine and fails under CI (``CI`` set), which must run it.  The throwaway
configuration and the container notes are in ``dovecot_fixture.py``, shared
with the IMAP interop tests (``test_dovecot_imap.py``).
"""

from __future__ import annotations

import subprocess

import pytest
from dovecot_fixture import PASSWORD, Dovecot, dovecot_client, dovecot_fixture

pytestmark = pytest.mark.interop


dovecot = dovecot_fixture("submission")


def client(dovecot: Dovecot, mech: str, secret: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return dovecot_client("smtp", dovecot, mech, secret, *extra)


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_dovecot_submission_accepts_saslkit_credentials(dovecot: Dovecot, mech: str) -> None:
    r = client(dovecot, mech, PASSWORD, "--insecure")
    assert r.returncode == 0, r.stderr + dovecot.log_text()
    assert "Dovecot" in r.stderr and "C: STARTTLS" in r.stderr and "S: 235 " in r.stderr
    assert PASSWORD not in r.stderr
    if mech.startswith("SCRAM"):
        # Dovecot 2.3 offers no -PLUS: a client able to bind says so with the "y" flag (RFC 5802 §6).
        assert f"C: AUTH {mech} y,," in r.stderr and "S: 334 v=<masked>" in r.stderr
    assert dovecot.wait_for_log(f"user=<alice>, method={mech}"), dovecot.log_text()  # may land after the 235


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
def test_dovecot_wrong_password_exits_1(dovecot: Dovecot, mech: str) -> None:
    r = client(dovecot, mech, "not-the-password", "--insecure")
    assert r.returncode == 1, r.stderr
    assert "S: 535 " in r.stderr


def test_dovecot_certificate_from_cafile_and_unoffered_mechanism(dovecot: Dovecot) -> None:
    r = client(dovecot, "SCRAM-SHA-256", PASSWORD, "--cafile", str(dovecot.cert))
    assert r.returncode == 0, r.stderr
    plus = client(dovecot, "SCRAM-SHA-256-PLUS", PASSWORD, "--insecure")
    assert plus.returncode == 1 and "does not offer SCRAM-SHA-256-PLUS" in plus.stderr
