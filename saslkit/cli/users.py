"""``saslkit user add|passwd|del|list|show|import``: the user database."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ..credentials import DEFAULT_ITERATIONS, ScramCredential, UserRecord, make_user
from ..errors import StoreError, UsageError
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Subparsers,
    named,
    open_tokens_store,
    open_users,
    parse_iterations,
    prepared_username,
    read_new_password,
    utf8_lines,
    write_line,
)


def _revoke_around(args: argparse.Namespace, name: str, change: Callable[[], object]) -> int:
    """Revoke ``name``'s tokens, make ``change``, then revoke again; return how many went.

    Fail-safe order: if the token store cannot be reached, nothing changes
    (exit 1), so a credential change never leaves a usable token behind.  The
    second pass catches a token minted with the old credentials meanwhile.
    """
    try:
        store = open_tokens_store(args)
        revoked = store.revoke_matching(time.time(), user=name)
    except StoreError as exc:
        raise CliError(f"cannot revoke the tokens of {name!r}, so nothing was changed: {exc}") from exc
    change()
    try:
        revoked += store.revoke_matching(time.time(), user=name)
    except StoreError as exc:
        raise CliError(f"{name!r} changed, but tokens minted meanwhile may remain: {exc}; "
                       f"run `saslkit token revoke --user {name}`") from exc
    return revoked


def cmd_user_add(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """``user add`` (only a new prepared name) and ``user passwd`` (revokes the user's tokens first)."""
    users = open_users(args)
    name = prepared_username(args.name)
    exists = users.get_user(name) is not None
    if args.command == "add" and exists:
        raise CliError(f"user {named(args.name, name)} already exists (use `saslkit user passwd`)")
    if args.command == "passwd" and not exists:
        raise CliError(f"no such user {named(args.name, name)}")
    password = read_new_password(args, stdin)
    iterations = args.iterations or users.default_iterations
    record = make_user(name, password, iterations=iterations)
    if args.command == "add":
        if not users.add_user(record):  # added by someone else since the check: theirs stays
            raise CliError(f"user {named(args.name, name)} already exists (use `saslkit user passwd`)")
        print(f"saslkit: added user {name}", file=sys.stderr)
        return EXIT_OK
    # A password change ends every session the old password opened.
    revoked = _revoke_around(args, name, lambda: users.put_user(record))
    print(f"saslkit: updated user {name}", file=sys.stderr)
    print(f"saslkit: revoked {revoked} token(s) of {name}", file=sys.stderr)
    return EXIT_OK


def cmd_user_del(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    users = open_users(args)
    name = prepared_username(args.name)
    # Also a row stored under the exact unprepared name by older saslkit (delete_user removes both).
    if users.get_user(name) is None and users.get_user(args.name) is None:
        raise CliError(f"no such user {named(args.name, name)}")
    deleted: list[bool] = []
    revoked = _revoke_around(args, name, lambda: deleted.append(users.delete_user(args.name)))
    if not deleted[0]:
        raise CliError(f"no such user {named(args.name, name)}")
    print(f"saslkit: deleted user {name}, revoked {revoked} token(s)", file=sys.stderr)
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    for name in open_users(args).list_users():
        write_line(stdout, name)
    return EXIT_OK


def cmd_user_show(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    name = prepared_username(args.name)
    record = open_users(args).get_user(name)
    if record is None:
        raise CliError(f"no such user {named(args.name, name)}")
    for cred in record.scram.values():
        write_line(stdout, cred.to_dovecot() if args.format == "dovecot" else cred.to_rfc5803())
    return EXIT_OK


def cmd_user_import(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Import SCRAM credentials (Dovecot or RFC 5803 lines) from stdin for one user.

    Over an existing user the tokens are revoked first, as for ``user passwd``.
    """
    name = prepared_username(args.name)
    creds: dict[str, ScramCredential] = {}
    for lineno, line in enumerate(utf8_lines(stdin), 1):
        if not line.strip():
            continue
        try:
            cred = ScramCredential.parse(line)
        except UsageError as exc:
            raise CliError(f"line {lineno}: {exc}") from exc
        creds[cred.hash_name] = cred
    if not creds:
        raise CliError("no credentials on standard input", EXIT_USAGE)
    users = open_users(args)
    old = users.get_user(name)
    record = UserRecord(name, creds, old.password_hash if old and args.keep_password else None)
    if old is None and users.add_user(record):
        print(f"saslkit: imported user {name}", file=sys.stderr)
        return EXIT_OK
    revoked = _revoke_around(args, name, lambda: users.put_user(record))
    print(f"saslkit: replaced the credentials of {name}, revoked {revoked} token(s)", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``user`` commands."""
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="command", required=True)
    for cmd, text in (("add", "add a user (password prompted on a terminal, else one line on stdin)"),
                      ("passwd", "change a password (prompted on a terminal, else stdin)")):
        sp = user.add_parser(cmd, parents=[common], help=text)
        sp.add_argument("name")
        sp.add_argument("--iterations", type=parse_iterations, help=f"SCRAM iterations (default {DEFAULT_ITERATIONS})")
        sp.add_argument("--secret-file", help="read the password from this file instead of stdin")
        sp.set_defaults(handler=cmd_user_add)
    sp = user.add_parser("del", parents=[common], help="delete a user")
    sp.add_argument("name")
    sp.set_defaults(handler=cmd_user_del)
    sp = user.add_parser("list", parents=[common], help="list users")
    sp.set_defaults(handler=cmd_user_list)
    sp = user.add_parser("show", parents=[common], help="print stored SCRAM credentials")
    sp.add_argument("name")
    sp.add_argument("--format", choices=("dovecot", "rfc5803"), default="dovecot")
    sp.set_defaults(handler=cmd_user_show)
    sp = user.add_parser("import", parents=[common], help="import SCRAM credential lines from stdin")
    sp.add_argument("name")
    sp.add_argument("--keep-password", action="store_true", help="keep an existing argon2 hash")
    sp.set_defaults(handler=cmd_user_import)
