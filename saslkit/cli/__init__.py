"""The ``saslkit`` command: the parser assembled from one module per command group, and the exit codes.

Exit codes:

* 0: success;
* 1: failure: authentication failed; not found (no such user, token or key id:
  ``token revoke nope`` and ``keys retire nope`` alike); already exists; a
  store, database, key ring or directory that cannot be used (``--db`` naming a
  directory or a file in a missing directory, ``--deliver-to`` that cannot be a
  Maildir, a key ring that does not exist for a command that only reads it, an
  unreachable store);
* 2: usage error: bad arguments or URLs (``--store redis://host:notaport/0``),
  ``token mint --mech`` that is not a token mechanism, a feature whose optional
  extra is not installed, input that is not UTF-8, an operation the rules
  refuse (retiring the only active key of a kind, rotating the salt key);
* 3 (``client smtp|imap``): connection or TLS failure.

Every error is one line on stderr (``saslkit: ...``), never a traceback.
Commands that touch state say on stderr which user database, key ring and
token store they use (and which they created); read-only commands
(``keys list``, ``token list``, ``token revoke``, ``stoken revoke``) never
create a key ring.  Secrets are read from stdin (one line, without its
newline) or ``--secret-file``, never from argv; ``user add``/``passwd`` on a
terminal prompt twice with ``getpass`` instead.

Command groups: :mod:`.users`, :mod:`.sasl`, :mod:`.keys`, :mod:`.tokens`
(``token`` and ``stoken``), :mod:`.serve`, :mod:`.client`, :mod:`.demo`,
:mod:`.vectors`; shared helpers in :mod:`._common`.
"""

from __future__ import annotations

import argparse
import logging
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
    common.add_argument("--db", help="user database: path, sqlite:///path or postgresql://… "
                        "(default $SASLKIT_DB or ./saslkit.db)")
    common.add_argument("--keys", help="key ring file (default $SASLKIT_KEYS or beside the database)")
    common.add_argument("--store", help="token store: sqlite:///path, postgresql://…, redis://host:port/db, "
                        "redis-cluster://host:port[,…] or redis-sentinel://host:port[,…]/service "
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
    package_log = logging.getLogger("saslkit")
    if not package_log.handlers:  # store warnings of a failing command: not a second stderr line
        package_log.addHandler(logging.NullHandler())
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
    except OSError as exc:  # a file or directory the command needed: one line, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"saslkit: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
