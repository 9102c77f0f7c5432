"""What the command groups share: database, key ring and token store arguments, secrets from stdin or a
file, durations and times, output."""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeAlias

from ..credentials import MAX_ITERATIONS, MIN_ITERATIONS, MutableUserStore, prepare_username
from ..errors import UsageError
from ..keys import KeyRing, default_keys_path
from ..stores import SQLiteUserStore, is_server_url, open_token_store, open_user_store, redact_url, sqlite_path
from ..tokens import SubmissionTokens, TokenService, TokenStore

#: What ``add_subparsers()`` returns, to which each command group adds its commands.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
MAX_STDIN_LINE = 16384  # one line read from stdin or a secret file: a secret, or a `sasl` exchange line


class CliError(Exception):
    """A command's failure: its message goes to stderr, ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def db_arg(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("SASLKIT_DB") or "./saslkit.db")


def announce(args: argparse.Namespace, what: str, where: object, created: bool = False) -> None:
    """Say on stderr, once per command, which database / key ring / token store it uses."""
    said: set[str] = args.__dict__.setdefault("_announced", set())
    line = f"saslkit: {'created ' if created else ''}{what} {where}"
    if what not in said:
        said.add(what)
        print(line, file=sys.stderr)


def db_path(args: argparse.Namespace) -> Path:
    """The user database's file; exit 1 before anything is created when it cannot be one."""
    path = sqlite_path(db_arg(args))
    if path.is_dir():
        raise CliError(f"database {path} is a directory: give a file name, e.g. --db {path / 'saslkit.db'}")
    if not path.parent.is_dir():
        raise CliError(f"database {path}: directory {path.parent} does not exist")
    return path


def open_users(args: argparse.Namespace) -> MutableUserStore:
    """The user store: the SQLite file, or with ``--db postgresql://…`` the shared database."""
    if is_server_url(db_arg(args)):
        store = open_user_store(db_arg(args))
        announce(args, "user database", redact_url(db_arg(args)))
        return store
    path = db_path(args)
    existed = path.exists()
    users = SQLiteUserStore(path)
    announce(args, "user database", path.resolve(), created=not existed)
    return users


def keys_path(args: argparse.Namespace) -> Path:
    explicit = getattr(args, "keys", None) or os.environ.get("SASLKIT_KEYS")
    if not explicit and is_server_url(db_arg(args)):
        raise CliError("with a database server (--db postgresql://…) give the key ring file every front-end "
                       "shares: --keys PATH or SASLKIT_KEYS", EXIT_USAGE)
    return Path(explicit) if explicit else default_keys_path(db_path(args))


def state_dir(args: argparse.Namespace) -> Path:
    """Where a server keeps files of its own (a self-signed certificate): beside the database file, or with
    a database server, beside the key ring."""
    return (keys_path(args) if is_server_url(db_arg(args)) else db_path(args)).resolve().parent


def store_url(args: argparse.Namespace) -> str:
    """``--store`` / ``SASLKIT_STORE``; by default the tokens live in the users' database file."""
    return str(getattr(args, "store", None) or os.environ.get("SASLKIT_STORE") or db_arg(args))


def keyring(args: argparse.Namespace, *, create: bool = True) -> KeyRing:
    """The key ring, created on first use only when ``create`` (read-only commands never create one)."""
    path = keys_path(args)
    existed = path.exists()
    if not existed and not create:
        hint = "check --keys / SASLKIT_KEYS, or " if getattr(args, "keys", None) or os.environ.get("SASLKIT_KEYS") \
            else ""
        raise CliError(f"key ring {path} does not exist ({hint}run `saslkit keys init`)")
    ring = KeyRing.open(path, create=create, quiet=True)
    announce(args, "key ring", path.resolve(), created=ring.created)
    return ring


def _ring_if_any(args: argparse.Namespace) -> KeyRing:
    """The key ring if there is one, else an empty one that is never saved (listing and revoking need no key)."""
    return keyring(args, create=False) if keys_path(args).exists() else KeyRing(keys_path(args))


def open_tokens_store(args: argparse.Namespace) -> TokenStore:
    url = store_url(args)
    if is_server_url(url):
        where = redact_url(url)
    else:
        where = str(db_path(args) if url == db_arg(args) else sqlite_path(url).resolve())
    created = not is_server_url(url) and not Path(where).exists()
    store = open_token_store(url)
    announce(args, "token store", where, created=created)
    return store


def token_services(
    args: argparse.Namespace, ring: KeyRing | None = None, *, create_ring: bool = True
) -> tuple[TokenService, SubmissionTokens]:
    """Token services on the token store; ``create_ring=False`` for commands that only list or revoke."""
    store = open_tokens_store(args)
    ring = ring or (keyring(args) if create_ring else _ring_if_any(args))
    return TokenService(store, ring), SubmissionTokens(store, ring)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(value: str) -> float:
    """``3600``, ``90m``, ``12h``, ``30d``, ``2w``, ``1y`` -> seconds."""
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:], None)
    number = text[:-1] if unit else text
    try:
        n = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (e.g. 3600, 12h, 30d)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return n * (unit or 1)


def parse_timestamp(value: str) -> float:
    """POSIX seconds or ISO 8601 (``2026-11-22T10:00:00Z``; naive means UTC)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {value!r} (POSIX seconds or ISO 8601)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def format_time(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_utf8(text: str) -> bool:
    """Lone surrogates: bytes that were not UTF-8, kept by Python's surrogateescape (argv, C locale stdin)."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def read_secret_line(stream: TextIO) -> str:
    try:
        line = stream.readline(MAX_STDIN_LINE)
    except UnicodeDecodeError:
        raise CliError("the secret is not valid UTF-8", EXIT_USAGE) from None
    if not_utf8(line):
        raise CliError("the secret is not valid UTF-8", EXIT_USAGE)
    if not line:
        raise CliError("no secret on standard input", EXIT_USAGE)
    if line.endswith("\n"):
        line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
    if not line:
        raise CliError("empty secret", EXIT_USAGE)
    return line


def utf8_lines(stream: TextIO) -> Iterator[str]:
    """The stream's lines; input that is not UTF-8 is a usage error (exit 2), not a traceback."""
    try:
        for line in stream:
            if not_utf8(line):
                break
            yield line
        else:
            return
    except UnicodeDecodeError:
        pass
    raise CliError("standard input is not valid UTF-8", EXIT_USAGE)


def read_secret(args: argparse.Namespace, stdin: TextIO) -> str:
    if getattr(args, "secret_file", None):
        try:
            with open(args.secret_file, encoding="utf-8") as fh:
                return read_secret_line(fh)
        except OSError as exc:
            raise CliError(f"cannot read {args.secret_file}: {exc.strerror}", EXIT_USAGE) from exc
    return read_secret_line(stdin)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def read_new_password(args: argparse.Namespace, stdin: TextIO) -> str:
    """A new password: ``--secret-file``, else prompted twice without echo (``getpass``) when stdin is a
    terminal, else one line of stdin."""
    if getattr(args, "secret_file", None) or not _is_terminal(stdin):
        return read_secret(args, stdin)
    try:
        first = getpass.getpass("New password: ")
        again = getpass.getpass("Retype new password: ")
    except EOFError:
        raise CliError("no password given", EXIT_USAGE) from None
    if first != again:
        raise CliError("the passwords do not match; nothing was changed", EXIT_USAGE)
    if not first:
        raise CliError("empty secret", EXIT_USAGE)
    if not_utf8(first):
        raise CliError("the secret is not valid UTF-8", EXIT_USAGE)
    return first


def parse_iterations(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer") from None
    if not MIN_ITERATIONS <= n <= MAX_ITERATIONS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    return n


def channel_binding_arg(args: argparse.Namespace) -> tuple[str, bytes] | None:
    if args.cb_type is None and args.cb_data is None:
        return None
    if args.cb_type is None or args.cb_data is None:
        raise CliError("--cb-type and --cb-data go together", EXIT_USAGE)
    try:
        data = base64.b64decode(args.cb_data, validate=True)
    except binascii.Error:
        raise CliError("--cb-data is not valid base64", EXIT_USAGE) from None
    if not data:
        raise CliError("--cb-data is empty", EXIT_USAGE)
    return args.cb_type, data


def write_line(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def prepared_username(name: str) -> str:
    """The prepared name (SASLprep query form, RFC 4013) every store path keys a user by; exit 2 if none."""
    try:
        return prepare_username(name)
    except UsageError as exc:
        raise CliError(f"invalid user name {name!r}: {exc}", EXIT_USAGE) from exc


def named(given: str, prepared: str) -> str:
    """``'alice'``, or ``'alice' (given as 'ali\\xadce')`` when SASLprep changed the name."""
    return repr(prepared) if given == prepared else f"{prepared!r} (given as {given!r})"


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)

