"""``saslkit keys init|rotate|list|retire``: the key ring."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..keys import KeyRing
from ._common import EXIT_OK, CliError, Subparsers, announce, format_time, keyring, keys_path, write_line


def cmd_keys(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """``init`` creates the ring (exit 1 if one exists); the others need an existing one (exit 1 if none).

    Retiring an unknown key id is "not found" (exit 1, like ``token revoke``); retiring the only active key
    of a kind or rotating the salt key is refused as a usage error (exit 2).
    """
    path = keys_path(args)
    if args.command == "init":
        KeyRing.create(path)
        announce(args, "key ring", path.resolve(), created=True)
        return EXIT_OK
    if args.command == "list":
        ring = keyring(args, create=False)
        for key in sorted(ring.keys, key=lambda k: (k.kind, k.created)):
            current = key.retired is None and ring.current(key.kind).id == key.id
            state = "retired " + format_time(key.retired) if key.retired else ("current" if current else "verifying")
            write_line(stdout, f"{key.id}\t{key.kind}\t{format_time(key.created)}\t{state}")
        return EXIT_OK
    keyring(args, create=False)  # exists, is readable, and is named on stderr
    with KeyRing.locked(path) as ring:
        if args.command == "rotate":
            key = ring.add(args.kind)
            write_line(stdout, key.id)
        else:
            if all(k.id != args.id for k in ring.keys):
                raise CliError(f"no key {args.id!r} in {path}")
            ring.retire(args.id)
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
