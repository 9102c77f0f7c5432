"""Real MTAs in front of ``saslkit serve dovecot-auth``: private Postfix and Exim instances on loopback.

* ``saslkit serve dovecot-auth`` runs as a subprocess on a UNIX socket (:class:`DovecotAuth`).
* **Postfix** (Debian ``postfix``): its own config directory, queue and log file under a fresh directory in
  /tmp, ``smtpd`` on a free loopback port with ``smtpd_sasl_type = dovecot`` and STARTTLS; started with
  ``postfix -c DIR start`` and stopped with ``postfix -c DIR stop``.  Postfix must start as root.
* **Exim** (Debian ``exim4-daemon-heavy``, whose package conflicts with postfix): ``.ci/run`` unpacks it
  with ``apt-get download`` + ``dpkg -x`` and points ``SASLKIT_EXIM`` at the binary; a private
  configuration (``-C``) runs ``exim -bdf`` on a free port with one ``dovecot`` authenticator per mechanism.
  Its compiled-in user ``Debian-exim`` must exist (``.ci/run`` creates it).

Without the program (or root) a test skips on a developer's machine and fails under CI (``CI`` set).
The base directory is created in /tmp with mode 0755, because the MTAs' unprivileged processes
(``postfix``, ``Debian-exim``) must reach the socket and the spool.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_fixture import free_port, write_certificate
from servers import ENV, SASLKIT, start_serve, terminate

READY_RE = re.compile(r"saslkit dovecot-auth listening on (\S+)")


def require(what: str, problem: str | None) -> None:
    """Skip (fail under CI) when ``problem`` is set."""
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what}: {problem}; CI must run these tests")
    pytest.skip(f"{what}: {problem}")


def world_readable_tmpdir(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    return base


class DovecotAuth:
    """``saslkit serve dovecot-auth`` as a subprocess; stderr goes to ``log``."""

    def __init__(self, db: Path, listen: str, *extra: str, log: Path | None = None) -> None:
        self.db = db
        self.log = log or db.parent / "dovecot-auth.log"
        self.proc, m, self._log_fh = start_serve("dovecot-auth", "--listen", listen, "--db", str(db), *extra,
                                                 log=self.log, ready=READY_RE)
        self.address = m.group(1)

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int | None:
        code = terminate(self.proc)
        self._log_fh.close()
        return code


def make_users(db: Path, users: dict[str, str]) -> None:
    for name, password in users.items():
        r = subprocess.run([*SASLKIT, "user", "add", name, "--db", str(db)], input=password + "\n", text=True,
                           capture_output=True, env=ENV, timeout=60, check=False)
        assert r.returncode == 0, r.stderr


def mint_token(db: Path, user: str, *extra: str) -> str:
    r = subprocess.run([*SASLKIT, "token", "mint", "--user", user, "--db", str(db), *extra], text=True,
                       capture_output=True, env=ENV, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


CLIENT_TIMEOUT = 60


def swaks(port: int, mech: str, password: str) -> subprocess.CompletedProcess[str]:
    """``swaks`` STARTTLS + AUTH ``mech`` as alice against an MTA on ``port``, quitting after AUTH."""
    exe = shutil.which("swaks")
    if exe is None:
        require("swaks", "swaks is not installed (apt-get install swaks)")
    return subprocess.run([str(exe), "--server", f"127.0.0.1:{port}", "--tls", "--auth", mech, "--auth-user",
                           "alice", "--auth-password", password, "--quit-after", "AUTH"],
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False)


def gsasl_smtp(port: int, cafile: Path, mech: str, password: str) -> subprocess.CompletedProcess[str]:
    """``gsasl --smtp`` over STARTTLS as alice; ``--no-cb`` because gsasl 2.2 wants tls-unique/tls-exporter data,
    and an MTA cannot pass channel binding to the auth server anyway (no -PLUS is offered through it)."""
    exe = shutil.which("gsasl")
    if exe is None:
        require("gsasl", "gsasl is not installed (apt-get install gsasl)")
    return subprocess.run([str(exe), "--smtp", "127.0.0.1", str(port), "-m", mech, "-a", "alice", "-p", password,
                           f"--x509-ca-file={cafile}", "--no-cb"],
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL,
                          env={**ENV, "LC_ALL": "C.UTF-8"}, check=False)


def saslkit_smtp(port: int, cafile: Path, mech: str, secret: str) -> subprocess.CompletedProcess[str]:
    """``saslkit client smtp -v`` as alice (STARTTLS, the MTA's certificate trusted)."""
    return subprocess.run([*SASLKIT, "client", "smtp", f"127.0.0.1:{port}", "--mech", mech, "--user", "alice",
                           "--cafile", str(cafile), "-v"],
                          input=secret + "\n", capture_output=True, text=True, env=ENV, timeout=CLIENT_TIMEOUT,
                          check=False)


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(5)
            if sock.recv(100).startswith(b"220"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 220 on port {port}")


# --------------------------------------------------------------------------- Postfix

POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test.example
mydestination =
alias_maps =
alias_database =
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/saslkit-auth
smtpd_sasl_security_options = {security_options}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
"""


def require_mta(what: str, exe: str | None, missing: str, user: str, no_user: str) -> str:
    """The MTA's binary ``exe``; skip (fail under CI) unless it exists, we are root and its ``user`` exists."""
    problem = None
    if exe is None:
        problem = missing
    elif os.geteuid() != 0:
        problem = f"a private {what} instance must start as root"
    else:
        try:
            pwd.getpwnam(user)
        except KeyError:
            problem = no_user
    require(what, problem)
    assert exe is not None
    return exe


def require_postfix() -> str:
    exe = shutil.which("postfix") or ("/usr/sbin/postfix" if os.access("/usr/sbin/postfix", os.X_OK) else None)
    return require_mta("Postfix", exe, "postfix is not installed (apt-get install postfix)", "postfix",
                       "the postfix user does not exist (apt-get install postfix creates it)")


class Postfix:
    """A private Postfix: config, queue and log under ``base``; smtpd on ``port`` with STARTTLS."""

    def __init__(self, base: Path, security_options: str = "noanonymous") -> None:
        self.exe = require_postfix()
        self.base = base
        self.etc = base / "etc"
        self.port = free_port()
        for sub in ("etc", "queue", "data", "tls"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        os.chown(base / "data", pwd.getpwnam("postfix").pw_uid, -1)
        self.cert, _ = write_certificate(base / "tls")
        self.write_main_cf(security_options)
        self.write_master_cf()
        self.log = base / "maillog"
        self._postfix("start")
        # postfix-script creates queue/private (owned by postfix, 0700) on its first start
        self.socket = base / "queue" / "private" / "saslkit-auth"
        wait_port(self.port)

    def write_main_cf(self, security_options: str) -> None:
        (self.etc / "main.cf").write_text(POSTFIX_MAIN_CF.format(
            base=self.base, cert=self.cert, key=self.base / "tls" / "key.pem", security_options=security_options))

    def write_master_cf(self) -> None:
        """Debian's master.cf, smtpd on our port, nothing chrooted (no copy of /etc files in the queue)."""
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line.startswith(("#", " ", "\t")) or len(fields) < 8:
                lines.append(line)
                continue
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{self.port}"
            fields[4] = "n"
            lines.append(" ".join(fields))
        (self.etc / "master.cf").write_text("\n".join(lines) + "\n")

    def _postfix(self, command: str) -> None:
        r = subprocess.run([self.exe, "-c", str(self.etc), command], capture_output=True, text=True, timeout=60,
                           check=False)
        if r.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {r.stdout}{r.stderr}{self.log_text()}")

    def reconfigure(self, security_options: str) -> None:
        self.write_main_cf(security_options)
        self._postfix("reload")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._postfix("stop")


# --------------------------------------------------------------------------- Exim

EXIM_CONF = """\
keep_environment =
primary_hostname = mx.test.example
spool_directory = {base}/spool
log_file_path = {base}/log/%slog
pid_file_path = {base}/exim.pid
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
tls_certificate = {cert}
tls_privatekey = {key}
tls_advertise_hosts = *
auth_advertise_hosts = *
acl_smtp_rcpt = acl_check_rcpt
begin acl
acl_check_rcpt:
  accept authenticated = *
  deny
begin authenticators
{authenticators}
"""

EXIM_AUTHENTICATOR = """\
saslkit_{slug}:
  driver = dovecot
  public_name = {mechanism}
  server_socket = {socket}
  server_set_id = $auth1
"""


def exim_binary() -> str | None:
    for candidate in (os.environ.get("SASLKIT_EXIM"), shutil.which("exim4"), shutil.which("exim")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_exim() -> str:
    return require_mta("Exim", exim_binary(), "no Exim binary (SASLKIT_EXIM, exim4 or exim; .ci/run unpacks "
                       "exim4-daemon-heavy with apt-get download + dpkg -x)", "Debian-exim",
                       "Exim's compiled-in user Debian-exim does not exist (useradd --system Debian-exim)")


class Exim:
    """A private ``exim -bdf`` with one ``dovecot`` authenticator per mechanism, all on ``socket``."""

    def __init__(self, base: Path, socket_path: Path, mechanisms: list[str]) -> None:
        self.exe = require_exim()
        self.base = base
        self.port = free_port()
        for sub in ("spool", "log", "tls"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        exim = pwd.getpwnam("Debian-exim")
        for sub in ("spool", "log"):
            os.chown(base / sub, exim.pw_uid, exim.pw_gid)
        self.cert, key = write_certificate(base / "tls")
        os.chown(key, exim.pw_uid, -1)
        authenticators = "".join(EXIM_AUTHENTICATOR.format(slug=m.lower().replace("-", "_"), mechanism=m,
                                                           socket=socket_path) for m in mechanisms)
        self.conf = base / "exim.conf"
        self.conf.write_text(EXIM_CONF.format(base=base, port=self.port, cert=self.cert, key=key,
                                              authenticators=authenticators))
        self.proc = subprocess.Popen([self.exe, "-C", str(self.conf), "-bdf"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            wait_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"Exim did not start: {self.log_text()}") from None

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted((self.base / "log").glob("*")) if p.is_file())

    def stop(self) -> None:
        terminate(self.proc)


@contextlib.contextmanager
def removed_on_exit(path: Path) -> Iterator[Path]:
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
