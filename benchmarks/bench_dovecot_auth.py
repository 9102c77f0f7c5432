"""Dovecot auth protocol: ``saslkit serve dovecot-auth`` against Dovecot's own auth service, same run.

Both servers listen on a UNIX socket, pinned to one core, and hold the same credentials: ``alice`` with
SCRAM-SHA-256 stored keys (4096 iterations, Dovecot's ``{SCRAM-SHA-256}`` line exported by ``saslkit user
show --format dovecot``) and ``bob`` with one argon2id hash (saslkit's, which Dovecot verifies as
``{ARGON2ID}``).  The load generator is this process, pinned to the other core: 16 protocol clients, each on
its own connection (as 16 Postfix smtpd processes would be), each running exchanges one after another
(``AUTH``/``CONT``... ``OK``), for SCRAM-SHA-256 (alice) and PLAIN over argon2 (bob).  Server CPU is the
CPU time of every server process (``/proc/PID/stat``, threads that ended and reaped children included:
saslkit's one process; Dovecot's master, auth and auth-worker processes), read before and after each
measurement.  Rounds alternate
between the servers; the table shows medians and the saslkit/Dovecot ratios.

    python benchmarks/bench_dovecot_auth.py [--quick] [--rounds N] [--json]

Needs ``dovecot`` (Debian ``dovecot-core``) and root for Dovecot's own processes; without them saslkit is
measured alone.  Makes no assertion about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import pin, wait_ready

SASLKIT = [sys.executable, "-m", "saslkit"]
PASSWORD = "bench-password-1"
CLIENTS = 16


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of ``pids``: utime+stime of every thread, dead ones included (argon2's lane threads come and
    go), plus cutime+cstime (Dovecot's master reaps auth workers that exit), from ``/proc/PID/stat``."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def session_pids(sid: int) -> list[int]:
    """Every process of session ``sid`` (Dovecot's master started a new session; its children share it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[3]) == sid:
                        pids.append(int(entry))
    return pids


@dataclass
class Server:
    name: str
    socket: str
    pids: list[int]


def run(*args: str, stdin: str = "") -> str:
    r = subprocess.run([*SASLKIT, *args], input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"saslkit {' '.join(args)} failed: {r.stderr}")
    return r.stdout


@contextlib.contextmanager
def servers(base: Path, server_core: int) -> Iterator[list[Server]]:
    db = base / "saslkit.db"
    for user in ("alice", "bob"):
        run("user", "add", user, "--db", str(db), "--iterations", "4096", stdin=PASSWORD + "\n")
    procs: list[subprocess.Popen[str]] = []
    found: list[Server] = []
    try:
        sock = base / "saslkit-auth"
        proc = subprocess.Popen([*SASLKIT, "serve", "dovecot-auth", "--listen", f"unix:{sock}", "--db", str(db),
                                 "--auth-penalty", "off", "--failure-delay", "0", "--socket-mode", "0666"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        wait_ready(proc, re.compile(r"dovecot-auth listening on"), "saslkit serve dovecot-auth")
        pin(proc.pid, server_core)
        found.append(Server("saslkit", str(sock), [proc.pid]))
        dovecot = start_dovecot(base, db, server_core)
        if dovecot is not None:
            procs.append(dovecot[0])
            found.append(dovecot[1])
        yield found
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)


def start_dovecot(base: Path, db: Path, core: int) -> tuple[subprocess.Popen[str], Server] | None:
    exe = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)
    if exe is None or os.geteuid() != 0:
        print("dovecot not installed (or not root): measuring saslkit alone", file=sys.stderr)
        return None
    scram = next(x for x in run("user", "show", "alice", "--db", str(db), "--format", "dovecot").splitlines()
                 if x.startswith("{SCRAM-SHA-256}"))
    from saslkit.stores import SQLiteUserStore

    bob = SQLiteUserStore(db).get_user("bob")  # bob's argon2id hash, as saslkit stored it
    assert bob is not None and bob.password_hash is not None
    passwd = base / "passwd"
    passwd.write_text(f"alice:{scram}\nbob:{{ARGON2ID}}{bob.password_hash}\n")
    passwd.chmod(0o600)
    directory = base / "dovecot"
    directory.mkdir()
    config = directory / "dovecot.conf"
    config.write_text(f"""\
protocols =
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = saslkit-bench-{os.getpid()}
log_path = {directory}/log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain scram-sha-256
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
default_internal_user = root
default_internal_group = root
default_login_user = nobody
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener auth-client {{
    path = {directory}/auth-client
    mode = 0666
  }}
}}
""")
    proc = subprocess.Popen(["taskset", "-c", str(core), exe, "-F", "-c", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while not (directory / "auth-client").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"dovecot did not start: {(directory / 'log').read_text() if (directory / 'log').exists() else ''}",
                  file=sys.stderr)
            return None
        time.sleep(0.1)
    return proc, Server("dovecot", str(directory / "auth-client"), [])


# --------------------------------------------------------------------------- the protocol client


class AuthClient:
    """One connection; exchanges one after another, like a Postfix smtpd process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 1
        self.salted: dict[tuple[bytes, int], bytes] = {}

    @classmethod
    async def connect(cls, path: str) -> AuthClient:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(f"VERSION\t1\t0\nCPID\t{os.getpid()}\n".encode())
        while (await reader.readline()).rstrip(b"\n") != b"DONE":
            pass
        return cls(reader, writer)

    async def request(self, line: str) -> list[str]:
        self.writer.write(line.encode() + b"\n")
        return (await self.reader.readline()).decode().rstrip("\n").split("\t")

    async def plain(self, user: str) -> bool:
        rid, self.next_id = self.next_id, self.next_id + 1
        resp = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        reply = await self.request(f"AUTH\t{rid}\tPLAIN\tservice=smtp\tsecured\trip=127.0.0.1\tresp={resp}")
        return reply[0] == "OK"

    async def scram(self, user: str) -> bool:
        rid, self.next_id = self.next_id, self.next_id + 1
        nonce = secrets.token_urlsafe(18)
        bare = f"n={user},r={nonce}"
        reply = await self.request(f"AUTH\t{rid}\tSCRAM-SHA-256\tservice=smtp\tsecured\trip=127.0.0.1\t"
                                   f"resp={base64.b64encode(('n,,' + bare).encode()).decode()}")
        if reply[0] != "CONT":
            return False
        first = base64.b64decode(reply[2]).decode()
        fields = dict(x.split("=", 1) for x in first.split(","))
        salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
        salted = self.salted.get((salt, iterations))
        if salted is None:
            salted = self.salted[(salt, iterations)] = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt,
                                                                           iterations)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{bare},{first},{without_proof}".encode()
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
        final = base64.b64encode(f"{without_proof},p={proof}".encode()).decode()
        reply = await self.request(f"CONT\t{rid}\t{final}")
        if reply[0] != "CONT":  # v= as a CONT, answered by an empty CONT (no final-resp-ok)
            return False
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expected = hmac.new(server_key, auth_message, "sha256").digest()
        if not hmac.compare_digest(base64.b64decode(reply[2]), b"v=" + base64.b64encode(expected)):
            return False
        return (await self.request(f"CONT\t{rid}\t"))[0] == "OK"

    def close(self) -> None:
        self.writer.close()


async def measure(server: Server, mech: str, per_client: int) -> tuple[float, float, int]:
    """Exchanges per second and server CPU ms per exchange, 16 clients at once."""
    clients = [await AuthClient.connect(server.socket) for _ in range(CLIENTS)]
    pids = server.pids or session_pids(_dovecot_sid(server))
    user, method = ("alice", "scram") if mech == "SCRAM-SHA-256" else ("bob", "plain")
    warm = await asyncio.gather(*(getattr(c, method)(user) for c in clients))
    if not all(warm):
        raise SystemExit(f"{server.name} {mech}: a warm-up exchange failed")

    async def loop(client: AuthClient) -> int:
        return sum([await getattr(client, method)(user) for _ in range(per_client)])

    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    done = sum(await asyncio.gather(*(loop(c) for c in clients)))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
    for client in clients:
        client.close()
    if done != CLIENTS * per_client:
        raise SystemExit(f"{server.name} {mech}: {CLIENTS * per_client - done} exchanges failed")
    return done / elapsed, cpu * 1000 / done, done


def _dovecot_sid(server: Server) -> int:
    """The session of the Dovecot whose socket this is (found through the socket's directory)."""
    base = Path(server.socket).parent
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if b"-F" in cmdline and str(base / "dovecot.conf").encode() in cmdline:
                    return os.getsid(int(entry))
    raise SystemExit("Dovecot's master process not found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few exchanges (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = cores[0], cores[-1]
    os.sched_setaffinity(0, {client_core})
    # Enough exchanges that even the fastest server uses many clock ticks (/proc stat counts in 10 ms units).
    work = {"SCRAM-SHA-256": 4 if args.quick else 400, "PLAIN(argon2)": 1 if args.quick else 4}
    rounds = 1 if args.quick else args.rounds
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="saslkit-bench-dovecot-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        with servers(base, server_core) as running:
            for _ in range(rounds):
                for label, per_client in work.items():
                    mech = "SCRAM-SHA-256" if label.startswith("SCRAM") else "PLAIN"
                    for server in running:
                        rate, cpu_ms, _ = asyncio.run(measure(server, mech, per_client))
                        results.setdefault(label, {}).setdefault(server.name, []).append((rate, cpu_ms))
    table = {label: {name: {"per_second": statistics.median(r for r, _ in runs),
                            "server_cpu_ms": statistics.median(c for _, c in runs)}
                     for name, runs in by_server.items()} for label, by_server in results.items()}
    if args.json:
        print(json.dumps(table, indent=1))
        return
    print(f"{CLIENTS} clients over UNIX sockets, server on core {server_core}, medians of {rounds} round(s)")
    print(f"{'workload':16} {'server':8} {'exchanges/s':>12} {'CPU ms/exchange':>16} {'CPU ratio':>10}")
    for label, by_server in table.items():
        base_cpu = by_server.get("dovecot", {}).get("server_cpu_ms")
        for name, row in by_server.items():
            ratio = f"{row['server_cpu_ms'] / base_cpu:.2f}" if base_cpu else "-"
            print(f"{label:16} {name:8} {row['per_second']:12.1f} {row['server_cpu_ms']:16.2f} {ratio:>10}")


if __name__ == "__main__":
    main()
