"""The token commands and token mechanisms through the real ``saslkit`` processes.

``saslkit sasl client`` is piped into ``saslkit sasl server`` for REMEMBERME,
every HT-*/HT2-* name and STOKEN with minted tokens, on the SQLite store and
on Redis; revoked, expired, wrong-user and wrong-mechanism tokens fail.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from saslpipe import SASLKIT, pipe_exchange

from saslkit.cli import main
from saslkit.mechanisms.ht import ht_mechanism_names

CB = {"UNIQ": ("tls-unique", "AAECAwQFBgcICQoL"), "ENDP": ("tls-server-end-point", "E" * 43 + "="),
      "EXPR": ("tls-exporter", "X" * 43 + "=")}


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, io.StringIO(stdin), out)
    return code, out.getvalue()


@pytest.fixture(params=["sqlite", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    e = {"SASLKIT_DB": str(tmp_path / "u.db"), "SASLKIT_KEYS": str(tmp_path / "k.keys")}
    if request.param == "redis":
        e["SASLKIT_STORE"] = request.getfixturevalue("redis_url")
    for user in ("alice", "bob"):
        assert subprocess.run([*SASLKIT, "user", "add", user, "--iterations", "4096"], input="pencil\n", text=True,
                              env={**os.environ, **e}, capture_output=True).returncode == 0
    return e


def cli(env: dict[str, str], *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SASLKIT, *argv], input=stdin, text=True, env={**os.environ, **env},
                          capture_output=True, timeout=60)


def mint(env: dict[str, str], *argv: str) -> str:
    proc = cli(env, "token", "mint", *argv)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1]  # the token, alone on the last line


def pipe(env: dict[str, str], mech: str, user: str, secret: str) -> tuple[int, int, list[str]]:
    extra: list[str] = []
    suffix = mech.rsplit("-", 1)[-1]
    if mech.startswith("HT") and suffix in CB:
        extra = ["--cb-type", CB[suffix][0], "--cb-data", CB[suffix][1]]
    return pipe_exchange(env, mech, user, secret, *extra)


TOKEN_MECHS = ["REMEMBERME", *ht_mechanism_names()]


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_token_mechanisms_succeed_with_minted_token(env: dict[str, str], token_type: str) -> None:
    token = mint(env, "--user", "alice", "--type", token_type)
    for mech in TOKEN_MECHS:
        client_rc, server_rc, transcript = pipe(env, mech, "alice", token)
        assert (client_rc, server_rc) == (0, 0), (mech, transcript)
        assert transcript[-1] == "S: 235 alice"


def test_token_mechanisms_refuse_bad_tokens(env: dict[str, str]) -> None:
    good = mint(env, "--user", "alice")
    revoked = mint(env, "--user", "alice", "--label", "to-revoke")
    listing = cli(env, "token", "list", "--user", "alice").stdout
    revoked_id = next(line.split("\t")[0] for line in listing.splitlines() if "to-revoke" in line)
    assert cli(env, "token", "revoke", revoked_id).returncode == 0
    expired = mint(env, "--user", "alice", "--ttl", "1")
    pinned = mint(env, "--user", "alice", "--mech", "HT2-SHA-256-NONE")
    time.sleep(1.1)
    assert good not in listing and revoked not in listing  # list never prints secrets
    for mech in ("REMEMBERME", "HT-SHA-256-NONE", "HT2-SHA-512-EXPR"):
        for user, token in (("alice", revoked), ("alice", expired), ("bob", good), ("alice", pinned)):
            if mech == "REMEMBERME" and user == "bob":
                continue  # REMEMBERME has no user name: the token alone names alice
            client_rc, server_rc, transcript = pipe(env, mech, user, token)
            assert (client_rc, server_rc) == (1, 1), (mech, user, transcript)
            assert transcript[-1].startswith("S: 535")
    assert pipe(env, "HT2-SHA-256-NONE", "alice", pinned)[:2] == (0, 0)  # the pinned mechanism works


def test_password_change_revokes_tokens(env: dict[str, str]) -> None:
    token = mint(env, "--user", "alice")
    assert pipe(env, "REMEMBERME", "alice", token)[:2] == (0, 0)
    assert cli(env, "user", "passwd", "alice", stdin="newpass\n").returncode == 0
    assert pipe(env, "REMEMBERME", "alice", token)[:2] == (1, 1)


def test_revoke_by_user_and_before(env: dict[str, str]) -> None:
    old = mint(env, "--user", "alice")
    time.sleep(1.1)
    cutoff = str(int(time.time()))  # token times are whole seconds (JWT iat)
    new = mint(env, "--user", "alice")
    assert cli(env, "token", "revoke", "--user", "alice", "--before", cutoff).returncode == 0
    assert pipe(env, "REMEMBERME", "alice", old)[:2] == (1, 1)
    assert pipe(env, "REMEMBERME", "alice", new)[:2] == (0, 0)
    assert cli(env, "token", "revoke", "--user", "alice").returncode == 0
    assert pipe(env, "REMEMBERME", "alice", new)[:2] == (1, 1)


def test_stoken_cli_and_mechanism(env: dict[str, str]) -> None:
    temp = cli(env, "stoken", "gen", "TEMP", "friend@example.com", "alice@foo.com")
    assert temp.returncode == 0
    token = temp.stdout.splitlines()[-1]
    assert pipe(env, "STOKEN", "alice@foo.com", token)[2][-1] == "S: 235 friend@example.com"
    assert pipe(env, "STOKEN", "bob@foo.com", token)[:2] == (1, 1)
    perm = cli(env, "stoken", "gen", "PERM", "friend@example.com", "alice@foo.com").stdout.splitlines()[-1]
    assert cli(env, "stoken", "gen", "PERM", "friend@example.com", "alice@foo.com").stdout.splitlines()[-1] == perm
    assert pipe(env, "STOKEN", "alice@foo.com", perm)[:2] == (0, 0)
    assert cli(env, "stoken", "revoke", "friend@example.com", "alice@foo.com").returncode == 0
    assert cli(env, "stoken", "revoke", "friend@example.com", "alice@foo.com").returncode == 0  # none left: fine
    assert pipe(env, "STOKEN", "alice@foo.com", perm)[:2] == (1, 1)
    assert cli(env, "stoken", "gen", "TEMP", "not-an-address", "alice@foo.com").returncode == 2


def test_keys_commands(tmp_path: Path) -> None:
    keys = str(tmp_path / "ring.keys")
    assert run(["keys", "init", "--keys", keys])[0] == 0
    assert run(["keys", "init", "--keys", keys])[0] == 1  # exists
    assert oct(Path(keys).stat().st_mode & 0o777) == "0o600"
    code, listing = run(["keys", "list", "--keys", keys])
    kinds = [line.split("\t")[1] for line in listing.splitlines()]
    assert code == 0 and sorted(kinds) == ["ed25519", "salt", "token"]
    secret_free = Path(keys).read_text()
    assert all(part not in listing for part in secret_free.split('"') if len(part) > 40)
    code, new_id = run(["keys", "rotate", "token", "--keys", keys])
    old_id = next(line.split("\t")[0] for line in listing.splitlines() if "\ttoken\t" in line)
    assert run(["keys", "retire", old_id, "--keys", keys])[0] == 0
    code, listing = run(["keys", "list", "--keys", keys])
    assert f"{new_id.strip()}\ttoken" in listing and "retired" in listing
    assert run(["keys", "retire", new_id.strip(), "--keys", keys])[0] == 2  # the only active token key


def test_cli_usage_errors(env: dict[str, str]) -> None:
    assert cli(env, "token", "mint", "--user", "nobody").returncode == 1
    assert cli(env, "token", "mint", "--user", "alice", "--type", "OPAQUE").returncode == 2
    assert cli(env, "token", "mint", "--user", "alice", "--ttl", "soon").returncode == 2
    assert cli(env, "token", "revoke").returncode == 2
    assert cli(env, "token", "revoke", "no-such-id").returncode == 1
    assert cli(env, "token", "list", "--store", "memcached://x").returncode == 2


def test_revocation_seen_by_another_process(env: dict[str, str]) -> None:
    """Process 1 (the CLI) revokes; this process's next verification fails (SQLite and Redis)."""
    from saslkit.errors import TokenRejected
    from saslkit.keys import KeyRing
    from saslkit.stores import open_token_store
    from saslkit.tokens import TokenService

    service = TokenService(open_token_store(env.get("SASLKIT_STORE", env["SASLKIT_DB"])),
                           KeyRing.open(env["SASLKIT_KEYS"]))
    token, record = service.mint("alice")
    assert service.verify(token, mechanism="REMEMBERME") == record
    assert cli(env, "token", "revoke", record.id).returncode == 0
    with pytest.raises(TokenRejected):
        service.verify(token, mechanism="REMEMBERME")
