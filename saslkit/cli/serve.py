"""``saslkit serve smtp|imap``: the reference servers."""

from __future__ import annotations

import argparse
import dataclasses
import os
import ssl
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..credentials import UserStore
from ..errors import StoreError, TemporaryFailure, UsageError
from ..net.tls import OpenSSLServerContext, ServerTlsContext, pyopenssl_available
from ..penalty import AuthPenalty
from ..registry import Policy, default_registry
from ..tokens import TokenStore
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Subparsers,
    open_users,
    parse_host_port,
    state_dir,
    token_services,
    write_line,
)

if TYPE_CHECKING:
    from ..metrics import ServerMetrics


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


def _certificate_names(cert_path: Path) -> set[str]:
    """The DNS names (subjectAltName, else the common name) a PEM certificate is for, lower case."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {n.lower() for n in names.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        return {str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}


def _warn_if_not_for(cert_path: Path, hostname: str) -> None:
    """Warn when the self-signed certificate made earlier is for another name than ``--hostname``."""
    try:
        names = _certificate_names(cert_path)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the TLS certificate {cert_path}: {exc}") from exc
    if hostname.lower() not in names:
        print(f"saslkit: WARNING: --hostname {hostname} but the existing certificate {cert_path} is for "
              f"{', '.join(sorted(names)) or 'no name'}; clients checking the name will refuse it "
              f"(remove it and its key to make a new one, or give --tls-cert/--tls-key)", file=sys.stderr)


def _tls_context(args: argparse.Namespace, hostname: str) -> tuple[ServerTlsContext, bytes]:
    """Server TLS context and our certificate (DER); self-signed into the state directory if none given.

    pyOpenSSL's (the ``tls`` extra: tls-exporter, RFC 9266) unless ``--tls-library ssl`` or not installed.
    """
    import hashlib

    from ..smtp.server import ensure_certificate

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
    if args.tls_cert:
        cert_path, key_path = Path(args.tls_cert), Path(args.tls_key)
    else:
        cert_path, key_path, created = ensure_certificate(state_dir(args), hostname)
        if created:
            print(f"saslkit: created a self-signed certificate {cert_path}", file=sys.stderr)
        else:
            _warn_if_not_for(cert_path, hostname)
    _check_private_key(key_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CliError(f"cannot load the TLS certificate: {exc}") from exc
    print(f"saslkit: TLS certificate SHA-256 fingerprint {hashlib.sha256(der).hexdigest()}", file=sys.stderr)
    if args.tls_library == "pyopenssl" or (args.tls_library == "auto" and pyopenssl_available()):
        try:
            return OpenSSLServerContext(cert_path, key_path), der
        except ImportError as exc:
            raise CliError("--tls-library pyopenssl needs pyOpenSSL (pip install 'saslkit[tls]')") from exc
        except ValueError as exc:
            raise CliError(f"cannot load the TLS certificate: {exc}") from exc
    return context, der


def _delivery(path: str, make: Callable[[str], Callable[..., str]]) -> Callable[..., str]:
    """``--deliver-to``: the Maildir delivery, or exit 1 naming the directory that cannot be one."""
    try:
        return make(path)
    except OSError as exc:
        raise CliError(f"cannot use --deliver-to {path} as a Maildir: {exc.strerror or exc}") from exc


def _metrics() -> ServerMetrics:
    """The metrics of ``--metrics`` (imported only then: prometheus_client is the optional ``metrics`` extra)."""
    from ..metrics import ServerMetrics

    return ServerMetrics()


def _serve_metrics(metrics: ServerMetrics, address: tuple[str, int]) -> None:
    """``--metrics HOST:PORT``: serve ``/metrics`` and say where (stderr)."""
    m_host, m_port = address
    try:
        shown = metrics.serve(m_host, m_port)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {m_host}:{m_port}: {exc.strerror or exc}") from exc
    print(f"saslkit: metrics on http://{shown[0]}:{shown[1]}/metrics", file=sys.stderr, flush=True)


def _check_stores(users: UserStore, tokens: TokenStore) -> None:
    """Startup check: read once from every configured store.  Unreachable (a temporary failure) is a warning
    (logins needing it fail temporarily until it is back); any other store error stops the server (exit 1)."""
    for what, probe in (("user database", lambda: users.get_user("saslkit-startup-check")),
                        ("token store", lambda: tokens.get("saslkit-startup-check"))):
        try:
            probe()
        except TemporaryFailure as exc:
            print(f"saslkit: WARNING: {what} unreachable at startup: {exc}; logins that need it fail "
                  "temporarily until it is back", file=sys.stderr)
        except StoreError as exc:
            raise CliError(f"{what} check failed at startup: {exc}") from exc


def _mechanism_list(text: str) -> tuple[str, ...]:
    """``--mechanisms``: names separated by commas or spaces, each one saslkit implements."""
    names = tuple(dict.fromkeys(n.upper() for n in text.replace(",", " ").split()))
    unknown = [n for n in names if n not in default_registry()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown SASL mechanism(s): {' '.join(unknown) or '(none given)'}")
    return names


def _shared_penalty(args: argparse.Namespace, penalty: AuthPenalty | None) -> AuthPenalty | None:
    """``--penalty-store`` / ``SASLKIT_PENALTY_STORE``: the auth penalty's counts shared in Redis (or Redis Cluster)."""
    url = args.penalty_store or os.environ.get("SASLKIT_PENALTY_STORE")
    if penalty is None or not url:
        return penalty
    from ..stores import open_penalty_store

    return dataclasses.replace(penalty, store=open_penalty_store(url))


def _add_penalty_store_argument(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--penalty-store", metavar="URL",
                    help="share the auth penalty's failure counts between front-ends: redis://host:port/db or "
                         "redis-cluster://host:port[,host:port…] (default $SASLKIT_PENALTY_STORE, else memory: "
                         "this process only)")


def _serve(args: argparse.Namespace, stdout: TextIO, protocol: str) -> int:
    """``serve smtp`` / ``serve imap``: one server on the SQLite (or Redis) stores until SIGTERM/SIGINT."""
    from ..logs import configure_logging
    from ..penalty import parse_auth_penalty

    configure_logging(args.log_format)
    metrics = _metrics() if args.metrics else None  # a missing extra fails before anything starts

    try:
        penalty = _shared_penalty(args, parse_auth_penalty(args.auth_penalty))
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    host, port = args.listen
    tokens, stokens = token_services(args)  # the store URL is checked before a key ring is created
    ring = tokens.keys
    context, der = _tls_context(args, args.hostname)
    policy = Policy(plus_with_end_point=True) if args.plus_with_end_point else None
    users = open_users(args)
    _check_stores(users, tokens.store)
    run: Callable[[Callable[[str, int], None]], None]
    if protocol == "imap":
        from ..imap.server import ImapServer, maildir_counter, run_imap_server
        from ..imap.session import ImapConfig

        imap = ImapServer(
            ImapConfig(hostname=args.hostname, tls_available=not args.implicit_tls,
                       allow_plaintext_auth=args.allow_plaintext_auth, failure_delay=args.failure_delay,
                       unauthenticate=args.unauthenticate, mechanisms=args.mechanisms, policy=policy),
            users, ring.server_secret, tokens=tokens, ssl_context=context, certificate_der=der,
            implicit_tls=args.implicit_tls, mailbox=maildir_counter(args.maildir) if args.maildir else None,
            idle_timeout=args.idle_timeout, login_timeout=args.login_timeout, max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip, auth_penalty=penalty,
        )
        if metrics is not None:
            metrics.instrument(imap, "imap")

        def run(ready: Callable[[str, int], None]) -> None:
            run_imap_server(imap, host, port, ready)
    else:
        from ..smtp.server import SmtpServer, discard_delivery, maildir_delivery, run_server
        from ..smtp.session import SmtpConfig

        protocol = "lmtp" if args.lmtp else "smtp"
        smtp = SmtpServer(
            SmtpConfig(hostname=args.hostname, lmtp=args.lmtp, tls_available=not args.implicit_tls,
                       allow_plaintext_auth=args.allow_plaintext_auth, failure_delay=args.failure_delay,
                       mechanisms=args.mechanisms, policy=policy),
            users, ring.server_secret, tokens=tokens, stokens=stokens, ssl_context=context, certificate_der=der,
            implicit_tls=args.implicit_tls,
            deliver=_delivery(args.deliver_to, maildir_delivery) if args.deliver_to else discard_delivery,
            idle_timeout=args.idle_timeout, login_timeout=args.login_timeout, max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip, auth_penalty=penalty,
        )
        if metrics is not None:
            metrics.instrument(smtp, protocol)

        def run(ready: Callable[[str, int], None]) -> None:
            run_server(smtp, host, port, ready)

    def ready(bound_host: str, bound_port: int) -> None:
        if metrics is not None:
            _serve_metrics(metrics, args.metrics)
        write_line(stdout, f"saslkit {protocol} listening on {bound_host}:{bound_port}")

    try:
        run(ready)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return EXIT_OK


def cmd_serve_smtp(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    return _serve(args, stdout, "smtp")


def cmd_serve_imap(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    return _serve(args, stdout, "imap")


def _socket_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError("expected an octal file mode such as 0660")
    return mode


def cmd_serve_dovecot_auth(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """``serve dovecot-auth``: the Dovecot auth protocol for Postfix and Exim, until SIGTERM/SIGINT."""

    from ..dovecot.server import DovecotAuthServer, parse_listen
    from ..dovecot.session import DovecotAuthConfig, HandshakeTiming, TempFailMode
    from ..logs import configure_logging
    from ..penalty import parse_auth_penalty

    configure_logging(args.log_format)
    metrics = _metrics() if args.metrics else None  # a missing extra fails before anything starts
    try:
        listen = parse_listen(args.listen)
        penalty = _shared_penalty(args, parse_auth_penalty(args.auth_penalty))
        config = DovecotAuthConfig(
            mechanisms=args.mechanisms, private_mechanisms=frozenset(args.private_mechanisms or ()),
            allow_plaintext_without_secured=args.allow_plaintext_auth, honour_no_penalty=args.honour_no_penalty,
            temp_fail=TempFailMode(args.temp_fail), failure_delay=args.failure_delay,
            channel_binding=args.channel_binding,
            handshake=HandshakeTiming.AFTER_VERSION if args.channel_binding else HandshakeTiming(args.handshake),
            max_requests=args.max_requests, request_timeout=args.request_timeout)
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    tokens, stokens = token_services(args)  # the store URL is checked before a key ring is created
    users = open_users(args)
    _check_stores(users, tokens.store)
    server = DovecotAuthServer(config=config, users=users, server_secret=tokens.keys.server_secret,
                               tokens=tokens, stokens=stokens, auth_penalty=penalty,
                               max_connections=args.max_connections, socket_mode=args.socket_mode,
                               socket_group=args.socket_group, idle_timeout=args.idle_timeout)

    if metrics is not None:
        metrics.instrument_dovecot_auth(server)

    def ready(address: str) -> None:
        if metrics is not None:
            _serve_metrics(metrics, args.metrics)
        write_line(stdout, f"saslkit dovecot-auth listening on {address}")

    try:
        server.run(listen, ready)
    except UsageError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    return EXIT_OK


def _add_dovecot_auth_parser(serve: Subparsers, common: argparse.ArgumentParser) -> None:
    sp = serve.add_parser("dovecot-auth", parents=[common],
                          help="the Dovecot authentication protocol, for Postfix (smtpd_sasl_type = dovecot) "
                               "and Exim (driver = dovecot)")
    sp.add_argument("--listen", default="127.0.0.1:12345", metavar="unix:PATH|HOST:PORT",
                    help="UNIX socket (e.g. unix:/var/spool/postfix/private/auth) or TCP address "
                         "(default 127.0.0.1:12345)")
    sp.add_argument("--socket-mode", type=_socket_mode, default=0o660, metavar="MODE",
                    help="octal mode of the UNIX socket (default 0660)")
    sp.add_argument("--socket-group", metavar="GROUP", help="group of the UNIX socket (e.g. postfix)")
    sp.add_argument("--mechanisms", type=_mechanism_list, metavar="LIST",
                    help="SASL mechanisms to offer and accept, in offer order (default: all but channel binding)")
    sp.add_argument("--private-mechanisms", type=_mechanism_list, metavar="LIST",
                    help="mechanisms accepted but flagged private, so the MTA never advertises them")
    sp.add_argument("--allow-plaintext-auth", action="store_true",
                    help="allow PLAIN/LOGIN and tokens on requests the MTA does not mark secured")
    sp.add_argument("--honour-no-penalty", action="store_true",
                    help="skip the auth penalty for requests that say no-penalty")
    sp.add_argument("--auth-penalty", default="2:8", metavar="BASE:CAP",
                    help="delay failures per remote IP (rip=) and user, BASE seconds doubling up to CAP "
                         "(default 2:8, under Postfix's 10 s auth-server read limit); off to disable")
    _add_penalty_store_argument(sp)
    sp.add_argument("--failure-delay", type=float, default=1.0, help="seconds before a failure reply (default 1)")
    sp.add_argument("--temp-fail", choices=("auto", "reply", "disconnect"), default="auto",
                    help="store outages: FAIL code=temp_fail (reply), close the connection so the MTA answers "
                         "454 (disconnect), or disconnect for clients at protocol minor 0 only: Postfix, Exim (auto)")
    sp.add_argument("--handshake", choices=("at-once", "after-version"), default="at-once",
                    help="write the handshake on connect (Exim needs it) or after the client's VERSION")
    sp.add_argument("--channel-binding", action="store_true",
                    help="offer -PLUS and HT-*-UNIQ/ENDP/EXPR to clients at protocol minor 3 that supply "
                         "channel_binding= data (e.g. Dovecot 2.4 login processes); implies --handshake after-version")
    sp.add_argument("--max-requests", type=_positive_int, default=64, metavar="N",
                    help="authentications in flight per client connection (default 64)")
    sp.add_argument("--request-timeout", type=_positive_seconds, default=300.0, metavar="SECONDS",
                    help="fail a request whose client does not continue within this long (default 300)")
    sp.add_argument("--idle-timeout", type=_positive_seconds, default=3600.0, metavar="SECONDS",
                    help="close a client connection with nothing in flight for this long (default 3600; Postfix "
                         "reconnects at once on a UNIX socket)")
    sp.add_argument("--max-connections", type=_positive_int, default=1000, metavar="N",
                    help="client connections at once (default 1000)")
    sp.add_argument("--log-format", choices=("text", "json"), default="text",
                    help="log lines as text (logfmt for authentications) or one JSON object each")
    sp.add_argument("--metrics", type=parse_host_port, metavar="HOST:PORT",
                    help="serve Prometheus metrics on http://HOST:PORT/metrics (needs saslkit[metrics])")
    sp.set_defaults(handler=cmd_serve_dovecot_auth)


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``serve`` commands."""
    serve = sub.add_parser("serve", help="run a reference server").add_subparsers(dest="command", required=True)
    _add_dovecot_auth_parser(serve, common)
    for proto, default_port in (("smtp", 2525), ("imap", 1143)):
        sp = serve.add_parser(proto, parents=[common], help=f"{proto.upper()} reference server with SASL")
        sp.add_argument("--listen", type=parse_host_port, default=("127.0.0.1", default_port),
                        help=f"HOST:PORT (default 127.0.0.1:{default_port})")
        sp.add_argument("--hostname", default="localhost", help="name in the greeting and the certificate")
        sp.add_argument("--tls-cert", help="PEM certificate (default: self-signed, made once beside the database)")
        sp.add_argument("--tls-key", help="PEM private key")
        sp.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (port 465/993 style)")
        sp.add_argument("--allow-plaintext-auth", action="store_true", help="offer PLAIN/LOGIN and tokens without TLS")
        sp.add_argument("--tls-library", choices=("auto", "pyopenssl", "ssl"), default="auto",
                        help="pyopenssl (the tls extra) verifies tls-exporter (RFC 9266); ssl (the stdlib) cannot "
                             "(default auto: pyopenssl if installed)")
        sp.add_argument("--plus-with-end-point", action="store_true",
                        help="advertise SCRAM-*-PLUS when only tls-server-end-point can be verified (by default "
                             "only with tls-exporter, or tls-unique on TLS 1.2 with extended master secret)")
        sp.add_argument("--failure-delay", type=float, default=1.0, help="seconds before a failure reply (default 1)")
        sp.add_argument("--mechanisms", type=_mechanism_list, metavar="LIST",
                        help="SASL mechanisms to offer and accept, in offer order, comma or space separated "
                             "(like Dovecot's auth_mechanisms; default: all, strongest first); "
                             + ("IMAP LOGIN needs PLAIN" if proto == "imap" else "others are refused"))
        sp.add_argument("--auth-penalty", default="2:15", metavar="BASE:CAP",
                        help="after failures from an IP or for a user, delay the next attempt's reply BASE "
                             "seconds, doubling up to CAP (default 2:15); off to disable")
        _add_penalty_store_argument(sp)
        sp.add_argument("--idle-timeout", type=_positive_seconds, default=300.0, metavar="SECONDS",
                        help="close a connection that sends nothing for this long (default 300)")
        sp.add_argument("--login-timeout", type=_positive_seconds, default=60.0, metavar="SECONDS",
                        help="close a connection not authenticated after this long (default 60)")
        sp.add_argument("--max-connections", type=_positive_int, default=1000, metavar="N",
                        help="connections served at once; more are refused (default 1000)")
        sp.add_argument("--max-connections-per-ip", type=_positive_int, default=20, metavar="N",
                        help="connections from one address at once (default 20)")
        sp.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text (logfmt for authentications) or one JSON object each")
        sp.add_argument("--metrics", type=parse_host_port, metavar="HOST:PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics (needs saslkit[metrics])")
        if proto == "smtp":
            sp.add_argument("--lmtp", action="store_true", help="speak LMTP (LHLO, per-recipient replies, STOKEN)")
            sp.add_argument("--deliver-to", help="Maildir for accepted messages (default: accept and discard)")
            sp.set_defaults(handler=cmd_serve_smtp)
        else:
            sp.add_argument("--maildir", help="Maildir whose message count SELECT INBOX shows (default: empty)")
            sp.add_argument("--unauthenticate", choices=("always", "after-auth", "off"), default="always",
                            help="advertise UNAUTHENTICATE always, only once authenticated, or disable it")
            sp.set_defaults(handler=cmd_serve_imap)
