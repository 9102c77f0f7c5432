"""A throwaway Dovecot (a real ``dovecot -F``) for the interop tests of ``saslkit client smtp`` and ``client imap``.

Debian packages: ``dovecot-core`` plus ``dovecot-submissiond`` (submission)
or ``dovecot-imapd`` (IMAP); ``.ci/run`` installs them.  Without them the
tests skip on a developer's machine and fail under CI (``CI`` set), which
must run them.

The configuration lives in a temporary directory (no system config):
loopback only on a free port, STARTTLS with a self-signed certificate made
with ``cryptography``, ``auth_mechanisms = plain scram-sha-256 scram-sha-1``
and a ``passwd-file`` whose line is the
``{SCRAM-SHA-256}<iter>,<salt>,<StoredKey>,<ServerKey>`` credential that
``saslkit user show --format dovecot`` prints (Dovecot 2.3's own scheme
format).  PLAIN works against that credential too: Dovecot verifies a
plaintext password against SCRAM keys.

Container notes (found by running it): Dovecot refuses login processes as
root (``default_login_user`` is the package's ``dovenull``, or ``nobody``)
and a userdb uid 0 (``userdb returned 0 as uid``), so the static userdb maps
to the current user when that is not root, else to ``nobody``.  Post-login
processes (submission, imap) then run as that user, so the directory is
world-traversable (a ``mkdtemp`` in the system temp dir, not pytest's 0700
one) with the mail directory owned by that user.  For submission,
``submission_relay_host`` points at a closed loopback port: Dovecot 2.3's
submission-login answers AUTH (235) before the post-login process dials the
relay, which then fails and answers QUIT with ``421 4.4.0`` (harmless here).
For IMAP the built-in ``imaps`` listener (port 993) is switched off.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import saslkit

REPO = Path(saslkit.__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SASLKIT_")}
ENV["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
SASLKIT = [sys.executable, "-m", "saslkit"]
PASSWORD = "pencil"

#: protocol -> (Debian packages, the login binary the package installs, the greeting's first octets)
PROTOCOLS = {
    "submission": ("dovecot-core dovecot-submissiond", "submission-login", b"220"),
    "imap": ("dovecot-core dovecot-imapd", "imap-login", b"* OK"),
}


def require_dovecot(protocol: str) -> str:
    """The ``dovecot`` binary; skip (fail under CI) when it or ``protocol``'s service is missing."""
    packages, login, _ = PROTOCOLS[protocol]
    exe = shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot",) if os.access(p, os.X_OK)), None)
    problem = None
    if exe is None:
        problem = f"dovecot is not installed (apt-get install {packages})"
    elif not Path(f"/usr/lib/dovecot/{login}").exists():
        problem = f"Dovecot's {protocol} service is not installed (apt-get install {packages})"
    elif os.geteuid() != 0:
        problem = "Dovecot's test instance needs root (it drops to dovenull/nobody itself)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem + ": CI must run the Dovecot interop tests")
        pytest.skip(problem)
    assert exe is not None
    return exe


def saslkit_run(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SASLKIT, *args], input=stdin, capture_output=True, text=True, env=ENV,
                          timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost / 127.0.0.1 (key mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _service_config(protocol: str, port: int) -> str:
    if protocol == "submission":
        return f"""\
submission_relay_host = 127.0.0.1
submission_relay_port = {free_port()}
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""
    return f"""\
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class Dovecot:
    """One private ``dovecot -F`` serving ``protocol`` (submission or imap) on a free loopback port."""

    def __init__(self, exe: str, directory: Path, passwd_line: str, protocol: str = "submission") -> None:
        self.directory = directory
        self.protocol = protocol
        self.port = free_port()
        self.log = directory / "dovecot.log"
        self.cert, key = write_certificate(directory)
        mail_user = pwd.getpwuid(os.getuid()) if os.getuid() != 0 else _account("nobody")
        if mail_user is None:
            pytest.fail("no unprivileged account (nobody) for Dovecot's userdb")
        login_user = _account("dovenull") or _account("nobody")
        assert login_user is not None
        mail = directory / "mail"
        mail.mkdir()
        os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
        passwd = directory / "passwd"
        passwd.write_text(f"alice:{passwd_line}\n")
        passwd.chmod(0o600)
        self.config = directory / "dovecot.conf"
        self.config.write_text(f"""\
# Throwaway test instance: no system configuration is read.
protocols = {protocol}
listen = 127.0.0.1
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = saslkit-test-{self.port}
log_path = {self.log}
info_log_path = {self.log}
hostname = localhost
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain scram-sha-256 scram-sha-1
auth_verbose = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={mail}
}}
mail_location = maildir:{mail}
default_internal_user = root
default_internal_group = root
default_login_user = {login_user.pw_name}
# No auth penalty (a delay of seconds, per IP, after a failed login): the wrong-password tests
# would slow every later login.  Mode 0 keeps anvil from creating the socket, which disables it.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{_service_config(protocol, self.port)}""")
        check = subprocess.run([exe, "-c", str(self.config), "-n"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            pytest.fail(f"dovecot rejected the test configuration: {check.stderr}")
        self.proc = subprocess.Popen([exe, "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self._wait_ready(PROTOCOLS[protocol][2])

    def _wait_ready(self, greeting: bytes) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.settimeout(5)
                    if sock.recv(len(greeting)).startswith(greeting):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"dovecot did not start on port {self.port}: {self.log_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        stderr = ""
        if self.proc.poll() is not None and self.proc.stderr is not None:
            stderr = self.proc.stderr.read().decode("utf-8", "replace")
        return stderr + (self.log.read_text(errors="replace") if self.log.exists() else "")

    def wait_for_log(self, text: str, timeout: float = 5) -> bool:
        """Whether ``text`` shows up in the log within ``timeout`` s (a line may land just after the reply)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """SIGTERM the master (it stops its children); the whole process group if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:  # children that outlived the master (they share its process group)
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.contextmanager
def running_dovecot(tmp_path_factory: pytest.TempPathFactory, protocol: str) -> Iterator[Dovecot]:
    """A Dovecot for ``protocol`` whose passwd-file holds alice's saslkit-made ``{SCRAM-SHA-256}`` line."""
    exe = require_dovecot(protocol)
    db = tmp_path_factory.mktemp(f"dovecot-{protocol}-users") / "users.db"
    added = saslkit_run("user", "add", "alice", "--db", str(db), "--iterations", "4096", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    shown = saslkit_run("user", "show", "alice", "--db", str(db), "--format", "dovecot")
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("{SCRAM-SHA-256}"))
    directory = Path(tempfile.mkdtemp(prefix=f"saslkit-dovecot-{protocol}-"))
    directory.chmod(0o711)  # post-login processes run unprivileged and must reach run/ and mail/
    server = None
    try:
        server = Dovecot(exe, directory, line, protocol)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def dovecot_fixture(protocol: str) -> Any:
    """A module-scoped ``dovecot`` fixture running Dovecot's ``protocol`` service (``submission``, ``imap``)."""

    @pytest.fixture(scope="module")
    def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
        with running_dovecot(tmp_path_factory, protocol) as server:
            yield server

    return dovecot


def dovecot_client(
    protocol: str, dovecot: Dovecot, mech: str, secret: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``saslkit client <protocol> -v`` as alice against the running Dovecot."""
    return saslkit_run("client", protocol, f"127.0.0.1:{dovecot.port}", "--mech", mech, "--user", "alice", "-v",
                       *extra, stdin=secret + "\n")
