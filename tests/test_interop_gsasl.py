"""Interoperability with the GNU SASL command-line tool (``gsasl``) in stdio mode.

``gsasl --client``/``--server`` without ``--smtp``/``--imap`` and without a
host speak a line protocol on stdin/stdout (observed with gsasl 2.2.0):

* stdout carries only protocol lines: first the mechanism name, then one
  base64 line per step of the mechanism (an empty line for empty output).
  The server's first step has no input, so it prints an empty line (the
  empty challenge) before reading the client's first message.
* stdin carries the peer's base64 lines, one per line.
* stderr carries every diagnostic and prompt ("Using mechanism:",
  "Enter base64 authentication data ...", "warning: mechanism requested
  unsupported property `500'", "gsasl: mechanism error: ...").  stdout is
  line buffered when it is not a terminal.
* After the step that completes the mechanism, gsasl still prints that
  step's output and then reads one more line, which it ignores.  It then
  reports "... authentication finished (... trusted)..." on stderr, reads
  application data (``--application-data`` is on by default) until end of
  input, prints "gsasl: poll stdin" and "Session finished..." on stderr and
  exits 0.  End of input before that extra line makes it exit 1 silently.
* A failing step prints nothing more on stdout; gsasl writes
  "gsasl: mechanism error: <reason>" on stderr and exits 1 at once.

The server side needs only ``--password``: GSASL_VALIDATE_SIMPLE (property
500, PLAIN) and GSASL_SCRAM_SERVERKEY (property 23, SCRAM) are unsupported
by the CLI's callback, which prints a warning, and libgsasl then falls back to
GSASL_PASSWORD, answered from ``--password``.  The CLI server accepts any
authentication identity with that password.  The client needs ``--no-cb``,
otherwise SCRAM asks for tls-unique data on stdin.
"""

from __future__ import annotations

import base64
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass

import pytest

from saslkit import (
    Challenge,
    ClientCredentials,
    Failure,
    MemoryUserStore,
    ScramCredential,
    ServerContext,
    Success,
    UserRecord,
    default_registry,
    make_user,
)

GSASL = shutil.which("gsasl")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(GSASL is None, reason="gsasl (GNU SASL CLI) is not installed"),
]

USER = "user"
PASSWORD = "pencil"
WRONG = "pencil2"
ITERATIONS = 4096
SERVER_SECRET = b"saslkit-gsasl-interop-secret-012"
MECHS = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]
TIMEOUT = 15.0  # seconds per line; a hang fails the test instead of blocking the run


# --------------------------------------------------------------------------- subprocess driver


def _gsasl_env() -> dict[str, str]:
    # Untranslated diagnostics, and a UTF-8 codeset so gsasl takes non-ASCII
    # arguments as UTF-8 (it converts them from the locale's codeset).
    env = dict(os.environ, LC_ALL="C.UTF-8")
    env.pop("LANGUAGE", None)
    return env


class GsaslProcess:
    """One ``gsasl`` process driven line by line over pipes.

    Reader threads move stdout lines into a queue and collect stderr, so
    every read has a timeout and a silent or hung gsasl fails the test.
    """

    def __init__(self, *args: str, timeout: float = TIMEOUT) -> None:
        assert GSASL is not None
        self.args = args
        self.timeout = timeout
        env = _gsasl_env()
        self._proc = subprocess.Popen(
            [GSASL, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def read_line(self) -> str | None:
        """The next stdout line without its newline, or ``None`` at end of output."""
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.kill()
            pytest.fail(f"gsasl {' '.join(self.args)}: no output within {self.timeout}s\nstderr:\n{self.stderr}")
        if line is None:
            self._lines.put(None)  # stay at end of output
            return None
        return line.decode("ascii").removesuffix("\n")

    def receive(self) -> bytes | None:
        """The next line base64-decoded, or ``None`` once gsasl has stopped talking."""
        line = self.read_line()
        return None if line is None else base64.b64decode(line, validate=True)

    def send_line(self, text: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(text.encode("ascii") + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # gsasl already gave up; the next read_line() sees the end of output

    def send(self, data: bytes) -> None:
        self.send_line(base64.b64encode(data).decode("ascii"))

    def finish(self) -> int:
        """Close stdin (end of application data) and return the exit status."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"gsasl {' '.join(self.args)} did not exit\nstderr:\n{self.stderr}")
        for thread in self._threads:
            thread.join(timeout=self.timeout)
        return rc

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> GsaslProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


@dataclass
class GsaslRun:
    returncode: int
    stderr: str
    outcome: Success | Failure | None = None  # saslkit server's verdict
    verified: bool = False  # saslkit client checked the gsasl server's v=

    @property
    def gsasl_accepted(self) -> bool:
        return self.returncode == 0 and "authentication finished" in self.stderr


# --------------------------------------------------------------------------- saslkit client -> gsasl --server


def saslkit_client_vs_gsasl_server(
    mech: str, password: str, *, username: str = USER, server_password: str = PASSWORD
) -> GsaslRun:
    """saslkit client against ``gsasl --server --mechanism M --password pencil``."""
    client = default_registry().client(mech, ClientCredentials(username, password))
    verified = False
    with GsaslProcess("--server", "--mechanism", mech, "--password", server_password) as g:
        assert g.read_line() == mech
        assert g.read_line() == ""  # empty first challenge: the client sends first
        g.send(client.start())
        if mech.startswith("SCRAM-"):
            server_first = g.receive()
            assert server_first is not None, g.stderr
            g.send(client.step(server_first))
        final = g.receive()  # SCRAM: server-final (v=); PLAIN: empty success data
        if final is not None:
            if mech.startswith("SCRAM-"):
                assert client.step(final) == b""  # raises unless gsasl's v= verifies
                client.finish()
                verified = client.verified
            else:
                assert final == b""
                client.finish(None)
                verified = True
            g.send_line("")  # the extra line gsasl reads after its last step
        rc = g.finish()
        return GsaslRun(rc, g.stderr, verified=verified)


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_gsasl_server_success(mech):
    run = saslkit_client_vs_gsasl_server(mech, PASSWORD)
    assert run.gsasl_accepted, run.stderr
    assert "Server authentication finished (client trusted)" in run.stderr
    assert run.verified


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_gsasl_server_wrong_password(mech):
    run = saslkit_client_vs_gsasl_server(mech, WRONG)
    assert run.returncode == 1, run.stderr
    assert "mechanism error" in run.stderr
    assert not run.verified


# --------------------------------------------------------------------------- gsasl --client -> saslkit server


@pytest.fixture(scope="module")
def users() -> MemoryUserStore:
    return MemoryUserStore(
        [make_user(USER, PASSWORD, iterations=ITERATIONS, hashes=("SHA-1", "SHA-256"))],
        default_iterations=ITERATIONS,
    )


def gsasl_client_vs_saslkit_server(
    users: MemoryUserStore, mech: str, password: str, *, username: str = USER, tamper_v: bool = False
) -> GsaslRun:
    """``gsasl --client --mechanism M -a user -p P --no-cb`` against a saslkit server."""
    # PLAIN is offered only over TLS by default; this pipe stands in for a TLS connection.
    server = default_registry().server(mech, ServerContext(users, server_secret=SERVER_SECRET, tls=True))
    with GsaslProcess("--client", "--mechanism", mech, "-a", username, "-p", password, "--no-cb") as g:
        assert g.read_line() == mech
        data = g.receive()  # gsasl always sends an initial response in stdio mode
        outcome: Success | Failure | None = None
        while data is not None:
            step = server.step(data)
            if isinstance(step, Challenge):
                g.send(step.data)
                data = g.receive()
                continue
            outcome = step
            break
        if isinstance(outcome, Success):
            if outcome.additional_data is not None:
                extra = outcome.additional_data
                if tamper_v:
                    extra = b"v=" + base64.b64encode(bytes(len(base64.b64decode(extra[2:]))))
                # No outcome message in stdio mode: v= goes as one more challenge,
                # answered by an empty response (RFC 4422 §5 item 2b).
                g.send(extra)
                ack = g.read_line()
                if ack is not None:
                    assert ack == ""
                    g.send_line("")
            else:
                g.send_line("")  # the extra line gsasl reads after its last step
        elif isinstance(outcome, Failure) and outcome.data is not None:
            g.send(outcome.data)  # SCRAM e=…
        rc = g.finish()
        return GsaslRun(rc, g.stderr, outcome=outcome)


@pytest.mark.parametrize("mech", MECHS)
def test_gsasl_client_saslkit_server_success(users, mech):
    run = gsasl_client_vs_saslkit_server(users, mech, PASSWORD)
    assert isinstance(run.outcome, Success), (run.outcome, run.stderr)
    assert run.outcome.authcid == USER
    assert run.outcome.mechanism == mech
    assert run.gsasl_accepted, run.stderr
    assert "Client authentication finished (server trusted)" in run.stderr


@pytest.mark.parametrize("mech", MECHS)
def test_gsasl_client_saslkit_server_wrong_password(users, mech):
    run = gsasl_client_vs_saslkit_server(users, mech, WRONG)
    assert isinstance(run.outcome, Failure), run.outcome
    if mech == "PLAIN":
        assert run.outcome.reason == "authentication-failed"
    else:
        assert run.outcome.reason == "invalid-proof"
        # gsasl 2.2.0 cannot parse a server-final e=… and reports a parse error.
        assert "mechanism error" in run.stderr
    # PLAIN in stdio mode has no outcome line: gsasl only sees end of input.
    assert run.returncode == 1, run.stderr


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_gsasl_client_rejects_wrong_server_signature(users, mech):
    run = gsasl_client_vs_saslkit_server(users, mech, PASSWORD, tamper_v=True)
    assert isinstance(run.outcome, Success)
    assert run.returncode == 1
    assert "mechanism error" in run.stderr


#: (username, password the server stores, password the client types)
IDENTITIES = [
    pytest.param("us,er=1", PASSWORD, PASSWORD, id="saslname-escapes"),  # n=us=2Cer=3D1
    pytest.param("\u00fcser", "p\u00e4ssw\u00f6rd", "p\u00e4ssw\u00f6rd", id="non-ascii"),
    pytest.param(USER, "IX", "I\u00adX", id="saslprep-soft-hyphen"),  # RFC 4013 §3 example
    pytest.param(USER, "a b", "a\u00a0b", id="saslprep-nbsp"),  # non-ASCII space -> U+0020
]


@pytest.mark.parametrize(("username", "stored", "typed"), IDENTITIES)
@pytest.mark.parametrize("mech", MECHS)
def test_gsasl_client_identities(mech, username, stored, typed):
    store = MemoryUserStore([make_user(username, stored, iterations=ITERATIONS, hashes=("SHA-1", "SHA-256"))])
    run = gsasl_client_vs_saslkit_server(store, mech, typed, username=username)
    assert isinstance(run.outcome, Success), (run.outcome, run.stderr)
    assert run.outcome.authcid == username
    assert run.gsasl_accepted, run.stderr


@pytest.mark.parametrize(("username", "stored", "typed"), IDENTITIES)
@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_identities(mech, username, stored, typed):
    run = saslkit_client_vs_gsasl_server(mech, typed, username=username, server_password=stored)
    assert run.gsasl_accepted, run.stderr
    assert run.verified


# --------------------------------------------------------------------------- gsasl --mkpasswd


def gsasl_mkpasswd(mech: str, salt: bytes, iterations: int, *extra: str) -> str:
    assert GSASL is not None
    proc = subprocess.run(
        [
            GSASL,
            "--mkpasswd",
            "--mechanism",
            mech,
            "--password",
            PASSWORD,
            "--salt",
            base64.b64encode(salt).decode("ascii"),
            "--iteration-count",
            str(iterations),
            *extra,
        ],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
        env=_gsasl_env(),
    )
    return proc.stdout.decode("ascii")


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256"])
@pytest.mark.parametrize("salt", [bytes(range(16)), b"\xff" * 12, bytes(range(1, 33))])
def test_dovecot_format_matches_gsasl_mkpasswd(hash_name, salt):
    mech = f"SCRAM-{hash_name}"
    out = gsasl_mkpasswd(mech, salt, ITERATIONS)
    # gsasl 2.2.0 ends the line with "\n"; the credential itself must be byte-identical.
    assert out.endswith("\n") and out.count("\n") == 1
    ours = ScramCredential.derive(hash_name, PASSWORD, salt, ITERATIONS).to_dovecot()
    assert out.removesuffix("\n") == ours
    assert ScramCredential.parse(out) == ScramCredential.derive(hash_name, PASSWORD, salt, ITERATIONS)


def test_parse_gsasl_mkpasswd_verbose_form():
    """``--verbose`` appends ``,<hex SaltedPassword>``; parse() ignores it."""
    salt = bytes(range(16))
    out = gsasl_mkpasswd("SCRAM-SHA-256", salt, ITERATIONS, "--verbose")
    assert out.count(",") == 4
    assert ScramCredential.parse(out) == ScramCredential.derive("SHA-256", PASSWORD, salt, ITERATIONS)


@pytest.mark.parametrize("mech", MECHS)
def test_gsasl_mkpasswd_credentials_serve_gsasl_client(mech):
    """Keys made by ``gsasl --mkpasswd`` and imported into saslkit authenticate gsasl's client."""
    salt = bytes(range(16))
    creds = {h: ScramCredential.parse(gsasl_mkpasswd(f"SCRAM-{h}", salt, ITERATIONS)) for h in ("SHA-1", "SHA-256")}
    # No argon2 hash: PLAIN falls back to recomputing the SCRAM StoredKey.
    store = MemoryUserStore([UserRecord(USER, creds)], default_iterations=ITERATIONS)
    run = gsasl_client_vs_saslkit_server(store, mech, PASSWORD)
    assert isinstance(run.outcome, Success), (run.outcome, run.stderr)
    assert run.gsasl_accepted, run.stderr
    run = gsasl_client_vs_saslkit_server(store, mech, WRONG)
    assert isinstance(run.outcome, Failure)


@pytest.mark.parametrize("iterations", [4096, 10000])
def test_cli_user_show_dovecot_matches_gsasl_mkpasswd(tmp_path, iterations):
    """``saslkit user show --format dovecot`` equals ``gsasl --mkpasswd`` for the stored salt and count."""
    import io

    from saslkit.cli import main

    db = str(tmp_path / "u.db")
    add = ["user", "add", "alice", "--db", db, "--iterations", str(iterations)]
    assert main(add, io.StringIO(PASSWORD + "\n")) == 0
    out = io.StringIO()
    assert main(["user", "show", "alice", "--db", db, "--format", "dovecot"], io.StringIO(), out) == 0
    lines = {line.split("}")[0][1:]: line for line in out.getvalue().splitlines()}
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        cred = ScramCredential.parse(lines[mech])
        assert cred.iterations == iterations
        assert gsasl_mkpasswd(mech, cred.salt, cred.iterations) == lines[mech] + "\n"
