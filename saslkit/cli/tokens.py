"""``saslkit token mint|list|revoke`` and ``saslkit stoken gen|revoke``: reauthentication and submission tokens."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from ..registry import default_registry
from ..tokens import TokenRecord
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Subparsers,
    format_time,
    named,
    open_users,
    parse_duration,
    parse_timestamp,
    prepared_username,
    token_services,
    write_line,
)


def _token_mechanism(value: str) -> str:
    """``--mech``: one of the registry's token mechanisms (REMEMBERME, HT-*, HT2-*), else exit 2."""
    names = [n for n in default_registry().names() if default_registry().info(n).token_based and n != "STOKEN"]
    if value.upper() not in names:
        raise argparse.ArgumentTypeError(f"not a token mechanism: {value!r} (REMEMBERME, HT-<hash>-<cb> or "
                                         "HT2-<hash>-<cb>, e.g. HT2-SHA-256-NONE)")
    return value.upper()


def cmd_token_mint(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    name = prepared_username(args.user)
    if open_users(args).get_user(name) is None:
        raise CliError(f"no such user {named(args.user, name)}")
    token, record = token_services(args)[0].mint(
        name, args.type, mechanism=args.mech, ttl=args.ttl, label=args.label
    )
    print(f"saslkit: minted {record.type} token {record.id} for {record.user}, expires {format_time(record.expires)}",
          file=sys.stderr)
    write_line(stdout, token)  # alone on the last line, shown once
    return EXIT_OK


def _token_state(record: TokenRecord, now: float) -> str:
    if record.revoked is not None:
        return "revoked"
    return "active" if record.active(now) else "expired"


def cmd_token_list(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    now = time.time()
    records = token_services(args, create_ring=False)[0].list(prepared_username(args.user) if args.user else None)
    write_line(stdout, "id\tuser\ttype\tmechanism\tlabel\tcreated\texpires\tlast-used\tstate")
    for r in records:
        write_line(stdout, "\t".join([r.id, r.user, r.type, r.mechanism or "-", r.label or "-", format_time(r.created),
                                format_time(r.expires), format_time(r.last_used), _token_state(r, now)]))
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    service = token_services(args, create_ring=False)[0]
    if args.id:
        if args.user or args.before is not None:
            raise CliError("give a token id, or --user/--before, not both", EXIT_USAGE)
        if not service.revoke(args.id):
            raise CliError(f"no token {args.id!r}")
        return EXIT_OK
    if args.user:
        count = service.revoke_user(prepared_username(args.user), before=args.before)
    elif args.before is not None:
        count = service.revoke_before(args.before)
    else:
        raise CliError("give a token id, --user or --before", EXIT_USAGE)
    print(f"saslkit: revoked {count} token(s)", file=sys.stderr)
    return EXIT_OK


def cmd_stoken(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    stokens = token_services(args, create_ring=args.command == "gen")[1]
    if args.command == "gen":
        token, expires = stokens.generate(args.kind, args.remote, args.local)
        print(f"saslkit: {args.kind.upper()} submission token, expires {format_time(expires)}", file=sys.stderr)
        write_line(stdout, token)
    else:
        existed = stokens.revoke(args.remote, args.local)
        print(f"saslkit: {'revoked' if existed else 'no permanent token for'} {args.remote} -> {args.local}",
              file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``token`` and ``stoken`` commands."""
    token = sub.add_parser("token", help="reauthentication tokens").add_subparsers(dest="command", required=True)
    sp = token.add_parser("mint", parents=[common], help="mint a token; printed once on the last line")
    sp.add_argument("--user", required=True)
    sp.add_argument("--type", default="RANDOM", type=str.upper, choices=("RANDOM", "JWT"))
    sp.add_argument("--mech", type=_token_mechanism, help="pin the token to this mechanism (e.g. HT2-SHA-256-NONE)")
    sp.add_argument("--ttl", type=parse_duration, help="lifetime, e.g. 3600, 12h, 30d (default: no expiry)")
    sp.add_argument("--label", help="client label")
    sp.set_defaults(handler=cmd_token_mint)
    sp = token.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    sp.add_argument("--user")
    sp.set_defaults(handler=cmd_token_list)
    sp = token.add_parser("revoke", parents=[common], help="revoke a token, a user's tokens or older tokens")
    sp.add_argument("id", nargs="?")
    sp.add_argument("--user")
    sp.add_argument("--before", type=parse_timestamp, help="only tokens created before this time")
    sp.set_defaults(handler=cmd_token_revoke)

    stoken = sub.add_parser("stoken", help="submission tokens").add_subparsers(dest="command", required=True)
    sp = stoken.add_parser("gen", parents=[common], help="generate a TEMP or PERM submission token")
    sp.add_argument("kind", type=str.upper, choices=("TEMP", "PERM"))
    sp.add_argument("remote")
    sp.add_argument("local")
    sp.set_defaults(handler=cmd_stoken)
    sp = stoken.add_parser("revoke", parents=[common], help="revoke the pair's submission tokens")
    sp.add_argument("remote")
    sp.add_argument("local")
    sp.set_defaults(handler=cmd_stoken)
