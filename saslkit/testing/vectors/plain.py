"""PLAIN vectors: RFC 4616 §2 messages, parsed, built by the client and verified by the server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...context import ClientCredentials, ServerContext
from ...credentials import MIN_ITERATIONS, MemoryUserStore, make_user
from ...errors import ProtocolError
from ...mechanism import Failure, Success
from ...mechanisms.plain import PlainClient, PlainServer, parse_plain
from ...saslprep import saslprep
from ._common import FAKE_SALT_KEY, Report, allow_any, expectation, need, octets_field, show, string_field


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """RFC 4616 §2 message: client encoding, parse_plain decoding and the server's verdict."""
    expect_failure, _, error = expectation(v)
    message = need(octets_field(v, "message"), "message_b64 or message_hex")
    report = Report()
    if expect_failure:
        try:
            parsed = parse_plain(message)
            report.problems.append(f"parse_plain accepted it as {show(parsed)}")
        except ProtocolError as exc:
            if error is not None:
                report.same("parse_plain error", exc.reason, error)
        answer = PlainServer(ServerContext(MemoryUserStore(), FAKE_SALT_KEY)).step(message)
        if not isinstance(answer, Failure):
            report.problems.append("PlainServer accepted it")
        elif error is not None:
            report.same("PlainServer error", answer.reason, error)
        return report.verdict("PLAIN: malformed message rejected")
    authzid = string_field(v, "authzid") or ""
    authcid = need(string_field(v, "authcid"), "authcid")
    passwd = need(string_field(v, "passwd"), "passwd")
    report.same(
        "PlainClient message", PlainClient(ClientCredentials(authcid, passwd, authzid or None)).start(), message
    )
    try:
        report.same("parse_plain", parse_plain(message), (authzid, authcid, passwd))
    except ProtocolError as exc:
        report.problems.append(f"parse_plain rejected it: {exc.reason}: {exc}")
    user = make_user(authcid, passwd, iterations=MIN_ITERATIONS, hashes=("SHA-256",), argon2_hash=False)
    ctx = ServerContext(MemoryUserStore([user]), FAKE_SALT_KEY, authorize=allow_any)
    answer = PlainServer(ctx).step(message)
    if isinstance(answer, Success):
        report.same("PlainServer authcid", answer.authcid, user.username)
        want_authzid = saslprep(authzid) if authzid else None
        report.same("PlainServer authzid", answer.authzid, None if want_authzid == user.username else want_authzid)
    else:
        report.problems.append(f"PlainServer did not accept it: {answer}")
    return report.verdict("PLAIN: client, parser and server agree")
