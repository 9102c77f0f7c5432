"""The ``saslkit`` command: user management, stdio SASL, exit codes."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from saslpipe import pipe_exchange

from saslkit.cli import main
from saslkit.credentials import ScramCredential
from saslkit.registry import default_registry

SASLKIT = [sys.executable, "-m", "saslkit.cli"]


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, io.StringIO(stdin), out)
    return code, out.getvalue()


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "users.db")
    assert run(["user", "add", "alice", "--db", path, "--iterations", "4096"], "pencil\n")[0] == 0
    return path


def test_user_add_list_show_del(db: str) -> None:
    assert run(["user", "list", "--db", db]) == (0, "alice\n")
    code, out = run(["user", "show", "alice", "--db", db, "--format", "dovecot"])
    lines = out.splitlines()
    assert code == 0 and [line.split("}")[0] for line in lines] == [
        "{SCRAM-SHA-1", "{SCRAM-SHA-256", "{SCRAM-SHA-512"
    ]
    cred = ScramCredential.parse(lines[1])
    salt = cred.salt
    assert cred == ScramCredential.derive("SHA-256", "pencil", salt, 4096)
    code, out = run(["user", "show", "alice", "--db", db, "--format", "rfc5803"])
    assert out.splitlines()[1] == cred.to_rfc5803()
    assert ScramCredential.parse(out.splitlines()[1]) == cred
    assert run(["user", "del", "alice", "--db", db])[0] == 0
    assert run(["user", "del", "alice", "--db", db])[0] == 1
    assert run(["user", "list", "--db", db]) == (0, "")


def test_password_is_one_line_without_newline(db: str) -> None:
    code, _ = run(["sasl", "client", "--mech", "PLAIN", "--user", "alice", "--db", db], "pencil\n235 alice\n")
    assert code == 0
    # The stored password is "pencil", not "pencil\n": a PLAIN login with it works.
    code, out = run(["sasl", "server", "--db", db], "AUTH PLAIN AGFsaWNlAHBlbmNpbA==\n")
    assert (code, out) == (0, "235 alice\n")


def test_user_errors_and_exit_codes(db: str, tmp_path: Path) -> None:
    assert run(["user", "add", "alice", "--db", db], "x\n")[0] == 1  # exists
    assert run(["user", "passwd", "bob", "--db", db], "x\n")[0] == 1  # no such user
    assert run(["user", "add", "bob", "--db", db], "")[0] == 2  # no password on stdin
    assert run(["user", "add", "bob", "--db", db], "\n")[0] == 2  # empty password
    assert run(["user", "show", "nobody", "--db", db])[0] == 1
    with pytest.raises(SystemExit) as exc:
        main(["user", "add", "bob", "--iterations", "12", "--db", db])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["user", "frobnicate"])
    assert exc.value.code == 2
    assert run(["user", "list", "--db", "redis://localhost/0"])[0] == 2


def test_passwd_changes_credentials(db: str) -> None:
    assert run(["user", "passwd", "alice", "--db", db], "newpass\n")[0] == 0
    reply = run(["sasl", "server", "--db", db], "AUTH PLAIN AGFsaWNlAHBlbmNpbA==\n")
    assert reply == (1, "535 authentication-failed\n")


def test_env_database(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SASLKIT_DB", db)
    assert run(["user", "list"]) == (0, "alice\n")
    monkeypatch.setenv("SASLKIT_DB", "sqlite:///" + os.path.abspath(db))
    assert run(["user", "list"]) == (0, "alice\n")


def test_import_dovecot_and_rfc5803(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    line = ScramCredential.derive("SHA-256", "pencil", b"0123456789abcdef", 4096).to_dovecot()
    assert run(["user", "import", "carol", "--db", db], line + "\n")[0] == 0
    assert run(["user", "show", "carol", "--db", db]) == (0, line + "\n")
    # PLAIN verifies against the imported SCRAM keys (no argon2 hash stored).
    assert run(["sasl", "server", "--db", db], "AUTH PLAIN AGNhcm9sAHBlbmNpbA==\n") == (0, "235 carol\n")
    assert run(["user", "import", "dave", "--db", db], "garbage\n")[0] == 1


def test_keyring_permissions_refused(db: str, tmp_path: Path) -> None:
    keys = Path(db).with_suffix(".keys")
    assert run(["sasl", "server", "--db", db], "AUTH PLAIN AGFsaWNlAHBlbmNpbA==\n")[0] == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    keys.chmod(0o644)
    code, _ = run(["sasl", "server", "--db", db], "AUTH PLAIN AGFsaWNlAHBlbmNpbA==\n")
    assert code == 1


def test_every_subcommand_has_help() -> None:
    for argv in (
        [], ["demo"], ["user"], ["user", "add"], ["user", "passwd"], ["user", "del"], ["user", "list"],
        ["user", "show"], ["user", "import"], ["sasl"], ["sasl", "server"], ["sasl", "client"],
        ["vectors"], ["vectors", "check"],
    ):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--help"])
        assert exc.value.code == 0


def test_server_framing_errors(db: str) -> None:
    assert run(["sasl", "server", "--db", db], "AUTH PLAIN ***\n")[1].startswith("501 5.5.2")
    assert run(["sasl", "server", "--db", db], "AUTH NOSUCH\n") == (1, "504 5.5.4 Unrecognized authentication type\n")
    assert run(["sasl", "server", "--db", db], "HELO x\n")[0] == 2
    # No initial response: empty challenge "334 " then the client's data; "*" cancels.
    code, out = run(["sasl", "server", "--db", db], "AUTH PLAIN\n*\n")
    assert out.splitlines()[0] == "334 " and out.splitlines()[1].startswith("501") and code == 1
    code, out = run(["sasl", "server", "--db", db], "AUTH PLAIN\nAGFsaWNlAHBlbmNpbA==\n")
    assert (code, out) == (0, "334 \n235 alice\n")
    # Empty initial response "=" is a (malformed) PLAIN message, not an absent one.
    assert run(["sasl", "server", "--db", db], "AUTH PLAIN =\n") == (1, "535 invalid-encoding\n")


def _pipe(db: str, mech: str, password: str, *extra: str) -> tuple[int, int, list[str]]:
    return pipe_exchange({"SASLKIT_DB": db}, mech, "alice", password, *extra)


PASSWORD_MECHANISMS = [n for n in default_registry().names() if not default_registry().info(n).token_based]


@pytest.mark.parametrize("mech", PASSWORD_MECHANISMS)
def test_client_piped_into_server_every_mechanism(db: str, mech: str) -> None:
    extra = ["--cb-type", "tls-exporter", "--cb-data", "VEhJUyBJUyBGQUtFIENCIERBVEE="] if mech.endswith("-PLUS") else []
    client_rc, server_rc, transcript = _pipe(db, mech, "pencil", *extra)
    assert (client_rc, server_rc) == (0, 0), transcript
    assert transcript[-1] == "S: 235 alice"
    client_rc, server_rc, transcript = _pipe(db, mech, "wrong", *extra)
    assert (client_rc, server_rc) == (1, 1), transcript
    assert transcript[-1].startswith("S: 535")


def test_unknown_user_wire_reply_matches_wrong_password(db: str) -> None:
    """Same salt and iterations on every probe, and the same 535 as a wrong password."""
    import base64

    def first_challenge(user: str) -> str:
        ir = base64.b64encode(f"n,,n={user},r=abcdef".encode()).decode()
        _, out = run(["sasl", "server", "--db", db, "--mech", "SCRAM-SHA-256"], f"AUTH SCRAM-SHA-256 {ir}\n")
        server_first = base64.b64decode(out.split()[1]).decode()
        return server_first.split(",", 1)[1]  # drop r=, keep s=…,i=…

    assert first_challenge("mallory") == first_challenge("mallory")
    assert first_challenge("mallory") != first_challenge("trent")
    real = first_challenge("alice").split(",")
    fake = first_challenge("mallory").split(",")
    assert len(base64.b64decode(real[0][2:])) == len(base64.b64decode(fake[0][2:]))
    assert fake[1] == real[1] == "i=4096"  # drawn from the store's real users (issue 8 item 6), here alice's

    for user, password in (("mallory", "pencil"), ("alice", "wrong")):
        client_rc, server_rc, transcript = _pipe_user(db, user, password)
        assert (client_rc, server_rc) == (1, 1)
        assert transcript[-1] == "S: 535 invalid-proof"


def _pipe_user(db: str, user: str, password: str) -> tuple[int, int, list[str]]:
    """Drive the real ``saslkit sasl server`` process with the library's SCRAM client."""
    import base64

    from saslkit.context import ClientCredentials

    client = default_registry().client("SCRAM-SHA-256", ClientCredentials(user, password))
    proc = subprocess.Popen([*SASLKIT, "sasl", "server"], env=dict(os.environ, SASLKIT_DB=db),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stdout
    first = f"AUTH SCRAM-SHA-256 {base64.b64encode(client.start()).decode()}"
    proc.stdin.write(first + "\n")
    proc.stdin.flush()
    transcript = [f"C: {first}"]
    for line in proc.stdout:
        transcript.append(f"S: {line.rstrip()}")
        if not line.startswith("334 "):
            break
        answer = client.step(base64.b64decode(line[4:].strip()))
        proc.stdin.write(base64.b64encode(answer).decode() + "\n")
        proc.stdin.flush()
    proc.stdin.close()
    client_rc = 1 if transcript[-1].startswith("S: 535") else 0
    return client_rc, proc.wait(timeout=30), transcript
