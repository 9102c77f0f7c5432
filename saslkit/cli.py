"""The ``saslkit`` command.

Exit codes: 0 success, 1 failure (authentication failed, not found, store
error), 2 usage error.  Secrets are read from stdin (one line, without its
newline) or ``--secret-file``, never from argv.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import secrets
import ssl
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TextIO

from . import __version__
from ._redact import redact
from .auth.client import (
    SMTP_FRAMING,
    ClientAuth,
    EncodedChallenge,
    Rejected,
    ServerFailure,
    ServerMessage,
    ServerSuccess,
    Unverified,
    drive,
)
from .auth.client import Authenticated as ClientAuthenticated
from .auth.engine import Abort, ServerAuth
from .auth.events import Authenticated, AuthFailed, AuthRefused
from .auth.framing import encode_challenge
from .context import ClientCredentials, ServerContext
from .credentials import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    ScramCredential,
    UserRecord,
    make_user,
    prepare_username,
)
from .errors import SaslError, StoreError, UsageError
from .keys import KeyRing, default_keys_path
from .mechanism import Challenge, Failure, Success
from .registry import Registry, default_registry
from .stores import SQLiteUserStore, open_token_store, open_user_store, sqlite_path
from .testing.loopback import run_exchange
from .tokens import SubmissionTokens, TokenRecord, TokenService

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
MAX_LINE = 16384


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- helpers


def _db_arg(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("SASLKIT_DB") or "./saslkit.db")


def _open_users(args: argparse.Namespace) -> SQLiteUserStore:
    return open_user_store(_db_arg(args))


def _keys_path(args: argparse.Namespace) -> Path:
    explicit = getattr(args, "keys", None) or os.environ.get("SASLKIT_KEYS")
    return Path(explicit) if explicit else default_keys_path(sqlite_path(_db_arg(args)))


def _store_url(args: argparse.Namespace) -> str:
    """``--store`` / ``SASLKIT_STORE``; by default the tokens live in the users' database file."""
    return str(getattr(args, "store", None) or os.environ.get("SASLKIT_STORE") or _db_arg(args))


def _keyring(args: argparse.Namespace) -> KeyRing:
    return KeyRing.open(_keys_path(args))


def _token_services(args: argparse.Namespace, ring: KeyRing | None = None) -> tuple[TokenService, SubmissionTokens]:
    ring = ring or _keyring(args)
    store = open_token_store(_store_url(args))
    return TokenService(store, ring), SubmissionTokens(store, ring)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _duration(value: str) -> float:
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


def _timestamp(value: str) -> float:
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


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_utf8(text: str) -> bool:
    """Lone surrogates: bytes that were not UTF-8, kept by Python's surrogateescape (argv, C locale stdin)."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _read_secret_line(stream: TextIO) -> str:
    try:
        line = stream.readline(MAX_LINE)
    except UnicodeDecodeError:
        raise CliError("the secret is not valid UTF-8", EXIT_USAGE) from None
    if _not_utf8(line):
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


def _utf8_lines(stream: TextIO) -> Iterator[str]:
    """The stream's lines; input that is not UTF-8 is a usage error (exit 2), not a traceback."""
    try:
        for line in stream:
            if _not_utf8(line):
                break
            yield line
        else:
            return
    except UnicodeDecodeError:
        pass
    raise CliError("standard input is not valid UTF-8", EXIT_USAGE)


def _read_secret(args: argparse.Namespace, stdin: TextIO) -> str:
    if getattr(args, "secret_file", None):
        try:
            with open(args.secret_file, encoding="utf-8") as fh:
                return _read_secret_line(fh)
        except OSError as exc:
            raise CliError(f"cannot read {args.secret_file}: {exc.strerror}", EXIT_USAGE) from exc
    return _read_secret_line(stdin)


def _iterations(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer") from None
    if not MIN_ITERATIONS <= n <= MAX_ITERATIONS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    return n


def _channel_binding(args: argparse.Namespace) -> tuple[str, bytes] | None:
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


def _out(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


# ---------------------------------------------------------------- user


def _username(name: str) -> str:
    """The prepared name (SASLprep query form, RFC 4013) every store path keys a user by; exit 2 if none."""
    try:
        return prepare_username(name)
    except UsageError as exc:
        raise CliError(f"invalid user name {name!r}: {exc}", EXIT_USAGE) from exc


def _named(given: str, prepared: str) -> str:
    """``'alice'``, or ``'alice' (given as 'ali\\xadce')`` when SASLprep changed the name."""
    return repr(prepared) if given == prepared else f"{prepared!r} (given as {given!r})"


def _revoke_around(args: argparse.Namespace, name: str, change: Callable[[], object]) -> int:
    """Revoke ``name``'s tokens, make ``change``, then revoke again; return how many went.

    Fail-safe order: if the token store cannot be reached, nothing changes
    (exit 1), so a credential change never leaves a usable token behind.  The
    second pass catches a token minted with the old credentials meanwhile.
    """
    try:
        store = open_token_store(_store_url(args))
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
    users = _open_users(args)
    name = _username(args.name)
    exists = users.get_user(name) is not None
    if args.command == "add" and exists:
        raise CliError(f"user {_named(args.name, name)} already exists (use `saslkit user passwd`)")
    if args.command == "passwd" and not exists:
        raise CliError(f"no such user {_named(args.name, name)}")
    password = _read_secret(args, stdin)
    iterations = args.iterations or users.default_iterations
    record = make_user(name, password, iterations=iterations)
    if args.command == "add":
        if not users.add_user(record):  # added by someone else since the check: theirs stays
            raise CliError(f"user {_named(args.name, name)} already exists (use `saslkit user passwd`)")
        print(f"saslkit: added user {name}", file=sys.stderr)
        return EXIT_OK
    # A password change ends every session the old password opened.
    revoked = _revoke_around(args, name, lambda: users.put_user(record))
    print(f"saslkit: updated user {name}", file=sys.stderr)
    print(f"saslkit: revoked {revoked} token(s) of {name}", file=sys.stderr)
    return EXIT_OK


def cmd_user_del(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    users = _open_users(args)
    name = _username(args.name)
    # Also a row stored under the exact unprepared name by older saslkit (delete_user removes both).
    if users.get_user(name) is None and users.get_user(args.name) is None:
        raise CliError(f"no such user {_named(args.name, name)}")
    deleted: list[bool] = []
    revoked = _revoke_around(args, name, lambda: deleted.append(users.delete_user(args.name)))
    if not deleted[0]:
        raise CliError(f"no such user {_named(args.name, name)}")
    print(f"saslkit: deleted user {name}, revoked {revoked} token(s)", file=sys.stderr)
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    for name in _open_users(args).list_users():
        _out(stdout, name)
    return EXIT_OK


def cmd_user_show(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    name = _username(args.name)
    record = _open_users(args).get_user(name)
    if record is None:
        raise CliError(f"no such user {_named(args.name, name)}")
    for cred in record.scram.values():
        _out(stdout, cred.to_dovecot() if args.format == "dovecot" else cred.to_rfc5803())
    return EXIT_OK


def cmd_user_import(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Import SCRAM credentials (Dovecot or RFC 5803 lines) from stdin for one user.

    Over an existing user the tokens are revoked first, as for ``user passwd``.
    """
    name = _username(args.name)
    creds: dict[str, ScramCredential] = {}
    for lineno, line in enumerate(_utf8_lines(stdin), 1):
        if not line.strip():
            continue
        try:
            cred = ScramCredential.parse(line)
        except UsageError as exc:
            raise CliError(f"line {lineno}: {exc}") from exc
        creds[cred.hash_name] = cred
    if not creds:
        raise CliError("no credentials on standard input", EXIT_USAGE)
    users = _open_users(args)
    old = users.get_user(name)
    record = UserRecord(name, creds, old.password_hash if old and args.keep_password else None)
    if old is None and users.add_user(record):
        print(f"saslkit: imported user {name}", file=sys.stderr)
        return EXIT_OK
    revoked = _revoke_around(args, name, lambda: users.put_user(record))
    print(f"saslkit: replaced the credentials of {name}, revoked {revoked} token(s)", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- sasl server / client


#: ``sasl server``'s replies to an exchange that ended without an outcome (its own compact framing).
_SASL_SERVER_ABORTED = {
    Abort.CANCELLED: "501 5.5.2 authentication cancelled",
    Abort.INVALID_BASE64: "501 5.5.2 invalid base64 data",
    Abort.INVALID_INITIAL_RESPONSE: "501 5.5.2 invalid base64 data",
    Abort.LINE_TOO_LONG: "501 5.5.2 line too long",
}


def cmd_sasl_server(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """One exchange in SMTP AUTH framing over stdio (RFC 4954 §4), run by :class:`~saslkit.auth.engine.ServerAuth`.

    The pipe is treated as a protected channel (tls=True), so PLAIN is offered.
    """
    registry = default_registry()
    cb = _channel_binding(args)
    users = _open_users(args)
    ring = _keyring(args)
    tokens, stokens = _token_services(args, ring)
    ctx = ServerContext(
        users, ring.server_secret, channel_bindings=dict([cb]) if cb else {}, tls=True, tokens=tokens, stokens=stokens
    )
    line = stdin.readline(MAX_LINE).rstrip("\r\n")
    words = line.split(" ")
    if len(words) not in (2, 3) or words[0].upper() != "AUTH":
        _out(stdout, "501 5.5.4 Syntax: AUTH mechanism [initial-response]")
        return EXIT_USAGE
    name = words[1].upper()
    if (args.mech and name != args.mech.upper()) or name not in registry:
        _out(stdout, "504 5.5.4 Unrecognized authentication type")
        return EXIT_FAIL
    engine = ServerAuth(registry, registry.offer(tls=True, channel_bindings=ctx.channel_bindings), ctx)
    outcome = engine.start(name, words[2] if len(words) == 3 else None)
    while isinstance(outcome, Challenge):
        _out(stdout, f"334 {encode_challenge(outcome.data)}")
        reply = stdin.readline(MAX_LINE)
        if not reply:
            _out(stdout, "535 connection closed during authentication")
            return EXIT_FAIL
        outcome = engine.receive(reply.rstrip("\r\n"))
    if isinstance(outcome, Authenticated):
        success = outcome.success
        _out(stdout, " ".join(["235", success.authcid] + ([success.authzid] if success.authzid else [])))
        return EXIT_OK
    if isinstance(outcome, AuthFailed):
        _out(stdout, f"535 {outcome.reason}")
    elif isinstance(outcome, AuthRefused):
        _out(stdout, f"535 mechanism {outcome.mechanism} not allowed here: {outcome.refusal.value}")
    else:
        _out(stdout, _SASL_SERVER_ABORTED[outcome.reason])
    return EXIT_FAIL


def cmd_sasl_client(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """The client half of ``sasl server``: first stdin line is the secret unless --secret-file."""
    registry = default_registry()
    secret = _read_secret(args, stdin)
    cb = _channel_binding(args)
    name = args.mech.upper()
    creds = ClientCredentials(
        args.user, secret, authzid=args.authzid, channel_binding=cb, server_offers_plus=cb is not None
    )
    auth = ClientAuth(registry.client(name, creds), framing=SMTP_FRAMING)
    _out(stdout, f"AUTH {auth.start().arguments}")
    outcome = drive(auth, lambda: _client_sasl_message(stdin), lambda step: _out(stdout, step.line))
    if isinstance(outcome, ClientAuthenticated):
        return EXIT_OK
    if isinstance(outcome, Rejected):
        raise CliError(f"authentication failed: {outcome.text}")
    if isinstance(outcome, Unverified):
        raise CliError(f"server not verified: {outcome.message}")
    raise CliError(f"authentication failed: {outcome.message}")


def _client_sasl_message(stdin: TextIO) -> ServerMessage:
    """One ``sasl server`` line as the client engine takes it (RFC 4954 §4 framing)."""
    line = stdin.readline(MAX_LINE)
    if not line:
        raise CliError("server closed the exchange")
    line = line.rstrip("\r\n")
    code, _, text = line.partition(" ")
    if code == "334":
        return EncodedChallenge(text)
    return ServerSuccess() if code == "235" else ServerFailure(line)


# ---------------------------------------------------------------- keys, tokens, stokens


def cmd_keys(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    path = _keys_path(args)
    if args.command == "init":
        if path.exists():
            raise CliError(f"key ring {path} already exists")
        KeyRing.open(path)
        return EXIT_OK
    ring = _keyring(args)
    if args.command == "rotate":
        key = ring.add(args.kind)
        ring.save()
        _out(stdout, key.id)
    elif args.command == "retire":
        ring.retire(args.id)
        ring.save()
    else:
        for key in sorted(ring.keys, key=lambda k: (k.kind, k.created)):
            current = key.retired is None and ring.current(key.kind).id == key.id
            state = "retired " + _fmt_time(key.retired) if key.retired else ("current" if current else "verifying")
            _out(stdout, f"{key.id}\t{key.kind}\t{_fmt_time(key.created)}\t{state}")
    return EXIT_OK


def cmd_token_mint(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    name = _username(args.user)
    if _open_users(args).get_user(name) is None:
        raise CliError(f"no such user {_named(args.user, name)}")
    token, record = _token_services(args)[0].mint(
        name, args.type, mechanism=args.mech, ttl=args.ttl, label=args.label
    )
    print(f"saslkit: minted {record.type} token {record.id} for {record.user}, expires {_fmt_time(record.expires)}",
          file=sys.stderr)
    _out(stdout, token)  # alone on the last line, shown once
    return EXIT_OK


def _token_state(record: TokenRecord, now: float) -> str:
    if record.revoked is not None:
        return "revoked"
    return "active" if record.active(now) else "expired"


def cmd_token_list(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    now = time.time()
    _out(stdout, "id\tuser\ttype\tmechanism\tlabel\tcreated\texpires\tlast-used\tstate")
    for r in _token_services(args)[0].list(_username(args.user) if args.user else None):
        _out(stdout, "\t".join([r.id, r.user, r.type, r.mechanism or "-", r.label or "-", _fmt_time(r.created),
                                _fmt_time(r.expires), _fmt_time(r.last_used), _token_state(r, now)]))
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    service = _token_services(args)[0]
    if args.id:
        if args.user or args.before is not None:
            raise CliError("give a token id, or --user/--before, not both", EXIT_USAGE)
        if not service.revoke(args.id):
            raise CliError(f"no token {args.id!r}")
        return EXIT_OK
    if args.user:
        count = service.revoke_user(_username(args.user), before=args.before)
    elif args.before is not None:
        count = service.revoke_before(args.before)
    else:
        raise CliError("give a token id, --user or --before", EXIT_USAGE)
    print(f"saslkit: revoked {count} token(s)", file=sys.stderr)
    return EXIT_OK


def cmd_stoken(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    stokens = _token_services(args)[1]
    if args.command == "gen":
        token, expires = stokens.generate(args.kind, args.remote, args.local)
        print(f"saslkit: {args.kind.upper()} submission token, expires {_fmt_time(expires)}", file=sys.stderr)
        _out(stdout, token)
    else:
        existed = stokens.revoke(args.remote, args.local)
        print(f"saslkit: {'revoked' if existed else 'no permanent token for'} {args.remote} -> {args.local}",
              file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- servers


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e9:
        raise argparse.ArgumentTypeError("expected a positive number of seconds")
    return seconds


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("expected a positive whole number")
    return int(value)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _check_private_key(key_path: Path) -> None:
    """Refuse a TLS private key others can read; warn when its group can (Debian's ``ssl-cert`` 0640 habit)."""
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
    except OSError as exc:
        raise CliError(f"cannot read the TLS private key {key_path}: {exc.strerror}") from exc
    if mode & stat.S_IRWXO:
        raise CliError(f"TLS private key {key_path} is accessible by others (mode {mode:o}); run chmod 600 on it")
    if mode & stat.S_IRWXG:
        print(f"saslkit: WARNING: TLS private key {key_path} is accessible by its group (mode {mode:o}); "
              "every member can impersonate this server (chmod 600 unless that group is meant to, like ssl-cert)",
              file=sys.stderr)


def _tls_context(args: argparse.Namespace, hostname: str) -> tuple[ssl.SSLContext, bytes]:
    """Server TLS context and our certificate (DER); self-signed into the state directory if none given."""
    import hashlib

    from .smtp.server import ensure_certificate

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
    if args.tls_cert:
        cert_path, key_path = Path(args.tls_cert), Path(args.tls_key)
    else:
        state_dir = sqlite_path(_db_arg(args)).resolve().parent
        cert_path, key_path, created = ensure_certificate(state_dir, hostname)
        if created:
            print(f"saslkit: created a self-signed certificate {cert_path}", file=sys.stderr)
    _check_private_key(key_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CliError(f"cannot load the TLS certificate: {exc}") from exc
    print(f"saslkit: TLS certificate SHA-256 fingerprint {hashlib.sha256(der).hexdigest()}", file=sys.stderr)
    return context, der


def _mechanism_list(text: str) -> tuple[str, ...]:
    """``--mechanisms``: names separated by commas or spaces, each one saslkit implements."""
    names = tuple(dict.fromkeys(n.upper() for n in text.replace(",", " ").split()))
    unknown = [n for n in names if n not in default_registry()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown SASL mechanism(s): {' '.join(unknown) or '(none given)'}")
    return names


def _serve(args: argparse.Namespace, stdout: TextIO, protocol: str) -> int:
    """``serve smtp`` / ``serve imap``: one server on the SQLite (or Redis) stores until SIGTERM/SIGINT."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    from .penalty import parse_auth_penalty

    try:
        penalty = parse_auth_penalty(args.auth_penalty)
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    host, port = args.listen
    ring = _keyring(args)
    tokens, stokens = _token_services(args, ring)
    context, der = _tls_context(args, args.hostname)
    users = _open_users(args)
    run: Callable[[Callable[[str, int], None]], None]
    if protocol == "imap":
        from .imap.server import ImapServer, maildir_counter, run_imap_server
        from .imap.session import ImapConfig

        imap = ImapServer(
            ImapConfig(hostname=args.hostname, tls_available=not args.implicit_tls,
                       allow_plaintext_auth=args.allow_plaintext_auth, failure_delay=args.failure_delay,
                       unauthenticate=args.unauthenticate, mechanisms=args.mechanisms),
            users, ring.server_secret, tokens=tokens, ssl_context=context, certificate_der=der,
            implicit_tls=args.implicit_tls, mailbox=maildir_counter(args.maildir) if args.maildir else None,
            idle_timeout=args.idle_timeout, login_timeout=args.login_timeout, max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip, auth_penalty=penalty,
        )
        def run(ready: Callable[[str, int], None]) -> None:
            run_imap_server(imap, host, port, ready)
    else:
        from .smtp.server import SmtpServer, discard_delivery, maildir_delivery, run_server
        from .smtp.session import SmtpConfig

        protocol = "lmtp" if args.lmtp else "smtp"
        smtp = SmtpServer(
            SmtpConfig(hostname=args.hostname, lmtp=args.lmtp, tls_available=not args.implicit_tls,
                       allow_plaintext_auth=args.allow_plaintext_auth, failure_delay=args.failure_delay,
                       mechanisms=args.mechanisms),
            users, ring.server_secret, tokens=tokens, stokens=stokens, ssl_context=context, certificate_der=der,
            implicit_tls=args.implicit_tls,
            deliver=maildir_delivery(args.deliver_to) if args.deliver_to else discard_delivery,
            idle_timeout=args.idle_timeout, login_timeout=args.login_timeout, max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip, auth_penalty=penalty,
        )
        def run(ready: Callable[[str, int], None]) -> None:
            run_server(smtp, host, port, ready)

    def ready(bound_host: str, bound_port: int) -> None:
        _out(stdout, f"saslkit {protocol} listening on {bound_host}:{bound_port}")

    try:
        run(ready)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return EXIT_OK


def cmd_serve_smtp(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    return _serve(args, stdout, "smtp")


def cmd_serve_imap(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    return _serve(args, stdout, "imap")


# ---------------------------------------------------------------- client smtp, client imap

EXIT_CONNECTION = 3  # `saslkit client smtp|imap`: connection or TLS failure


def _server_address(value: str) -> tuple[str, int]:
    host, port = _listen(value)
    if port == 0:
        raise argparse.ArgumentTypeError("expected HOST:PORT with a port from 1 to 65535")
    return host, port


def _client_mechanism(registry: Registry, mech: str) -> str:
    """``--mech`` upper-cased; exit 2 unless saslkit implements it."""
    name = mech.upper()
    if name not in registry:
        raise CliError(f"unknown mechanism {mech!r} (one of {' '.join(registry.names())})", EXIT_USAGE)
    return name


def _client_tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    from .net.client import client_tls_context

    return None if args.tls == "none" else client_tls_context(cafile=args.cafile, insecure=args.insecure)


def _client_log(args: argparse.Namespace) -> Callable[[str], None] | None:
    """With -v, the transcript (secrets already masked by the client) goes to stderr."""

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return log if args.verbose else None


def _client_authenticated(host: str, port: int, user: str, mechanism: str, channel_binding: str | None) -> None:
    bound = f" (channel binding {channel_binding})" if channel_binding else ""
    print(f"saslkit: authenticated to {host}:{port} as {user} with {mechanism}{bound}", file=sys.stderr)


@contextmanager
def _client_errors(sign_off: Callable[[], None]) -> Iterator[None]:
    """Exit 3 for a connection or TLS failure; exit 1 (after ``sign_off``) when authentication fails."""
    from .net.client import ClientAuthError, ClientConnectionError

    try:
        yield
    except ClientConnectionError as exc:
        raise CliError(str(exc), EXIT_CONNECTION) from exc
    except ClientAuthError as exc:
        sign_off()
        raise CliError(str(exc), EXIT_FAIL) from exc
    sign_off()


def _client_token_out(stdout: TextIO, token_type: str | None, token: str | None) -> int:
    """With ``--remember``, the token alone on the last stdout line."""
    if token is not None:
        print(f"saslkit: got a {token_type} token", file=sys.stderr)
        _out(stdout, token)
    return EXIT_OK


def cmd_client_smtp(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Authenticate to an SMTP server (RFC 4954), optionally get a REMEMBERME token, QUIT.

    Exit 0 authenticated (the token, with --remember, alone on the last stdout
    line), 1 authentication or REMEMBERME refused, 2 usage, 3 connection or TLS
    failure.  -v shows each exchanged line on stderr with secrets masked.
    """
    from .smtp.client import SmtpClient, check_token_type

    host, port = args.server
    registry = default_registry()
    name = _client_mechanism(registry, args.mech)
    remember = check_token_type(args.remember) if args.remember else None
    secret = _read_secret(args, stdin)
    context = _client_tls_context(args)

    token: str | None = None
    with SmtpClient(host, port, ssl_context=context, timeout=args.timeout, log=_client_log(args),
                    lmtp=args.lmtp) as smtp:
        with _client_errors(smtp.quit):
            smtp.connect(args.tls)
            if remember:
                smtp.check_remember(remember)
            if args.tls == "none" and registry.info(name).plaintext:
                print(f"saslkit: warning: sending {name} credentials without TLS", file=sys.stderr)
            result = smtp.authenticate(name, args.user, secret, authzid=args.authzid,
                                       allow_plaintext=args.tls == "none")
            if remember:
                token = smtp.remember(remember)
    _client_authenticated(host, port, args.user, result.mechanism, result.channel_binding)
    return _client_token_out(stdout, remember, token)


def cmd_client_imap(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Authenticate to an IMAP server (RFC 9051 AUTHENTICATE, RFC 4959 SASL-IR), optionally get a
    REMEMBERME token and re-authenticate as another user (RFC 8437 UNAUTHENTICATE), LOGOUT.

    The same conventions as ``client smtp``: exit 0 authenticated (the token,
    with --remember, alone on the last stdout line), 1 authentication,
    REMEMBERME or UNAUTHENTICATE refused (or the server kept state across
    UNAUTHENTICATE), 2 usage, 3 connection or TLS failure.  With --reauth-as,
    USER2's secret is --reauth-secret-file or the next stdin line (the second
    when the first secret came from stdin too), and stdout gets a summary
    showing the selected mailbox and the ENABLE state reset.
    """
    from .imap.client import ImapClient, check_token_type
    from .imap.client import reauthenticate_showing_reset as reauth_demo

    host, port = args.server
    registry = default_registry()
    name = _client_mechanism(registry, args.mech)
    remember = check_token_type(args.remember) if args.remember else None
    if args.reauth_as is None and (args.reauth_mech or args.reauth_secret_file):
        raise CliError("--reauth-mech and --reauth-secret-file need --reauth-as", EXIT_USAGE)
    reauth_name = _client_mechanism(registry, args.reauth_mech or args.mech) if args.reauth_as else None
    secret = _read_secret(args, stdin)
    reauth_secret = None
    if args.reauth_as is not None:
        reauth_secret = _read_secret(argparse.Namespace(secret_file=args.reauth_secret_file), stdin)
    context = _client_tls_context(args)
    plaintext_ok = args.tls == "none"

    token: str | None = None
    summary: list[str] = []
    with ImapClient(host, port, ssl_context=context, timeout=args.timeout, log=_client_log(args)) as imap:
        with _client_errors(imap.logout):
            imap.connect(args.tls)
            if remember:
                imap.check_remember(remember)
            for mech in dict.fromkeys(m for m in (name, reauth_name) if m is not None):
                if plaintext_ok and registry.info(mech).plaintext and mech in imap.auth_mechanisms:
                    print(f"saslkit: warning: sending {mech} credentials without TLS", file=sys.stderr)
            result = imap.authenticate(name, args.user, secret, authzid=args.authzid, allow_plaintext=plaintext_ok)
            _client_authenticated(host, port, args.user, result.mechanism, result.channel_binding)
            if remember:
                token = imap.remember(remember)
            if reauth_name is not None and reauth_secret is not None:
                report = reauth_demo(imap, reauth_name, args.reauth_as, reauth_secret,
                                     allow_plaintext=plaintext_ok)
                summary = report.lines()
                second = report.result
                print(f"saslkit: re-authenticated as {second.username} with {second.mechanism} after "
                      "UNAUTHENTICATE on the same connection", file=sys.stderr)
                if not report.reset_ok:
                    for line in summary:
                        _out(stdout, line)
                    imap.logout()
                    raise CliError("the server kept state across UNAUTHENTICATE (RFC 8437 §3)", EXIT_FAIL)
    for line in summary:
        _out(stdout, line)
    return _client_token_out(stdout, remember, token)


# ---------------------------------------------------------------- demo, vectors


def cmd_demo(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Create a user in SQLite and run every mechanism in process, secrets masked.

    Token mechanisms use a token minted after the SCRAM-SHA-256 login and a
    temporary submission token; -PLUS and HT-*-UNIQ/ENDP/EXPR get random
    stand-in channel-binding data.
    """
    users = _open_users(args)
    ring = _keyring(args)
    tokens, stokens = _token_services(args, ring)
    password = secrets.token_urlsafe(12)
    if not users.add_user(make_user(args.user, password, iterations=users.default_iterations)):
        raise CliError(f"user {args.user!r} already exists: give the demo another --user or a new --db")
    _out(stdout, f"database {users.path}: user {args.user!r} created with a random password")
    fake_cb = {"tls-unique": secrets.token_bytes(12), "tls-server-end-point": secrets.token_bytes(32),
               "tls-exporter": secrets.token_bytes(32)}
    registry: Registry = default_registry()
    login = run_exchange(registry.client("SCRAM-SHA-256", ClientCredentials(args.user, password)),
                         registry.server("SCRAM-SHA-256", ServerContext(users, ring.server_secret, tls=True)))[0]
    if not isinstance(login, Success):
        raise CliError(f"demo login failed: {login.reason}")
    token = tokens.mint_after(login, label="saslkit demo")[0]
    local = f"{args.user}@localhost"
    stoken = stokens.generate("TEMP", "friend@example.net", local)[0]
    _out(stdout, f"minted a RANDOM token for {args.user} after SCRAM-SHA-256, and a TEMP submission token")
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
        _out(stdout, f"== {name}")

        def show(who: str, data: bytes | None, mech: str = name) -> None:
            _out(stdout, f"  {who}: {redact(mech, data)}")

        result, _ = run_exchange(registry.client(name, creds), registry.server(name, ctx), on_line=show)
        if isinstance(result, Failure):
            failures += 1
            _out(stdout, f"  => FAILED: {result.reason}")
        else:
            _out(stdout, f"  => authenticated as {result.identity}")
    return EXIT_FAIL if failures else EXIT_OK


def cmd_vectors_check(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    from .testing.vectors import check_files

    results = check_files(args.files)
    passed = sum(1 for r in results if r.ok)
    for r in results:
        if not r.ok:
            _out(stdout, f"FAIL {r.file}:{r.id}: {r.detail}")
    _out(stdout, f"{passed} passed, {len(results) - passed} failed")
    return EXIT_OK if passed == len(results) else EXIT_FAIL


# ---------------------------------------------------------------- parser

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

    demo = sub.add_parser("demo", parents=[common], help="run every mechanism in process (secrets masked)")
    demo.add_argument("--user", default="demo", help="user to create (default: demo)")
    demo.set_defaults(handler=cmd_demo)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="command", required=True)
    for cmd, text in (("add", "add a user (password on stdin)"), ("passwd", "change a password (stdin)")):
        sp = user.add_parser(cmd, parents=[common], help=text)
        sp.add_argument("name")
        sp.add_argument("--iterations", type=_iterations, help=f"SCRAM iterations (default {DEFAULT_ITERATIONS})")
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

    sasl = sub.add_parser("sasl", help="one SASL exchange over stdio").add_subparsers(dest="command", required=True)
    sp = sasl.add_parser("server", parents=[common], help="server side, SMTP AUTH framing")
    sp.add_argument("--mech", help="only accept this mechanism")
    sp.set_defaults(handler=cmd_sasl_server)
    cp = sasl.add_parser("client", parents=[common], help="client side, SMTP AUTH framing")
    cp.add_argument("--mech", required=True)
    cp.add_argument("--user", required=True, help="authentication identity (STOKEN: the recipient)")
    cp.add_argument("--authzid")
    cp.add_argument("--secret-file", help="read the password or token here; otherwise the first stdin line")
    for parser in (sp, cp):
        parser.add_argument("--cb-type", choices=("tls-unique", "tls-server-end-point", "tls-exporter"))
        parser.add_argument("--cb-data", help="channel-binding data, base64")
    cp.set_defaults(handler=cmd_sasl_client)

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

    token = sub.add_parser("token", help="reauthentication tokens").add_subparsers(dest="command", required=True)
    sp = token.add_parser("mint", parents=[common], help="mint a token; printed once on the last line")
    sp.add_argument("--user", required=True)
    sp.add_argument("--type", default="RANDOM", type=str.upper, choices=("RANDOM", "JWT"))
    sp.add_argument("--mech", type=str.upper, help="pin the token to this mechanism")
    sp.add_argument("--ttl", type=_duration, help="lifetime, e.g. 3600, 12h, 30d (default: no expiry)")
    sp.add_argument("--label", help="client label")
    sp.set_defaults(handler=cmd_token_mint)
    sp = token.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    sp.add_argument("--user")
    sp.set_defaults(handler=cmd_token_list)
    sp = token.add_parser("revoke", parents=[common], help="revoke a token, a user's tokens or older tokens")
    sp.add_argument("id", nargs="?")
    sp.add_argument("--user")
    sp.add_argument("--before", type=_timestamp, help="only tokens created before this time")
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

    serve = sub.add_parser("serve", help="run a reference server").add_subparsers(dest="command", required=True)
    for proto, default_port in (("smtp", 2525), ("imap", 1143)):
        sp = serve.add_parser(proto, parents=[common], help=f"{proto.upper()} reference server with SASL")
        sp.add_argument("--listen", type=_listen, default=("127.0.0.1", default_port),
                        help=f"HOST:PORT (default 127.0.0.1:{default_port})")
        sp.add_argument("--hostname", default="localhost", help="name in the greeting and the certificate")
        sp.add_argument("--tls-cert", help="PEM certificate (default: self-signed, made once beside the database)")
        sp.add_argument("--tls-key", help="PEM private key")
        sp.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (port 465/993 style)")
        sp.add_argument("--allow-plaintext-auth", action="store_true", help="offer PLAIN/LOGIN and tokens without TLS")
        sp.add_argument("--failure-delay", type=float, default=1.0, help="seconds before a failure reply (default 1)")
        sp.add_argument("--mechanisms", type=_mechanism_list, metavar="LIST",
                        help="SASL mechanisms to offer and accept, in offer order, comma or space separated "
                             "(like Dovecot's auth_mechanisms; default: all, strongest first); "
                             + ("IMAP LOGIN needs PLAIN" if proto == "imap" else "others are refused"))
        sp.add_argument("--auth-penalty", default="2:15", metavar="BASE:CAP",
                        help="after failures from an IP or for a user, delay the next attempt's reply BASE "
                             "seconds, doubling up to CAP (default 2:15); off to disable")
        sp.add_argument("--idle-timeout", type=_positive_seconds, default=300.0, metavar="SECONDS",
                        help="close a connection that sends nothing for this long (default 300)")
        sp.add_argument("--login-timeout", type=_positive_seconds, default=60.0, metavar="SECONDS",
                        help="close a connection not authenticated after this long (default 60)")
        sp.add_argument("--max-connections", type=_positive_int, default=1000, metavar="N",
                        help="connections served at once; more are refused (default 1000)")
        sp.add_argument("--max-connections-per-ip", type=_positive_int, default=20, metavar="N",
                        help="connections from one address at once (default 20)")
        if proto == "smtp":
            sp.add_argument("--lmtp", action="store_true", help="speak LMTP (LHLO, per-recipient replies, STOKEN)")
            sp.add_argument("--deliver-to", help="Maildir for accepted messages (default: accept and discard)")
            sp.set_defaults(handler=cmd_serve_smtp)
        else:
            sp.add_argument("--maildir", help="Maildir whose message count SELECT INBOX shows (default: empty)")
            sp.add_argument("--unauthenticate", choices=("always", "after-auth", "off"), default="always",
                            help="advertise UNAUTHENTICATE always, only once authenticated, or disable it")
            sp.set_defaults(handler=cmd_serve_imap)

    client = sub.add_parser("client", help="interop clients").add_subparsers(dest="command", required=True)
    for proto, implicit_port, verb in (("smtp", 465, "AUTH"), ("imap", 993, "AUTHENTICATE")):
        sp = client.add_parser(proto, help=f"authenticate to an {proto.upper()} server "
                               "(exit 3: connection or TLS failure)")
        sp.add_argument("server", metavar="HOST:PORT", type=_server_address)
        sp.add_argument("--mech", required=True, help="SASL mechanism; the server must offer it")
        sp.add_argument("--user", required=True, help="authentication identity")
        sp.add_argument("--authzid", help="authorization identity")
        mode = sp.add_mutually_exclusive_group()
        mode.add_argument("--starttls", dest="tls", action="store_const", const="starttls",
                          help="STARTTLS after the greeting (default)")
        mode.add_argument("--implicit-tls", dest="tls", action="store_const", const="implicit",
                          help=f"TLS from the first byte (port {implicit_port} style)")
        mode.add_argument("--no-tls", dest="tls", action="store_const", const="none", help="no TLS at all")
        trust = sp.add_mutually_exclusive_group()
        trust.add_argument("--cafile", help="trust this PEM certificate or CA bundle (default: system CAs)")
        trust.add_argument("--insecure", action="store_true", help="skip certificate and hostname verification")
        sp.add_argument("--secret-file", help="read the password or token here; otherwise the first stdin line")
        sp.add_argument("--remember", metavar="TYPE", help=f"after {verb}, request a REMEMBERME token (RANDOM, JWT)")
        sp.add_argument("--timeout", type=float, default=30.0, help="seconds per network operation (default 30)")
        sp.add_argument("-v", "--verbose", action="store_true", help="show the exchange on stderr, secrets masked")
        sp.set_defaults(handler=cmd_client_smtp if proto == "smtp" else cmd_client_imap, tls="starttls")
        if proto == "imap":
            sp.add_argument("--reauth-as", metavar="USER2", help="then UNAUTHENTICATE and AUTHENTICATE as USER2 on "
                            "the same connection (RFC 8437), showing the selected mailbox and ENABLE state reset")
            sp.add_argument("--reauth-mech", metavar="MECH", help="mechanism for --reauth-as (default: --mech)")
            sp.add_argument("--reauth-secret-file", help="USER2's password or token; otherwise the next stdin line")
        else:
            sp.add_argument("--lmtp", action="store_true", help="speak LMTP (LHLO), e.g. for AUTH STOKEN")

    vec = sub.add_parser("vectors", help="test vectors").add_subparsers(dest="command", required=True)
    sp = vec.add_parser("check", help="check vector files against the library")
    sp.add_argument("files", nargs="+")
    sp.set_defaults(handler=cmd_vectors_check)
    return p


#: Arguments that are file names: any bytes are fine there (surrogateescape round-trips them).
_PATH_ARGUMENTS = frozenset({"db", "keys", "store", "secret_file", "reauth_secret_file", "tls_cert", "tls_key",
                             "deliver_to", "maildir", "cafile", "files"})


def _check_text_arguments(args: argparse.Namespace) -> None:
    """Names, mechanisms and labels must be UTF-8 (they are stored, compared and sent)."""
    for key, value in vars(args).items():
        if key not in _PATH_ARGUMENTS and isinstance(value, str) and _not_utf8(value):
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
