"""``saslkit sasl server|client``: one SASL exchange over stdio in SMTP AUTH framing (RFC 4954 §4)."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..auth.client import (
    SMTP_FRAMING,
    ClientAuth,
    ClientAuthenticated,
    EncodedChallenge,
    Rejected,
    ServerFailure,
    ServerMessage,
    ServerSuccess,
    Unverified,
    drive,
)
from ..auth.engine import Abort, ServerAuth
from ..auth.events import Authenticated, AuthFailed, AuthRefused
from ..auth.framing import encode_challenge
from ..context import ClientCredentials, ServerContext
from ..mechanism import Challenge
from ..registry import default_registry
from ._common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    MAX_STDIN_LINE,
    CliError,
    Subparsers,
    channel_binding_arg,
    open_users,
    read_secret,
    token_services,
    write_line,
)

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
    cb = channel_binding_arg(args)
    users = open_users(args)
    tokens, stokens = token_services(args)  # the store URL is checked before a key ring is created
    ring = tokens.keys
    ctx = ServerContext(
        users, ring.server_secret, channel_bindings=dict([cb]) if cb else {}, tls=True, tokens=tokens, stokens=stokens
    )
    line = stdin.readline(MAX_STDIN_LINE).rstrip("\r\n")
    words = line.split(" ")
    if len(words) not in (2, 3) or words[0].upper() != "AUTH":
        write_line(stdout, "501 5.5.4 Syntax: AUTH mechanism [initial-response]")
        return EXIT_USAGE
    name = words[1].upper()
    if (args.mech and name != args.mech.upper()) or name not in registry:
        write_line(stdout, "504 5.5.4 Unrecognized authentication type")
        return EXIT_FAIL
    engine = ServerAuth(registry, registry.offer(tls=True, channel_bindings=ctx.channel_bindings), ctx)
    outcome = engine.start(name, words[2] if len(words) == 3 else None)
    while isinstance(outcome, Challenge):
        write_line(stdout, f"334 {encode_challenge(outcome.data)}")
        reply = stdin.readline(MAX_STDIN_LINE)
        if not reply:
            write_line(stdout, "535 connection closed during authentication")
            return EXIT_FAIL
        outcome = engine.receive(reply.rstrip("\r\n"))
    if isinstance(outcome, Authenticated):
        success = outcome.success
        write_line(stdout, " ".join(["235", success.authcid] + ([success.authzid] if success.authzid else [])))
        return EXIT_OK
    if isinstance(outcome, AuthFailed):
        write_line(stdout, f"535 {outcome.reason}")
    elif isinstance(outcome, AuthRefused):
        write_line(stdout, f"535 mechanism {outcome.mechanism} not allowed here: {outcome.refusal.value}")
    else:
        write_line(stdout, _SASL_SERVER_ABORTED[outcome.reason])
    return EXIT_FAIL


def cmd_sasl_client(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """The client half of ``sasl server``: first stdin line is the secret unless --secret-file."""
    registry = default_registry()
    secret = read_secret(args, stdin)
    cb = channel_binding_arg(args)
    name = args.mech.upper()
    creds = ClientCredentials(
        args.user, secret, authzid=args.authzid, channel_binding=cb, server_offers_plus=cb is not None
    )
    auth = ClientAuth(registry.client(name, creds), framing=SMTP_FRAMING)
    write_line(stdout, f"AUTH {auth.start().arguments}")
    outcome = drive(auth, lambda: _client_sasl_message(stdin), lambda step: write_line(stdout, step.line))
    if isinstance(outcome, ClientAuthenticated):
        return EXIT_OK
    if isinstance(outcome, Rejected):
        raise CliError(f"authentication failed: {outcome.text}")
    if isinstance(outcome, Unverified):
        raise CliError(f"server not verified: {outcome.message}")
    raise CliError(f"authentication failed: {outcome.message}")


def _client_sasl_message(stdin: TextIO) -> ServerMessage:
    """One ``sasl server`` line as the client engine takes it (RFC 4954 §4 framing)."""
    line = stdin.readline(MAX_STDIN_LINE)
    if not line:
        raise CliError("server closed the exchange")
    line = line.rstrip("\r\n")
    code, _, text = line.partition(" ")
    if code == "334":
        return EncodedChallenge(text)
    return ServerSuccess() if code == "235" else ServerFailure(line)


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register the ``sasl`` commands."""
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
