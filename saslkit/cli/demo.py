"""``saslkit demo``: every mechanism in process, secrets masked."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .._redact import redact
from ..context import ClientCredentials, ServerContext
from ..credentials import make_user
from ..mechanism import Failure, Success
from ..registry import Registry, default_registry
from ..testing.loopback import run_exchange
from ._common import EXIT_FAIL, EXIT_OK, CliError, Subparsers, open_users, token_services, write_line


def cmd_demo(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Create a user in SQLite and run every mechanism in process, secrets masked.

    The database, key ring and token store are temporary (removed at the end) unless ``--db``, ``--keys``
    or ``--store`` (or their environment variables) name them; then the demo token expires in an hour.
    Token mechanisms use a token minted after the SCRAM-SHA-256 login and a
    temporary submission token; -PLUS and HT-*-UNIQ/ENDP/EXPR get random
    stand-in channel-binding data.
    """
    told = any(getattr(args, a) for a in ("db", "keys", "store")) or any(
        os.environ.get(v) for v in ("SASLKIT_DB", "SASLKIT_KEYS", "SASLKIT_STORE"))
    if told:
        return _demo(args, stdout, DEMO_TOKEN_TTL)
    with tempfile.TemporaryDirectory(prefix="saslkit-demo-") as scratch:
        args.db = str(Path(scratch) / "demo.db")
        print("saslkit: demo in a temporary database, removed at the end (give --db to keep it)", file=sys.stderr)
        return _demo(args, stdout, None)


def _demo(args: argparse.Namespace, stdout: TextIO, token_ttl: float | None) -> int:
    users = open_users(args)
    tokens, stokens = token_services(args)
    ring = tokens.keys
    password = secrets.token_urlsafe(12)
    if not users.add_user(make_user(args.user, password, iterations=users.default_iterations)):
        raise CliError(f"user {args.user!r} already exists: give the demo another --user or a new --db")
    write_line(stdout, f"database {getattr(users, 'path', 'db')}: user {args.user!r} created with a random password")
    fake_cb = {"tls-unique": secrets.token_bytes(12), "tls-server-end-point": secrets.token_bytes(32),
               "tls-exporter": secrets.token_bytes(32)}
    registry: Registry = default_registry()
    login = run_exchange(registry.client("SCRAM-SHA-256", ClientCredentials(args.user, password)),
                         registry.server("SCRAM-SHA-256", ServerContext(users, ring.server_secret, tls=True)))[0]
    if not isinstance(login, Success):
        raise CliError(f"demo login failed: {login.reason}")
    token = tokens.mint_after(login, label="saslkit demo", ttl=token_ttl)[0]
    local = f"{args.user}@localhost"
    stoken = stokens.generate("TEMP", "friend@example.net", local)[0]
    write_line(stdout, f"minted a RANDOM token for {args.user} after SCRAM-SHA-256, and a TEMP submission token")
    failures = 0
    for name in registry.names():
        info = registry.info(name)
        cb_type = sorted(info.channel_binding_types or {"tls-exporter"})[0] if info.channel_binding else None
        cb = (cb_type, fake_cb[cb_type]) if cb_type else None
        ctx = ServerContext(users, ring.server_secret, channel_bindings=fake_cb if cb else {}, tls=True,
                            tokens=tokens, stokens=stokens)
        if name == "STOKEN":
            creds = ClientCredentials(local, stoken)
        elif info.token_based:
            creds = ClientCredentials(args.user, token, channel_binding=cb)
        else:
            creds = ClientCredentials(args.user, password, channel_binding=cb)
        write_line(stdout, f"== {name}")

        def show(who: str, data: bytes | None, mech: str = name) -> None:
            write_line(stdout, f"  {who}: {redact(mech, data)}")

        result, _ = run_exchange(registry.client(name, creds), registry.server(name, ctx), on_line=show)
        if isinstance(result, Failure):
            failures += 1
            write_line(stdout, f"  => FAILED: {result.reason}")
        else:
            write_line(stdout, f"  => authenticated as {result.identity}")
    return EXIT_FAIL if failures else EXIT_OK


#: Lifetime of the demo's token when the demo runs on a real database.
DEMO_TOKEN_TTL = 3600.0


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``demo`` command."""
    demo = sub.add_parser("demo", parents=[common], help="run every mechanism in process (secrets masked), "
                          "in a temporary database unless --db/--keys/--store is given")
    demo.add_argument("--user", default="demo", help="user to create (default: demo)")
    demo.set_defaults(handler=cmd_demo)
