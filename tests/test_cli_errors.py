"""The CLI's one-line errors and exit codes (saslkit/cli/__init__.py documents them), which state it names on
stderr, password prompts on a terminal, the demo's temporary store, the key-ring race across processes,
``token mint --mech`` validation and the ``--hostname`` certificate warning."""

from __future__ import annotations

import base64
import os
import pty
import select
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servers import ENV, REPO, SASLKIT, ServerProcess, saslkit_run

from saslkit.keys import KeyRing
from saslkit.net.server import ensure_certificate
from saslkit.stores import SQLiteTokenStore
from saslkit.tokens import SubmissionTokens


def _one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code`` and one ``saslkit: ...`` line last on stderr, no traceback."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(("saslkit: ", "saslkit ")), done.stderr
    return last


@pytest.mark.parametrize("argv", [
    ["serve", "smtp", "--listen", "127.0.0.1:0"], ["token", "list"], ["keys", "init"], ["keys", "list"],
    ["user", "list"], ["token", "mint", "--user", "alice"], ["user", "add", "alice"],
])
def test_database_in_a_missing_directory(tmp_path: Path, argv: list[str]) -> None:
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    line = _one_line_error(saslkit_run(*argv, "--db", str(db), stdin="pencil\n"), 1)
    assert line == f"saslkit: database {db}: directory {db.parent} does not exist"
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("argv", [["keys", "list"], ["token", "list"], ["user", "list"], ["keys", "init"]])
def test_database_that_is_a_directory_creates_nothing(tmp_path: Path, argv: list[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    line = _one_line_error(saslkit_run(*argv, "--db", str(state)), 1)
    assert "is a directory" in line
    assert sorted(tmp_path.iterdir()) == [state] and not any(state.iterdir())  # no state.keys


def test_deliver_to_that_cannot_be_a_maildir(tmp_path: Path) -> None:
    done = saslkit_run("serve", "smtp", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "x.db"),
                       "--deliver-to", "/proc/nope")
    assert "--deliver-to /proc/nope" in _one_line_error(done, 1)


def test_redis_url_with_a_bad_port_creates_no_ring(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    done = saslkit_run("serve", "smtp", "--listen", "127.0.0.1:0", "--db", str(db),
                       "--store", "redis://127.0.0.1:notaport/0")
    assert "invalid Redis URL redis://127.0.0.1:notaport/0" in _one_line_error(done, 2)
    assert not db.with_suffix(".keys").exists()


def test_redis_url_password_is_not_echoed(tmp_path: Path) -> None:
    done = saslkit_run("token", "list", "--db", str(tmp_path / "x.db"), "--store", "redis://:hunter2@127.0.0.1:x/0")
    _one_line_error(done, 2)
    assert "hunter2" not in done.stderr


def test_read_only_commands_never_create_a_key_ring(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    line = _one_line_error(saslkit_run("keys", "list", "--db", str(tmp_path / "x.db"), "--keys", str(typo)), 1)
    assert "does not exist" in line and "keys init" in line
    assert not typo.exists()
    for argv in (["token", "list"], ["token", "revoke", "--user", "alice"], ["stoken", "revoke", "a@b.c", "d@e.f"]):
        assert saslkit_run(*argv, "--db", str(tmp_path / "x.db")).returncode == 0
    assert not (tmp_path / "x.keys").exists()
    for argv in (["keys", "rotate"], ["keys", "retire", "token-1"]):
        assert "does not exist" in _one_line_error(saslkit_run(*argv, "--db", str(tmp_path / "x.db")), 1)
    assert not (tmp_path / "x.keys").exists()


def test_not_found_is_exit_1_for_keys_and_tokens_alike(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    assert saslkit_run("keys", "init", "--db", db).returncode == 0
    assert _one_line_error(saslkit_run("keys", "retire", "nope", "--db", db), 1).startswith("saslkit: no key 'nope'")
    assert _one_line_error(saslkit_run("token", "revoke", "nope", "--db", db), 1) == "saslkit: no token 'nope'"
    assert _one_line_error(saslkit_run("keys", "init", "--db", db), 1).endswith("already exists")


def test_token_mint_mech_must_be_a_token_mechanism(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    assert saslkit_run("user", "add", "alice", "--db", db, "--iterations", "4096", stdin="pencil\n").returncode == 0
    for bad in ("FOO", "SCRAM-SHA-256", "PLAIN", "STOKEN"):
        line = _one_line_error(saslkit_run("token", "mint", "--user", "alice", "--mech", bad, "--db", db), 2)
        assert "not a token mechanism" in line
    done = saslkit_run("token", "mint", "--user", "alice", "--mech", "ht2-sha-256-none", "--db", db)
    assert done.returncode == 0, done.stderr
    listing = saslkit_run("token", "list", "--db", db).stdout
    assert "\tHT2-SHA-256-NONE\t" in listing


def test_commands_name_the_state_they_use(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([*SASLKIT, "user", "add", "alice", "--iterations", "4096"], input="pencil\n",
                          capture_output=True, text=True, env=ENV, cwd=elsewhere, timeout=60, check=False)
    assert done.returncode == 0
    assert f"saslkit: created user database {elsewhere / 'saslkit.db'}" in done.stderr.splitlines()
    done = saslkit_run("token", "mint", "--user", "alice", "--db", str(elsewhere / "saslkit.db"))
    lines = done.stderr.splitlines()
    assert f"saslkit: user database {elsewhere / 'saslkit.db'}" in lines
    assert f"saslkit: token store {elsewhere / 'saslkit.db'}" in lines
    assert f"saslkit: created key ring {elsewhere / 'saslkit.keys'}" in lines


def test_demo_leaves_the_current_directory_untouched(tmp_path: Path) -> None:
    done = subprocess.run([*SASLKIT, "demo"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "temporary database" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_on_a_named_database_mints_an_expiring_token(tmp_path: Path) -> None:
    db = str(tmp_path / "kept.db")
    assert saslkit_run("demo", "--db", db, timeout=300).returncode == 0
    rows = [line.split("\t") for line in saslkit_run("token", "list", "--db", db).stdout.splitlines()[1:]]
    assert rows and all(row[6] != "-" for row in rows)  # an expiry, not "never"


def _stoken_gen(db: Path) -> subprocess.CompletedProcess[str]:
    return saslkit_run("stoken", "gen", "TEMP", "friend@example.net", "alice@example.org", "--db", str(db))


def test_concurrent_first_starts_share_one_key_ring(tmp_path: Path) -> None:
    for trial in range(3):
        state = tmp_path / f"trial{trial}"
        state.mkdir()
        db = state / "x.db"
        with ThreadPoolExecutor(max_workers=8) as pool:
            runs = list(pool.map(_stoken_gen, [db] * 8))
        assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
        assert sum("created key ring" in r.stderr for r in runs) == 1
        assert sorted(p.name for p in state.iterdir() if "keys" in p.name) == ["x.keys"]  # no leftovers
        verifier = SubmissionTokens(SQLiteTokenStore(db), KeyRing.load(db.with_suffix(".keys")))
        for r in runs:  # every process minted with the one ring on disk
            verifier.verify("alice@example.org", r.stdout.strip())


def test_concurrent_keys_init_one_wins(tmp_path: Path) -> None:
    keys = str(tmp_path / "ring.keys")
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(lambda _: saslkit_run("keys", "init", "--keys", keys), range(6)))
    assert sorted(r.returncode for r in runs) == [0, 1, 1, 1, 1, 1]


def _on_terminal(argv: list[str], answers: list[bytes], cwd: Path) -> tuple[int, bytes]:
    """Run saslkit with a pseudo-terminal as its controlling terminal, answering each password prompt once it
    is shown (getpass flushes what was typed ahead of its prompt); killed after 60 s of silence."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "saslkit", *argv], ENV)  # noqa: S606
    seen = b""
    answered = 0
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if answered < len(answers) and seen.count(b"password: ") > answered:
            os.write(fd, answers[answered])
            answered += 1
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen


def test_user_add_prompts_twice_without_echo(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    code, seen = _on_terminal(["user", "add", "jörg", "--db", db, "--iterations", "4096"],
                              [b"s3cret-pw\n", b"s3cret-pw\n"], tmp_path)
    assert code == 0, seen
    assert b"New password:" in seen and b"Retype new password:" in seen
    assert b"s3cret-pw" not in seen  # not echoed
    plain = base64.b64encode("\0jörg\0s3cret-pw".encode()).decode()
    done = saslkit_run("sasl", "server", "--db", db, stdin=f"AUTH PLAIN {plain}\n")
    assert done.stdout.startswith("235")  # the typed password is the one stored


def test_user_passwd_mismatch_changes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    assert saslkit_run("user", "add", "alice", "--db", db, "--iterations", "4096", stdin="pencil\n").returncode == 0
    code, seen = _on_terminal(["user", "passwd", "alice", "--db", db], [b"one\n", b"two\n"], tmp_path)
    assert code == 2 and b"do not match" in seen
    assert saslkit_run("sasl", "server", "--db", db, stdin="AUTH PLAIN AGFsaWNlAHBlbmNpbA==\n").stdout.startswith(
        "235")


class _Smtp(ServerProcess):
    protocol = "smtp"
    log_prefix = "hostname"


def test_hostname_mismatch_with_existing_certificate_is_warned(tmp_path: Path) -> None:
    ensure_certificate(tmp_path, "mail.example.net")
    server = _Smtp(tmp_path / "x.db", "--hostname", "smtp.example.org")
    assert server.stop() == 0
    log = server.log.read_text()
    assert "WARNING: --hostname smtp.example.org but the existing certificate" in log
    assert "mail.example.net" in log
    same = _Smtp(tmp_path / "x.db", "--hostname", "mail.example.net")
    assert same.stop() == 0
    assert "WARNING: --hostname" not in same.log.read_text()


def test_generated_tls_key_is_ignored_by_git() -> None:
    ignored = (REPO / ".gitignore").read_text().split()
    assert "saslkit-tls.key" in ignored
