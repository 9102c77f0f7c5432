"""``saslkit vectors check [FILE|DIR ...]``: check vector files against the library (no argument: the
vectors shipped with saslkit)."""

from __future__ import annotations

import argparse
from typing import TextIO

from ._common import EXIT_FAIL, EXIT_OK, Subparsers, write_line


def cmd_vectors_check(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    from ..testing.vectors import check_files, shipped_vectors

    results = check_files(args.files or [shipped_vectors()])
    passed = sum(1 for r in results if r.ok)
    for r in results:
        if not r.ok:
            write_line(stdout, f"FAIL {r.file}:{r.id}: {r.detail}")
    write_line(stdout, f"{passed} passed, {len(results) - passed} failed")
    return EXIT_OK if passed == len(results) else EXIT_FAIL


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``vectors`` command."""
    vec = sub.add_parser("vectors", help="test vectors").add_subparsers(dest="command", required=True)
    sp = vec.add_parser("check", help="check vector files against the library")
    sp.add_argument("files", nargs="*", metavar="FILE", help="vector files or directories (default: the shipped set)")
    sp.set_defaults(handler=cmd_vectors_check)
