"""The ``saslkit`` command: the parser assembled from one module per command group, and the exit codes.

Exit codes: 0 success, 1 failure (authentication failed, not found, store
error), 2 usage error, 3 (``client smtp|imap``) connection or TLS failure.
Secrets are read from stdin (one line, without its newline) or
``--secret-file``, never from argv.

Command groups: :mod:`.users`, :mod:`.sasl`, :mod:`.keys`, :mod:`.tokens`
(``token`` and ``stoken``), :mod:`.serve`, :mod:`.client`, :mod:`.demo`,
:mod:`.vectors`; shared helpers in :mod:`._common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from .. import __version__
from ..errors import SaslError, UsageError
from . import client, demo, keys, sasl, serve, tokens, users, vectors
from ._common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, not_utf8
from .client import EXIT_CONNECTION

__all__ = ["EXIT_CONNECTION", "EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--db", help="user database: path or sqlite:///path (default $SASLKIT_DB or ./saslkit.db)")
    common.add_argument("--keys", help="key ring file (default $SASLKIT_KEYS or beside the database)")
    common.add_argument("--store", help="token store: sqlite:///path or redis://host:port/db "
                        "(default $SASLKIT_STORE or the user database)")

    p = _Parser(prog="saslkit", description="SASL mechanisms for mail servers.")
    p.add_argument("--version", action="version", version=f"saslkit {__version__}")
    sub = p.add_subparsers(dest="area", required=True, parser_class=_Parser)

    for group in (demo, users, sasl, keys, tokens, serve, client, vectors):
        group.add_parsers(sub, common)
    return p


#: Arguments that are file names: any bytes are fine there (surrogateescape round-trips them).
_PATH_ARGUMENTS = frozenset({"db", "keys", "store", "secret_file", "reauth_secret_file", "tls_cert", "tls_key",
                             "deliver_to", "maildir", "cafile", "files"})


def _check_text_arguments(args: argparse.Namespace) -> None:
    """Names, mechanisms and labels must be UTF-8 (they are stored, compared and sent)."""
    for key, value in vars(args).items():
        if key not in _PATH_ARGUMENTS and isinstance(value, str) and not_utf8(value):
            raise CliError(f"argument {key} is not valid UTF-8", EXIT_USAGE)


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        _check_text_arguments(args)
        return handler(args, stdin or sys.stdin, stdout or sys.stdout)
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:  # stdin lines of `sasl server`/`client`...
        print(f"saslkit: the input is not valid UTF-8 ({exc.reason})", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"saslkit: {exc}", file=sys.stderr)
        return exc.code
    except UsageError as exc:
        print(f"saslkit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SaslError as exc:
        print(f"saslkit: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
