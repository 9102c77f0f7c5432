"""Can a peer tell an unknown name from a real user?  Server work and visible parameters.

Issue 8 item 6 (RFC 5802 §9, RFC 4422 §3.6).  One user store (SQLite by
default, as in production) holds two populations:

* *default* users, as ``saslkit user add`` makes them: argon2id (the library's
  parameters) and SCRAM-SHA-1/-256/-512 at the store's default iteration count
  with one 16-octet salt;
* *imported* users, from ``gsasl --mkpasswd`` style lines read with
  ``ScramCredential.parse`` (what ``saslkit user import`` does): SCRAM-SHA-1 and
  SCRAM-SHA-256 only, 4096 iterations, a 12-octet salt per hash, no argon2 hash.

Unknown names are shown a profile drawn per name from that population
(``saslkit.unknown_users``); the names timed here are picked so that half draw
each profile.  For each mechanism and population the server side of a failed
login is timed for a known user (wrong password) and an unknown name:

* PLAIN: ``PlainServer.step`` (argon2 or one PBKDF2: the whole cost);
* SCRAM-SHA-256: ``ScramServer`` client-first -> server-first, client-final ->
  ``e=invalid-proof`` (client messages precomputed with fixed nonces).

Server CPU is measured in process with ``time.process_time`` (all threads:
argon2 runs lanes in threads) and wall time with ``time.perf_counter``, over
many rounds with known and unknown interleaved in each round, garbage
collection off.  The table shows per-operation medians and the ratio
unknown/known of the medians (the goal is 0.9-1.1).  A second table shows
what server-first shows (``s=`` length, ``i=``, salts shared or not) for every
name and SCRAM hash.

    python benchmarks/bench_enumeration.py            # about 2 minutes on 2 cores
    python benchmarks/bench_enumeration.py --quick    # a few seconds per row
    python benchmarks/bench_enumeration.py --store memory --json

Makes no assertion about the numbers.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Measure the checkout this script lives in, even if another saslkit is installed.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from saslkit import (  # noqa: E402
    Challenge,
    ClientCredentials,
    Failure,
    MemoryUserStore,
    ScramCredential,
    ServerContext,
    UserRecord,
    make_user,
)
from saslkit.credentials import SCRAM_HASHES, CredentialProfile, UserStore  # noqa: E402
from saslkit.mechanisms.plain import PlainServer  # noqa: E402
from saslkit.mechanisms.scram import ScramClient, ScramServer  # noqa: E402
from saslkit.stores.sqlite import SQLiteUserStore  # noqa: E402
from saslkit.unknown_users import virtual_profile  # noqa: E402

SECRET = b"bench-enumeration-secret-0123456789"
PASSWORD = "correct horse battery staple"
WRONG = "wrong password"
C_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
S_NONCE = "3rfcNHYJY1ZVvWVs7j"


def gsasl_lines(password: str, hashes: tuple[str, ...] = ("SHA-1", "SHA-256")) -> list[str]:
    """What ``gsasl --mkpasswd --mechanism SCRAM-SHA-256`` prints: 4096 iterations, 12-octet salt."""
    return [ScramCredential.derive(h, password, secrets.token_bytes(12), 4096).to_dovecot() for h in hashes]


def build_store(kind: str, directory: Path, per_population: int) -> tuple[UserStore, list[str], list[str]]:
    default = [f"alice{i}" for i in range(per_population)]
    imported = [f"bob{i}" for i in range(per_population)]
    records = [make_user(name, PASSWORD) for name in default]
    records += [
        UserRecord(name, {c.hash_name: c for c in map(ScramCredential.parse, gsasl_lines(PASSWORD))})
        for name in imported
    ]
    if kind == "memory":
        return MemoryUserStore(records), default, imported
    store = SQLiteUserStore(directory / "users.db")
    for record in records:
        store.put_user(record)
    return store, default, imported


def unknown_names(store: UserStore, profile: CredentialProfile, count: int) -> list[str]:
    """Names not in the store whose drawn profile is ``profile``."""
    out = []
    i = 0
    while len(out) < count:
        name = f"ghost{i}"
        i += 1
        if virtual_profile(store, SECRET, name) == profile:
            out.append(name)
    return out


def plain_op(store: UserStore, name: str) -> Callable[[], None]:
    message = f"\0{name}\0{WRONG}".encode()

    def op() -> None:
        result = PlainServer(ServerContext(store, SECRET)).step(message)
        assert isinstance(result, Failure)

    return op


def scram_op(store: UserStore, name: str, mech: str = "SCRAM-SHA-256") -> Callable[[], None]:
    ctx = ServerContext(store, SECRET, nonce_factory=lambda: S_NONCE)
    client = ScramClient(mech, ClientCredentials(name, WRONG, nonce_factory=lambda: C_NONCE))
    first = client.start()
    server_first = ScramServer(mech, ctx).step(first)
    assert isinstance(server_first, Challenge)
    final = client.step(server_first.data)  # the client's PBKDF2: outside the timing

    def op() -> None:
        server = ScramServer(mech, ctx)
        server.step(first)
        result = server.step(final)
        assert isinstance(result, Failure)

    return op


def time_ops(ops: dict[str, list[Callable[[], None]]], per_round: int, rounds: int) -> dict[str, dict[str, float]]:
    """Interleave the sides round by round; per side, the per-operation medians over the rounds."""
    cpu: dict[str, list[float]] = {side: [] for side in ops}
    wall: dict[str, list[float]] = {side: [] for side in ops}
    for side in ops:  # warm-up (caches, profile query, dummy hashes)
        for op in ops[side]:
            op()
    gc.disable()
    try:
        for r in range(rounds):
            order = list(ops) if r % 2 == 0 else list(reversed(ops))
            for side in order:
                names = ops[side]
                c0, w0 = time.process_time(), time.perf_counter()
                for i in range(per_round):
                    names[i % len(names)]()
                c1, w1 = time.process_time(), time.perf_counter()
                cpu[side].append((c1 - c0) / per_round)
                wall[side].append((w1 - w0) / per_round)
    finally:
        gc.enable()
    return {side: {"cpu_ms": statistics.median(cpu[side]) * 1e3, "wall_ms": statistics.median(wall[side]) * 1e3}
            for side in ops}


def visible(store: UserStore, name: str) -> str:
    """What server-first shows for ``name``: per hash s= length and i=, and which salts are equal."""
    shown = []
    salts = []
    for h in SCRAM_HASHES:
        mech = f"SCRAM-{h}"
        challenge = ScramServer(mech, ServerContext(store, SECRET)).step(
            ScramClient(mech, ClientCredentials(name, "x")).start()
        )
        assert isinstance(challenge, Challenge)
        attrs = dict(part.split("=", 1) for part in challenge.data.decode().split(","))
        salt = base64.b64decode(attrs["s"])
        salts.append(salt)
        shown.append(f"{h}:{len(salt)}/{attrs['i']}")
    pattern = "".join("abc"[salts.index(s)] for s in salts)  # "aaa": one salt; "abc": one per hash
    return " ".join(shown) + f" salts={pattern}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run, noisier ratios")
    parser.add_argument("--rounds", type=int, help="timed rounds per row (default 15, quick 5)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--users", type=int, default=4, help="users per population (default 4)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    scale = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        store, default, imported = build_store(args.store, Path(tmp), args.users)
        get = store.get_user
        default_profile = CredentialProfile.of(get(default[0]))  # type: ignore[arg-type]
        imported_profile = CredentialProfile.of(get(imported[0]))  # type: ignore[arg-type]
        ghosts = {
            "default": unknown_names(store, default_profile, args.users),
            "imported": unknown_names(store, imported_profile, args.users),
        }
        known = {"default": default, "imported": imported}
        rows = []
        # (mechanism, population, operations per round): argon2 ~0.1 s, PBKDF2-4096 ~1 ms, SCRAM ~0.1 ms.
        plan = [("PLAIN", "default", 2 * scale), ("PLAIN", "imported", 60 * scale),
                ("SCRAM-SHA-256", "default", 300 * scale), ("SCRAM-SHA-256", "imported", 300 * scale)]
        for mech, population, per_round in plan:
            make = plain_op if mech == "PLAIN" else scram_op
            ops = {
                "known": [make(store, n) for n in known[population]],
                "unknown": [make(store, n) for n in ghosts[population]],
            }
            result = time_ops(ops, per_round, rounds)
            rows.append({
                "mechanism": mech, "population": population, "rounds": rounds, "per_round": per_round,
                "known_cpu_ms": result["known"]["cpu_ms"], "unknown_cpu_ms": result["unknown"]["cpu_ms"],
                "known_wall_ms": result["known"]["wall_ms"], "unknown_wall_ms": result["unknown"]["wall_ms"],
                "ratio_cpu": result["unknown"]["cpu_ms"] / result["known"]["cpu_ms"],
                "ratio_wall": result["unknown"]["wall_ms"] / result["known"]["wall_ms"],
            })
        shown = {name: visible(store, name) for population in ("default", "imported")
                 for name in known[population] + ghosts[population]}
    if args.json:
        print(json.dumps({"store": args.store, "rows": rows, "visible": shown}, indent=2))
        return 0
    print(f"store: {args.store}, {args.users} default + {args.users} imported users; "
          f"{rounds} interleaved rounds, medians per failed login")
    print(f"{'mechanism':<14} {'population':<9} {'known cpu ms':>12} {'unknown cpu ms':>14} {'ratio':>6}"
          f" {'known wall ms':>13} {'unknown wall ms':>15} {'ratio':>6}")
    for r in rows:
        print(f"{r['mechanism']:<14} {r['population']:<9} {r['known_cpu_ms']:>12.4f} {r['unknown_cpu_ms']:>14.4f}"
              f" {r['ratio_cpu']:>6.3f} {r['known_wall_ms']:>13.4f} {r['unknown_wall_ms']:>15.4f}"
              f" {r['ratio_wall']:>6.3f}")
    print()
    print("server-first per name (hash:salt-octets/iterations; salts=aaa one salt, abc one per hash)")
    for population in ("default", "imported"):
        for side, names in (("known", known[population]), ("unknown", ghosts[population])):
            for name in names:
                print(f"  {population:<9} {side:<8} {name:<8} {shown[name]}")
    for population in ("default", "imported"):
        same = {shown[n] for n in known[population]} == {shown[n] for n in ghosts[population]}
        print(f"{population}: known and unknown names show {'the same' if same else 'DIFFERENT'} parameter sets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
