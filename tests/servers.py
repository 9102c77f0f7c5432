"""Helpers shared by the SMTP and IMAP tests: the ``saslkit`` subprocess environment, a
``saslkit serve smtp|imap`` process on a free loopback port, the ``saslkit client`` runner,
and the failing stores and toy mechanisms of the sans-IO session tests.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TextIO

import pytest

import saslkit
from saslkit import ClientCredentials, MechanismInfo, Registry, default_registry
from saslkit.errors import TemporaryFailure
from saslkit.mechanism import Challenge, Failure, ServerStep, Success

REPO = Path(saslkit.__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SASLKIT_")}
ENV["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
SASLKIT = [sys.executable, "-m", "saslkit"]
READY_RE = re.compile(r"saslkit (?:smtp|lmtp|imap) listening on (\S+):(\d+)")

#: Every password mechanism of the registry; after STARTTLS the server offers all of them (-PLUS via
#: tls-exporter: both ends run TLS on pyOpenSSL, RFC 9266).
PASSWORD_MECHS = [
    "SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
]
#: The token mechanisms a TLS 1.3 connection can use (no tls-unique: RFC 9266 §3).
TOKEN_MECHS = ["REMEMBERME"] + [
    f"{family}-{h}-{cb}" for family in ("HT", "HT2") for h in ("SHA-256", "SHA-512", "SHA3-512")
    for cb in ("NONE", "ENDP", "EXPR")
]


def saslkit_run(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SASLKIT, *args], input=stdin, capture_output=True, text=True, env=ENV,
                          timeout=timeout, check=False)


# --------------------------------------------------------------------------- server subprocess


def terminate(proc: subprocess.Popen[Any], timeout: float = 15) -> int | None:
    """SIGTERM ``proc`` and wait; SIGKILL if it lingers.  Its exit status (None if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


def start_serve(subcommand: str, *args: str, log: Path, ready: re.Pattern[str] = READY_RE,
                ) -> tuple[subprocess.Popen[str], re.Match[str], TextIO]:
    """``saslkit serve <subcommand> <args>`` with stderr in ``log``, once it has printed its ``ready`` line.

    The tests' defaults: no failure delay and no auth penalty (they fail logins on purpose) unless ``args``
    set them.  Returns the process, the ready line's match and the open log file.
    """
    log_fh = log.open("w")
    defaults = [*(() if "--failure-delay" in args else ("--failure-delay", "0")),
                *(() if "--auth-penalty" in args else ("--auth-penalty", "off"))]
    proc = subprocess.Popen([*SASLKIT, "serve", subcommand, *args, *defaults], stdout=subprocess.PIPE,
                            stderr=log_fh, stdin=subprocess.DEVNULL, text=True, env=ENV)
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if readable else ""
    m = ready.fullmatch(line.strip())
    if m is None:
        terminate(proc, timeout=5)
        log_fh.close()
        pytest.fail(f"no ready line from saslkit serve {subcommand} (got {line!r}): {log.read_text()}")
    return proc, m, log_fh


class ServerProcess:
    """``saslkit serve <protocol>`` as a subprocess on a free loopback port; stderr goes to a log file.

    Subclasses set ``protocol`` (``smtp`` or ``imap``) and ``log_prefix`` (the log file's name start).
    The auth penalty is off (the tests fail logins on purpose) unless ``extra`` gives ``--auth-penalty``.
    """

    protocol: ClassVar[str]
    log_prefix: ClassVar[str]

    def __init__(self, db: Path, *extra: str) -> None:
        self.db = db
        self.log = db.parent / f"{self.log_prefix}-{'-'.join(a.strip('-') for a in extra) or 'starttls'}.log"
        self.proc, m, self._log_fh = start_serve(self.protocol, "--listen", "127.0.0.1:0", "--db", str(db), *extra,
                                                 log=self.log)
        self.address = f"{m.group(1)}:{m.group(2)}"
        self.port = int(m.group(2))

    @property
    def certificate(self) -> Path:
        return self.db.parent / "saslkit-tls.crt"

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        code = terminate(self.proc)
        self._log_fh.close()
        return code


def assert_clean_exit(server: ServerProcess, secrets: Iterable[str]) -> None:
    """Stop ``server``: it must exit 0 on SIGTERM, log authentications and never show a secret."""
    assert server.stop() == 0, (
        f"saslkit serve {server.protocol} did not exit cleanly on SIGTERM: {server.log.read_text()}"
    )
    log = server.log.read_text()
    assert "auth ok" in log or "auth failed" in log  # it logs authentications ...
    for secret in secrets:
        assert secret not in log  # ... never secrets


def run_client(
    protocol: str, server: ServerProcess | str, mech: str, secret: str, *extra: str, user: str = "alice",
    trust: Sequence[str] | None = None, stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``saslkit client <protocol>`` with ``-v``; trusts the server's own certificate unless ``trust``
    says otherwise."""
    if isinstance(server, ServerProcess):
        address, default_trust = server.address, ["--cafile", str(server.certificate)]
    else:
        address, default_trust = server, []
    return saslkit_run("client", protocol, address, "--mech", mech, "--user", user, "-v",
                       *(default_trust if trust is None else trust), *extra,
                       stdin=secret + "\n" if stdin is None else stdin)


def token_id(token: str) -> str:
    """The id ``saslkit token revoke`` takes: the middle of ``sk1.<id>.<mac>``, or a JWT's ``jti``."""
    if token.startswith("sk1."):
        return token.split(".")[1]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


# --------------------------------------------------------------------------- stores that fail


class DownUserStore:
    """A credential store that cannot be reached: every lookup raises TemporaryFailure."""

    default_iterations = 4096

    def get_user(self, username: str) -> None:
        raise TemporaryFailure("user store unreachable")


class DownTokenStore:
    """A TokenStore whose backend is down: every method raises TemporaryFailure."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def down(*args: object, **kwargs: object) -> Any:
            raise TemporaryFailure(f"token store unreachable ({name})")

        return down


# --------------------------------------------------------------------------- toy mechanisms

SEEN: list[bytes | None] = []  # what the ECHO mechanism was handed, in order


class EchoServer:
    """Client-first toy: records each response; no initial response gets an empty challenge."""

    name = "ECHO"

    def __init__(self, ctx: object) -> None:
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def step(self, response: bytes | None) -> ServerStep:
        SEEN.append(response)
        if response is None:
            return Challenge(b"")
        self._done = True
        if response == b"fail":
            return Failure("authentication-failed", "told to fail")
        return Success("alice", mechanism="ECHO")


class ServerFirstServer:
    """Server-first toy (like CRAM-MD5): an initial response is a protocol error (a 501 in SMTP, RFC 4954 §4;
    a tagged BAD in IMAP).  ``host`` names the server in its challenge."""

    name = "X-SFIRST"
    server_first = True
    host: ClassVar[str] = "foo.com"

    def __init__(self, ctx: object) -> None:
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def step(self, response: bytes | None) -> ServerStep:
        if response is None:
            return Challenge(f"<1896.697170952@{self.host}>".encode())
        self._done = True
        return Success("alice", mechanism="X-SFIRST")


def _no_client(creds: ClientCredentials) -> Any:
    raise NotImplementedError


def toy_registry(host: str = "foo.com") -> Registry:
    """The default registry plus ECHO and X-SFIRST (whose challenge names ``host``)."""
    server_first = type("ServerFirstServer", (ServerFirstServer,), {"host": host})
    reg = default_registry()
    reg.register(MechanismInfo("ECHO", EchoServer, _no_client, strength=1))
    reg.register(MechanismInfo("X-SFIRST", server_first, _no_client, strength=1))
    return reg


class NamedServer:
    """Client-first toy for the auth penalty: ``user:ok`` logs ``user`` in; ``user:<anything else>`` fails
    naming ``user`` in ``Failure.authcid``; ``:x`` fails without a name."""

    name = "X-NAMED"

    def __init__(self, ctx: object) -> None:
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def step(self, response: bytes | None) -> ServerStep:
        if response is None:
            return Challenge(b"")
        self._done = True
        user, _, password = response.decode("utf-8", "replace").partition(":")
        if password == "ok" and user:
            return Success(user, mechanism="X-NAMED")
        return Failure("authentication-failed", "wrong", authcid=user or None)


def named_registry() -> Registry:
    """The default registry plus X-NAMED."""
    reg = default_registry()
    reg.register(MechanismInfo("X-NAMED", NamedServer, _no_client, strength=1))
    return reg
