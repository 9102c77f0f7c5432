"""Issue 8, account side: SASLprep-equal names, private database files, fail-safe revocation, non-UTF-8 input.

* Every store write path (CLI ``user add|passwd|del|show|import``, ``put_user``,
  ``add_user``) compares SASLprep-ed names: ``ali`` U+00AD ``ce`` is ``alice``.
* The SQLite database and its ``-wal``/``-shm`` are 0600 whatever the umask; an
  existing one others can read, or a world-readable TLS key, stops the CLI.
* A credential change revokes tokens first and refuses while the token store
  is down (a real redis-server, stopped).
* Input that is not UTF-8 is a usage error (exit 2), never a traceback.
* SMTP envelope paths and ``AUTH=`` xtext carry no control characters into
  delivered headers; xtext is UTF-8 octets (RFC 3461 §4).
"""

from __future__ import annotations

import base64
import io
import os
import re
import select
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import RedisServer, free_port
from hypothesis import given, settings
from hypothesis import strategies as st

from saslkit.cli import main
from saslkit.credentials import MemoryUserStore, UserRecord, make_user, prepare_username
from saslkit.errors import ProtocolError, StoreError, UsageError
from saslkit.smtp.server import maildir_delivery
from saslkit.smtp.session import Envelope, SmtpConfig, SmtpSession, xtext_decode, xtext_encode
from saslkit.stores import SQLiteTokenStore, SQLiteUserStore

SASLKIT = [sys.executable, "-m", "saslkit"]
# The three spellings of the issue: soft hyphen (B.1, mapped to nothing), zero-width space, fullwidth letters (NFKC).
ALICE_TWINS = ["ali\u00adce", "ali\u200bce", "\uff41\uff4c\uff49\uff43\uff45"]
PLAIN_ALICE_PENCIL = "AUTH PLAIN AGFsaWNlAHBlbmNpbA==\n"


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, io.StringIO(stdin), out)
    return code, out.getvalue()


def cli(*argv: str, stdin: str | bytes = "", env: dict[str, str] | None = None,
        umask: int | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real ``saslkit`` process; stdin as bytes so non-UTF-8 input reaches it unchanged."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", **(env or {})}
    command = [*SASLKIT, *argv]
    if umask is not None:
        command = ["sh", "-c", f'umask {umask:03o}; exec "$@"', "sh", *command]
    return subprocess.run(command, input=data, env=full_env, capture_output=True, timeout=60)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "users.db")
    assert run(["user", "add", "alice", "--db", path, "--iterations", "4096"], "pencil\n")[0] == 0
    return path


def show(db: str, name: str = "alice") -> str:
    code, out = run(["user", "show", name, "--db", db])
    assert code == 0
    return out


# ---------------------------------------------------------------- 1. account overwrite through SASLprep


def test_issue_reproduction_user_add_of_a_saslprep_twin_fails(tmp_path: Path) -> None:
    """``printf 'pencil\\n' | saslkit user add alice`` then ``user add $'ali\\u00adce'``: exit 1, alice unchanged."""
    env = {"SASLKIT_DB": str(tmp_path / "u.db")}
    assert cli("user", "add", "alice", "--iterations", "4096", stdin="pencil\n", env=env).returncode == 0
    before = cli("user", "show", "alice", env=env).stdout
    proc = cli("user", "add", "ali\u00adce", stdin="attacker\n", env=env)
    assert proc.returncode == 1
    assert b"already exists" in proc.stderr and b"Traceback" not in proc.stderr
    assert cli("user", "show", "alice", env=env).stdout == before
    assert cli("user", "list", env=env).stdout == b"alice\n"


@pytest.mark.parametrize("twin", ALICE_TWINS)
def test_user_add_of_a_prepared_duplicate_fails_and_leaves_the_account(db: str, twin: str) -> None:
    assert prepare_username(twin) == "alice"
    before = show(db)
    assert run(["user", "add", twin, "--db", db, "--iterations", "4096"], "attacker\n")[0] == 1
    assert show(db) == before
    assert run(["sasl", "server", "--db", db], PLAIN_ALICE_PENCIL) == (0, "235 alice\n")
    assert run(["user", "list", "--db", db]) == (0, "alice\n")


@pytest.mark.parametrize("twin", ALICE_TWINS)
def test_passwd_show_import_del_use_the_prepared_name(db: str, twin: str) -> None:
    assert show(db, twin) == show(db)
    assert run(["user", "passwd", twin, "--db", db, "--iterations", "4096"], "crayon\n")[0] == 0
    assert run(["sasl", "server", "--db", db], "AUTH PLAIN AGFsaWNlAGNyYXlvbg==\n") == (0, "235 alice\n")
    lines = show(db)
    assert run(["user", "import", twin, "--db", db], lines)[0] == 0
    assert run(["user", "list", "--db", db]) == (0, "alice\n")  # replaced alice, no second account
    assert run(["user", "del", twin, "--db", db])[0] == 0
    assert run(["user", "list", "--db", db]) == (0, "")


def test_token_commands_use_the_prepared_name(db: str) -> None:
    code, _ = run(["token", "mint", "--user", "ali\u00adce", "--db", db])
    assert code == 0
    code, listing = run(["token", "list", "--user", "ali\u200bce", "--db", db])
    assert listing.splitlines()[1].split("\t")[1] == "alice"
    assert run(["token", "revoke", "--user", "\uff41\uff4c\uff49\uff43\uff45", "--db", db])[0] == 0
    assert run(["token", "list", "--db", db])[1].splitlines()[1].endswith("\trevoked")


def test_invalid_user_name_is_a_usage_error(db: str) -> None:
    assert run(["user", "add", "bad\u0007name", "--db", db], "x\n")[0] == 2  # SASLprep: ASCII control
    assert run(["user", "add", "\u00ad", "--db", db], "x\n")[0] == 2  # empty once prepared


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryUserStore | SQLiteUserStore:
    if request.param == "memory":
        return MemoryUserStore()
    return SQLiteUserStore(tmp_path / "u.db")


def test_library_stores_key_users_by_prepared_name(store: MemoryUserStore | SQLiteUserStore) -> None:
    alice = make_user("alice", "pencil", iterations=4096, argon2_hash=False)
    assert store.add_user(alice)
    for twin in ALICE_TWINS:
        attacker = make_user(twin, "attacker", iterations=4096, argon2_hash=False)
        assert attacker.username == "alice"
        assert not store.add_user(attacker)  # exists: refused, nothing touched
        with pytest.raises(UsageError, match="SASLprep"):  # an unprepared record never lands beside alice
            store.put_user(UserRecord(twin, attacker.scram))
    assert store.list_users() == ["alice"]
    record = store.get_user("alice")
    assert record is not None and record.scram == alice.scram
    assert store.delete_user("ali\u00adce") and store.list_users() == []


def test_memory_store_refuses_unprepared_initial_records() -> None:
    with pytest.raises(UsageError):
        MemoryUserStore([UserRecord("ali\u00adce")])


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_racing_adds_one_winner(kind: str, tmp_path: Path) -> None:
    """add_user is one atomic insert: of 8 threads adding the same name, exactly one wins and stays."""
    shared = MemoryUserStore() if kind == "memory" else None
    records = [make_user(ALICE_TWINS[i % 3], f"pw{i}", iterations=4096, argon2_hash=False) for i in range(8)]
    barrier = threading.Barrier(len(records))
    wins: list[int] = []

    def add(i: int) -> None:
        target = shared or SQLiteUserStore(tmp_path / "u.db", timeout=30)
        barrier.wait()
        if target.add_user(records[i]):
            wins.append(i)

    SQLiteUserStore(tmp_path / "u.db")  # the schema, before the race
    threads = [threading.Thread(target=add, args=(i,)) for i in range(len(records))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wins) == 1
    final = (shared or SQLiteUserStore(tmp_path / "u.db")).get_user("alice")
    assert final is not None and final.scram == records[wins[0]].scram


# ---------------------------------------------------------------- 2. private database files


def _modes(*paths: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths}


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_database_and_wal_shm_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """Both stores open, with a write each, so -wal and -shm exist; the modes are read while they do."""
    path = tmp_path / "u.db"
    script = (
        "import os, stat, sys, time\n"
        "from saslkit.credentials import make_user\n"
        "from saslkit.stores import SQLiteTokenStore, SQLiteUserStore\n"
        "from saslkit.tokens.records import TokenRecord\n"
        f"os.umask({umask})\n"
        "users, tokens = SQLiteUserStore(sys.argv[1]), SQLiteTokenStore(sys.argv[1])\n"
        "users.put_user(make_user('alice', 'pencil', iterations=4096, argon2_hash=False))\n"
        "tokens.put(TokenRecord('id', 'alice', 'RANDOM', 'k', time.time(), None, None, None, None, None))\n"
        "for suffix in ('', '-wal', '-shm'):\n"
        "    print(oct(stat.S_IMODE(os.stat(sys.argv[1] + suffix).st_mode)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0o600", "0o600", "0o600"]
    # And through the command line (its own process, its own umask).
    path2 = tmp_path / "cli.db"
    assert cli("user", "add", "bob", "--db", str(path2), stdin="pw\n", umask=umask).returncode == 0
    assert _modes(path2) == {"cli.db": 0o600}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660], ids=oct)
def test_a_database_others_can_read_is_refused(db: str, mode: int) -> None:
    Path(db).chmod(mode)
    proc = cli("user", "list", "--db", db)
    assert proc.returncode == 1
    assert b"chmod 600" in proc.stderr and b"Traceback" not in proc.stderr
    with pytest.raises(StoreError, match="chmod 600"):
        SQLiteUserStore(db)
    with pytest.raises(StoreError, match="chmod 600"):
        SQLiteTokenStore(db)


def test_a_leftover_wal_others_can_read_is_refused(db: str) -> None:
    wal = Path(db + "-wal")
    wal.write_bytes(b"")
    wal.chmod(0o644)
    with pytest.raises(StoreError, match="-wal is accessible by group or others"):
        SQLiteUserStore(db)


def _serve_with_key(tmp_path: Path, key_mode: int) -> tuple[int | None, str]:
    from saslkit.net.server import ensure_certificate

    cert, key, _ = ensure_certificate(tmp_path, "localhost")
    key.chmod(key_mode)
    db = str(tmp_path / "u.db")
    args = [*SASLKIT, "serve", "smtp", "--db", db, "--listen", "127.0.0.1:0", "--tls-cert", str(cert),
            "--tls-key", str(key)]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stderr is not None
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready, "saslkit serve neither listened nor exited within 30 s"
        server.stdout.readline()  # "listening" once started, "" if it exited
        if server.poll() is None:
            server.terminate()
        server.wait(30)
        return server.returncode, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_world_readable_tls_key_is_refused(tmp_path: Path) -> None:
    code, err = _serve_with_key(tmp_path, 0o644)
    assert code == 1 and "chmod 600" in err and "Traceback" not in err


def test_group_readable_tls_key_gets_a_loud_warning(tmp_path: Path) -> None:
    code, err = _serve_with_key(tmp_path, 0o640)
    assert "WARNING: TLS private key" in err and "accessible by its group" in err
    assert "listening" not in err and code != 1  # it started, and stopped on SIGTERM


# ---------------------------------------------------------------- 3. credential changes revoke tokens, fail-safe


def test_memory_store_stamps_changed_with_its_clock() -> None:
    now = [1000.0]
    store = MemoryUserStore(clock=lambda: now[0])
    store.put_user(make_user("alice", "pencil", iterations=4096, argon2_hash=False))
    first = store.get_user("alice")
    assert first is not None and first.changed == 1000.0
    now[0] = 2000.5
    store.put_user(make_user("alice", "crayon", iterations=4096, argon2_hash=False))
    second = store.get_user("alice")
    assert second is not None and second.changed == 2000.5
    now[0] = 3000.0
    assert store.add_user(make_user("bob", "pw", iterations=4096, argon2_hash=False))
    bob = store.get_user("bob")
    assert bob is not None and bob.changed == 3000.0


def test_sqlite_store_sets_changed_on_insert_and_update(tmp_path: Path) -> None:
    now = [1000.0]
    store = SQLiteUserStore(tmp_path / "u.db", clock=lambda: now[0])
    assert store.add_user(make_user("alice", "pencil", iterations=4096, argon2_hash=False))
    got = store.get_user("alice")
    assert got is not None and got.changed == 1000.0
    now[0] = 2000.0
    store.put_user(make_user("alice", "crayon", iterations=4096, argon2_hash=False))
    got = store.get_user("alice")
    assert got is not None and got.changed == 2000.0
    now[0] = 3000.0
    assert not store.add_user(make_user("alice", "x", iterations=4096, argon2_hash=False))
    got = store.get_user("alice")
    assert got is not None and got.changed == 2000.0  # a refused add changes nothing


def _token_states(db: str, store: str) -> list[str]:
    code, out = run(["token", "list", "--db", db, "--store", store])
    assert code == 0
    return [line.split("\t")[-1] for line in out.splitlines()[1:]]


def test_user_import_over_an_existing_user_revokes_its_tokens(db: str) -> None:
    assert run(["token", "mint", "--user", "alice", "--db", db])[0] == 0
    assert _token_states(db, db) == ["active"]
    lines = make_user("alice", "crayon", iterations=4096).scram["SHA-256"].to_dovecot()
    assert run(["user", "import", "alice", "--db", db], lines + "\n")[0] == 0
    assert _token_states(db, db) == ["revoked"]


ChangeCommand = Callable[[str, str], tuple[int, str]]
CHANGES: dict[str, tuple[list[str], str]] = {
    "passwd": (["user", "passwd", "alice", "--iterations", "4096"], "crayon\n"),
    "del": (["user", "del", "alice"], ""),
    "import": (["user", "import", "alice"],
               make_user("alice", "crayon", iterations=4096).scram["SHA-256"].to_dovecot() + "\n"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_credential_change_refused_while_redis_is_down(
    db: str, start_redis: Callable[..., RedisServer], change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Revoke first: with the token store stopped, exit 1, user untouched; back up, the change revokes."""
    redis = start_redis()
    assert run(["token", "mint", "--user", "alice", "--db", db, "--store", redis.url])[0] == 0
    before = show(db)
    redis.stop()
    argv, stdin = CHANGES[change]
    capsys.readouterr()
    assert run([*argv, "--db", db, "--store", redis.url], stdin)[0] == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert show(db) == before
    assert run(["sasl", "server", "--db", db], PLAIN_ALICE_PENCIL) == (0, "235 alice\n")
    # Redis back (empty: no persistence): the same change now goes through.
    redis.start()
    assert run(["token", "mint", "--user", "alice", "--db", db, "--store", redis.url])[0] == 0
    assert run([*argv, "--db", db, "--store", redis.url], stdin)[0] == 0
    assert _token_states(db, redis.url) == ["revoked"]


def test_credential_change_refused_when_redis_never_listened(db: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    before = show(db)
    for argv, stdin in CHANGES.values():
        proc = cli(*argv, "--db", db, "--store", url, stdin=stdin)
        assert proc.returncode == 1, proc.stderr
        assert b"nothing was changed" in proc.stderr and b"Traceback" not in proc.stderr
    assert show(db) == before


# ---------------------------------------------------------------- 4a. non-UTF-8 input


@pytest.mark.parametrize(
    "argv",
    [
        ["user", "add", "bob"],
        ["user", "passwd", "alice"],
        ["user", "import", "bob"],
        ["sasl", "client", "--mech", "PLAIN", "--user", "alice"],
        ["client", "smtp", "127.0.0.1:1", "--mech", "PLAIN", "--user", "alice"],
    ],
    ids=" ".join,
)
def test_non_utf8_stdin_is_a_usage_error(db: str, argv: list[str]) -> None:
    proc = cli(*argv, "--db", db, stdin=b"\xff\xfe\n") if argv[0] != "client" else cli(*argv, stdin=b"\xff\xfe\n")
    assert proc.returncode == 2, proc.stderr
    assert b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr


def test_non_utf8_exchange_line_is_a_usage_error(db: str) -> None:
    proc = cli("sasl", "server", "--db", db, stdin=b"AUTH PLAIN\n\xff\xfe\n")
    assert proc.returncode == 2 and b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [["token", "mint", "--user"], ["token", "list", "--user"], ["user", "add"]])
def test_non_utf8_argument_is_a_usage_error(db: str, argv: list[str]) -> None:
    proc = subprocess.run([*SASLKIT, *argv, b"\xff\xfe".decode("utf-8", "surrogateescape"), "--db", db],
                          input=b"pw\n", capture_output=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr


def test_surrogate_escaped_stdin_is_a_usage_error(db: str) -> None:
    """Under the C locale Python keeps bad bytes as surrogates (surrogateescape): still refused."""
    proc = cli("user", "add", "bob", "--db", db, stdin=b"\xff\xfe\n", env={"PYTHONIOENCODING": "utf-8:surrogateescape"})
    assert proc.returncode == 2 and b"not valid UTF-8" in proc.stderr


# ---------------------------------------------------------------- 4b. control characters in envelope paths

USERS = MemoryUserStore([make_user("alice", "pencil", iterations=4096, argon2_hash=False)])
PLAIN_LINE = b"AUTH PLAIN " + base64.b64encode(b"\0alice\0pencil")
# C0 controls (NUL, SOH, ESC, bare CR, bare LF), DEL and a C1 control (NEL).
CONTROLS = ["\x00", "\x01", "\x1b", "\r", "\n", "\x7f", "\x85"]


def smtp_session(delivered: list[Envelope], **config: Any) -> SmtpSession:
    session = SmtpSession(SmtpConfig(hostname="mx.example", failure_delay=0, **config), USERS, b"k" * 32,
                          tls=True, deliver=lambda e: delivered.append(e) or "id", peer="192.0.2.1")
    assert session.receive_line(b"EHLO client.example").lines[0].startswith("250")
    assert session.receive_line(PLAIN_LINE).lines[0].startswith("235")
    return session


def reply(session: SmtpSession, line: str) -> str:
    return session.receive_line(line.encode("utf-8") + b"\r\n").lines[0]


@pytest.mark.parametrize("ctl", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_paths_with_control_characters_are_refused(ctl: str) -> None:
    """RFC 5321 §4.1.2: a path has no controls; 501 5.1.7 (sender) / 501 5.1.3 (recipient), and nothing delivered."""
    delivered: list[Envelope] = []
    session = smtp_session(delivered)
    assert reply(session, f"MAIL FROM:<ev{ctl}il@example.com>").startswith("501 5.1.7")
    assert reply(session, "MAIL FROM:<good@example.com>").startswith("250 2.1.0")
    assert reply(session, f"RCPT TO:<bo{ctl}b@example.com>").startswith("501 5.1.3")
    assert reply(session, "RCPT TO:<bob@example.com>").startswith("250 2.1.5")
    assert reply(session, "DATA").startswith("354")
    for line in (b"Subject: x", b"", b"body", b"."):
        last = session.receive_line(line + b"\r\n")
    assert last.lines[0].startswith("250")
    assert [(e.mail_from, e.recipients) for e in delivered] == [("good@example.com", ["bob@example.com"])]


def test_parameters_with_control_characters_are_refused() -> None:
    session = smtp_session([])
    assert reply(session, "MAIL FROM:<a@example.com> BODY=8BIT\x00MIME").startswith("501 5.5.4")
    assert reply(session, "MAIL FROM:<a@example.com> BODY=8BITMIME").startswith("250")


def test_maildir_delivery_never_writes_a_control_character_into_a_header(tmp_path: Path) -> None:
    """Defence in depth: whatever envelope a caller builds, the headers stay two lines without controls."""
    deliver = maildir_delivery(tmp_path / "Maildir")
    envelope = Envelope("evil@example.com>\r\nX-Injected: yes\r\n\r\n<x", None,
                        recipients=["bob\x00@example.com", "carol@example.com\nBcc: eve", "d\x85\x7f@example.com"],
                        data=b"Subject: hi\r\n\r\nbody\r\n")
    key = deliver(envelope)
    raw = (tmp_path / "Maildir" / "new" / key).read_bytes()
    head, _, rest = raw.partition(b"Subject: hi\r\n")
    assert rest == b"\r\nbody\r\n"
    lines = head.split(b"\r\n")
    assert len(lines) == 3 and lines[2] == b"" and lines[0].startswith(b"Return-Path: <evil@example.com>")
    assert lines[1].startswith(b"X-Original-To: bob\\x00@example.com, ")
    for line in lines[:2]:
        assert not re.search(rb"[\x00-\x1f\x7f]", line)
        assert not re.search("[\x80-\x9f]", line.decode("utf-8"))


# ---------------------------------------------------------------- 4c. xtext (RFC 3461 §4) is UTF-8 octets, no controls


@pytest.mark.parametrize(("text", "xtext"), [
    ("e=mc2@example.com", "e+3Dmc2@example.com"),
    ("caf\u00e9@example.com", "caf+C3+A9@example.com"),
    ("\u20ac@example.com", "+E2+82+AC@example.com"),
    ("\U0001f600@example.com", "+F0+9F+98+80@example.com"),
    ("a b+c", "a+20b+2Bc"),
])
def test_xtext_encodes_utf8_octets(text: str, xtext: str) -> None:
    assert xtext_encode(text) == xtext
    assert xtext_decode(xtext) == text


@pytest.mark.parametrize("bad", ["a+0D+0AX-Evil:+20y", "+00", "a+0A", "a+0D", "+7F", "+1B", "+C2+85",  # controls
                                 "+FF", "caf+C3", "+C3+28", "+ED+A0+80"])  # not UTF-8 (cut, bad, surrogate)
def test_xtext_decode_refuses_controls_and_invalid_utf8(bad: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        xtext_decode(bad)
    assert exc.value.reason == "invalid-xtext"


def test_auth_parameter_with_crlf_is_refused_by_the_session() -> None:
    delivered: list[Envelope] = []
    session = smtp_session(delivered)
    assert reply(session, "MAIL FROM:<a@example.com> AUTH=a+0D+0AX-Evil:+20y@example.com").startswith("501 5.5.4")
    assert reply(session, "MAIL FROM:<a@example.com> AUTH=caf+C3+A9@example.com").startswith("250")
    assert session._envelope is not None and session._envelope.auth_param == "caf\u00e9@example.com"


@pytest.mark.parametrize("bad", ["a\r\nb", "\x00", "a\x7f", "\x85", "\ud800"])
def test_xtext_encode_refuses_what_decode_refuses(bad: str) -> None:
    with pytest.raises(UsageError):
        xtext_encode(bad)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=60))
def test_xtext_round_trip_any_text(value: str) -> None:
    encoded = xtext_encode(value)
    assert encoded.isascii() and all(0x21 <= ord(c) <= 0x7E for c in encoded) and "=" not in encoded
    assert xtext_decode(encoded) == value


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=80),
                 st.lists(st.integers(0, 255), max_size=30).map(lambda os_: "".join(f"+{o:02X}" for o in os_))))
def test_xtext_decode_fuzz_only_protocol_errors(value: str) -> None:
    try:
        decoded = xtext_decode(value)
    except ProtocolError as exc:
        assert exc.reason == "invalid-xtext"
    else:
        assert not re.search("[\x00-\x1f\x7f-\x9f]", decoded)
        assert xtext_decode(xtext_encode(decoded)) == decoded
