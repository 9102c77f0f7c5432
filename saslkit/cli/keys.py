"""``saslkit keys init|rotate|list|retire``: the key ring."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..keys import KeyRing
from ._common import EXIT_OK, CliError, Subparsers, format_time, keyring, keys_path, write_line


def cmd_keys(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    path = keys_path(args)
    if args.command == "init":
        if path.exists():
            raise CliError(f"key ring {path} already exists")
        KeyRing.open(path)
        return EXIT_OK
    ring = keyring(args)
    if args.command == "rotate":
        key = ring.add(args.kind)
        ring.save()
        write_line(stdout, key.id)
    elif args.command == "retire":
        ring.retire(args.id)
        ring.save()
    else:
        for key in sorted(ring.keys, key=lambda k: (k.kind, k.created)):
            current = key.retired is None and ring.current(key.kind).id == key.id
            state = "retired " + format_time(key.retired) if key.retired else ("current" if current else "verifying")
            write_line(stdout, f"{key.id}\t{key.kind}\t{format_time(key.created)}\t{state}")
    return EXIT_OK


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``keys`` commands."""
    keys = sub.add_parser("keys", help="manage the key ring").add_subparsers(dest="command", required=True)
    sp = keys.add_parser("init", parents=[common], help="create the key ring (mode 0600)")
    sp.set_defaults(handler=cmd_keys)
    sp = keys.add_parser("rotate", parents=[common], help="add a new current key of a kind")
    sp.add_argument("kind", nargs="?", default="token", choices=("salt", "token", "ed25519", "hs256"))
    sp.set_defaults(handler=cmd_keys)
    sp = keys.add_parser("list", parents=[common], help="list keys (never their secrets)")
    sp.set_defaults(handler=cmd_keys)
    sp = keys.add_parser("retire", parents=[common], help="stop a key from verifying")
    sp.add_argument("id")
    sp.set_defaults(handler=cmd_keys)
