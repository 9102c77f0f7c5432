"""``saslkit client smtp|imap``: the interop clients (exit 3: connection or TLS failure)."""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from ..registry import Registry, default_registry
from ._common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, Subparsers, parse_host_port, read_secret, write_line

EXIT_CONNECTION = 3  # `saslkit client smtp|imap`: connection or TLS failure


def _server_address(value: str) -> tuple[str, int]:
    host, port = parse_host_port(value)
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
    from ..net.client import client_tls_context

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
    from ..net.client import ClientAuthError, ClientConnectionError

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
        write_line(stdout, token)
    return EXIT_OK


def cmd_client_smtp(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """Authenticate to an SMTP server (RFC 4954), optionally get a REMEMBERME token, QUIT.

    Exit 0 authenticated (the token, with --remember, alone on the last stdout
    line), 1 authentication or REMEMBERME refused, 2 usage, 3 connection or TLS
    failure.  -v shows each exchanged line on stderr with secrets masked.
    """
    from ..smtp.client import SmtpClient, check_token_type

    host, port = args.server
    registry = default_registry()
    name = _client_mechanism(registry, args.mech)
    remember = check_token_type(args.remember) if args.remember else None
    secret = read_secret(args, stdin)
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
    from ..imap.client import ImapClient, check_token_type
    from ..imap.client import reauthenticate_showing_reset as reauth_demo

    host, port = args.server
    registry = default_registry()
    name = _client_mechanism(registry, args.mech)
    remember = check_token_type(args.remember) if args.remember else None
    if args.reauth_as is None and (args.reauth_mech or args.reauth_secret_file):
        raise CliError("--reauth-mech and --reauth-secret-file need --reauth-as", EXIT_USAGE)
    reauth_name = _client_mechanism(registry, args.reauth_mech or args.mech) if args.reauth_as else None
    secret = read_secret(args, stdin)
    reauth_secret = None
    if args.reauth_as is not None:
        reauth_secret = read_secret(argparse.Namespace(secret_file=args.reauth_secret_file), stdin)
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
                        write_line(stdout, line)
                    imap.logout()
                    raise CliError("the server kept state across UNAUTHENTICATE (RFC 8437 §3)", EXIT_FAIL)
    for line in summary:
        write_line(stdout, line)
    return _client_token_out(stdout, remember, token)


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``client`` commands."""
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
