"""``saslkit serve dovecot-auth`` as a process, over its UNIX and TCP sockets: the handshake sent at once,
several ids on one connection (a penalised failure delays only its own reply), malformed input, clients
that vanish, the socket file's mode and lifecycle, SIGTERM."""

from __future__ import annotations

import base64
import re
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mta_fixture import DovecotAuth, make_users
from servers import ENV, SASLKIT

PASSWORD = "pencil 42"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dovecot-auth") / "saslkit.db"
    make_users(path, {"alice": PASSWORD})
    return path


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[DovecotAuth]:
    auth = DovecotAuth(db, f"unix:{db.parent / 'auth.sock'}", "--auth-penalty", "2:8",
                       log=db.parent / "server.log")
    yield auth
    assert auth.stop() == 0
    assert not (db.parent / "auth.sock").exists()
    assert "Traceback" not in auth.log_text() and PASSWORD not in auth.log_text()


class Client:
    """A protocol client over the server's UNIX socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX) if address.startswith("unix:") else socket.socket()
        target: str | tuple[str, int]
        if address.startswith("unix:"):
            target = address[5:]
        else:
            host, port = address.rsplit(":", 1)
            target = (host, int(port))
        self.sock.settimeout(20)
        self.sock.connect(target)
        self.file = self.sock.makefile("rb")

    def read_handshake(self) -> list[str]:
        lines = []
        while not lines or lines[-1] != "DONE":
            lines.append(self.readline())
        return lines

    def readline(self) -> str:
        return self.file.readline().decode().rstrip("\n")

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\n" for line in lines).encode())

    def at_eof(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def plain(password: str) -> str:
    return base64.b64encode(f"\0alice\0{password}".encode()).decode()


def test_handshake_is_sent_before_the_client_speaks(server: DovecotAuth) -> None:
    client = Client(server.address)
    try:
        lines = client.read_handshake()  # nothing sent yet: Exim reads up to DONE first
        assert lines[0] == "VERSION\t1\t2"
        assert lines[lines.index(next(x for x in lines if x.startswith("SPID")))] == f"SPID\t{server.proc.pid}"
        assert all(x.startswith("MECH\t") for x in lines[1:lines.index(f"SPID\t{server.proc.pid}")])
        assert re.fullmatch(r"COOKIE\t[0-9a-f]{32}", lines[-2]) and lines[-3].startswith("CUID\t")
        assert "MECH\tPLAIN\tplaintext" in lines and "MECH\tSCRAM-SHA-256\tmutual-auth" in lines
    finally:
        client.close()


def test_ids_interleave_and_a_penalised_failure_delays_only_itself(server: DovecotAuth) -> None:
    client = Client(server.address)
    try:
        client.read_handshake()
        client.send("VERSION\t1\t0", "CPID\t1")
        client.send(f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\trip=203.0.113.9\tresp={plain('nope')}")
        assert client.readline() == "FAIL\t1\treason=Authentication failed\tuser=alice"
        # The second failure from that IP waits 2 s; the success behind it on the same connection does not.
        client.send(f"AUTH\t2\tPLAIN\tservice=smtp\tsecured\trip=203.0.113.9\tresp={plain('nope')}",
                    f"AUTH\t3\tPLAIN\tservice=smtp\tsecured\trip=198.51.100.3\tresp={base64.b64encode(b'bob').decode()}",
                    "AUTH\t4\tLOGIN\tservice=smtp\tsecured\trip=198.51.100.3")
        first, second, third = client.readline(), client.readline(), client.readline()
        # 3 (password hashing, in the pool) and 4 (a challenge, inline) in either order, but both before 2.
        assert sorted([first, second]) == ["CONT\t4\tVXNlcm5hbWU6", "FAIL\t3\treason=Authentication failed"]
        assert third == "FAIL\t2\treason=Authentication failed\tuser=alice"
        client.send(f"CONT\t4\t{base64.b64encode(b'alice').decode()}")
        assert client.readline() == "CONT\t4\tUGFzc3dvcmQ6"
        client.send(f"CONT\t4\t{base64.b64encode(PASSWORD.encode()).decode()}")
        assert client.readline().startswith("OK\t4\tuser=alice")
    finally:
        client.close()


@pytest.mark.parametrize("payload", [
    b"GARBAGE\n",
    b"VERSION\t1\t0\n" + b"A" * 20000 + b"\n",
    b"VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=\xff\xfe\n",
    b"VERSION\t1\t0\nCPID\t1\nNOOP\n",
])
def test_malformed_input_closes_only_that_connection(server: DovecotAuth, payload: bytes) -> None:
    bad, good = Client(server.address), Client(server.address)
    try:
        bad.read_handshake()
        bad.sock.sendall(payload)
        assert bad.at_eof()
        good.read_handshake()
        good.send("VERSION\t1\t0", f"AUTH\t9\tPLAIN\tservice=smtp\tsecured\tresp={plain(PASSWORD)}")
        assert good.readline() == "OK\t9\tuser=alice"
    finally:
        bad.close()
        good.close()


def test_a_client_vanishing_mid_exchange_harms_nothing(server: DovecotAuth) -> None:
    for _ in range(3):
        gone = Client(server.address)
        gone.read_handshake()
        gone.send("VERSION\t1\t0", "AUTH\t1\tSCRAM-SHA-256\tservice=smtp\tsecured\tresp="
                  + base64.b64encode(b"n,,n=alice,r=abcdefghijklmnop").decode())
        gone.close()  # maybe before, maybe after the server's first message
    client = Client(server.address)
    try:
        client.read_handshake()
        client.send("VERSION\t1\t0", f"AUTH\t1\tPLAIN\tservice=imap\tsecured\tresp={plain(PASSWORD)}")
        assert client.readline() == "OK\t1\tuser=alice"
    finally:
        client.close()
    assert "Traceback" not in server.log_text()


def test_socket_mode_group_stale_and_live_sockets(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    # A stale socket (its server is gone) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    auth = DovecotAuth(db, f"unix:{path}", "--socket-mode", "0600", log=tmp_path / "a.log")
    try:
        assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600
        # A live one is refused: a second server exits 1 and leaves the first one's socket alone.
        second = subprocess.run([*SASLKIT, "serve", "dovecot-auth", "--listen", f"unix:{path}", "--db", str(db)],
                                capture_output=True, text=True, env=ENV, timeout=60, check=False)
        assert second.returncode == 1 and "in use by a running server" in second.stderr
        client = Client(auth.address)
        assert client.read_handshake()[-1] == "DONE"
        client.close()
    finally:
        assert auth.stop() == 0
    assert not path.exists()
    default = DovecotAuth(db, f"unix:{path}", log=tmp_path / "b.log")
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    finally:
        default.stop()


def test_refuses_to_replace_a_regular_file(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_text("keep me")
    r = subprocess.run([*SASLKIT, "serve", "dovecot-auth", "--listen", f"unix:{path}", "--db", str(db)],
                       capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert r.returncode == 1 and "is not a socket" in r.stderr and "Traceback" not in r.stderr
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("argv, message", [
    (["--listen", "nowhere"], "expected unix:PATH or HOST:PORT"),
    (["--socket-mode", "999"], "octal file mode"),
    (["--mechanisms", "NOPE"], "unknown SASL mechanism"),
    (["--auth-penalty", "x"], "BASE:CAP"),
    (["--socket-group", "no-such-group-here", "--listen", "unix:/tmp/saslkit-test-nogroup.sock"], "no such group"),
])
def test_bad_arguments_are_one_line_errors(db: Path, argv: list[str], message: str) -> None:
    r = subprocess.run([*SASLKIT, "serve", "dovecot-auth", "--db", str(db), *argv], capture_output=True, text=True,
                       env=ENV, timeout=60, check=False)
    assert r.returncode in (1, 2) and message in r.stderr and "Traceback" not in r.stderr


def test_tcp_listener(db: Path, tmp_path: Path) -> None:
    auth = DovecotAuth(db, "127.0.0.1:0", log=tmp_path / "tcp.log")
    try:
        client = Client(auth.address)
        client.read_handshake()
        client.send("VERSION\t1\t0", f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\tresp={plain(PASSWORD)}")
        assert client.readline() == "OK\t1\tuser=alice"
        client.close()
    finally:
        assert auth.stop() == 0


def test_cli_choices_are_the_enums_values() -> None:
    """``--temp-fail`` and ``--handshake`` offer exactly the values the library's enums take."""
    import argparse

    from saslkit.cli import build_parser
    from saslkit.dovecot.session import HandshakeTiming, TempFailMode

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = next(a for a in sub.choices["serve"]._actions if isinstance(a, argparse._SubParsersAction))
    options = {o: a for a in serve.choices["dovecot-auth"]._actions for o in a.option_strings}
    assert set(options["--temp-fail"].choices) == {m.value for m in TempFailMode}
    assert set(options["--handshake"].choices) == {m.value for m in HandshakeTiming}
