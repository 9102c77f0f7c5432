"""REMEMBERME vectors (draft-ietf-kitten-sasl-rememberme-00 §3).

The token goes to a server whose token table the vector defines; the client's
initial response and the server's ``e=``/``m=`` failure message are checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...context import ClientCredentials, ServerContext
from ...errors import ProtocolError, TokenRejected, UsageError
from ...mechanism import Failure, Success
from ...mechanisms.rememberme import RememberMeClient, RememberMeServer
from ...tokens.records import TokenRecord
from ._common import (
    FAKE_SALT_KEY,
    BadVector,
    Report,
    check_mechanism,
    expectation,
    need,
    octets_field,
    show,
    string_field,
    token_users,
)

#: The id of the one token a REMEMBERME vector's server holds.
_RM_RECORD_ID = "vector-rememberme-record"


#: States a REMEMBERME vector can give its server's token.
_RM_STATES = ("active", "revoked", "expired")


@dataclass(frozen=True)
class _RememberMeCase:
    """One REMEMBERME vector (draft-ietf-kitten-sasl-rememberme-00 §3): the token octets
    the client sends and the server's token table."""

    message: bytes
    table: Mapping[str, TokenRecord]
    authcid: str | None
    error_text: str | None


class _VectorRememberMeTokens:
    """A TokenVerifier whose store is the vector's token table.

    Tokens are compared exactly (never trimmed), so the draft's example octets with
    their trailing LF are a different token from ``AEC6576576557``.  The state checks
    and their messages follow :class:`~saslkit.tokens.reauth.TokenService`.
    """

    def __init__(self, table: Mapping[str, TokenRecord]) -> None:
        self._table = table
        self.used: list[str] = []

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        record = self._table.get(token)
        if record is None:
            raise TokenRejected("unknown-user", "unknown token")
        if record.revoked is not None:
            raise TokenRejected("revoked", "token was revoked; authenticate with your password to get a new one")
        if record.expires is not None:
            raise TokenRejected("expired", "token expired")
        if record.mechanism is not None and record.mechanism != mechanism.upper():
            raise TokenRejected("wrong-mechanism", f"token is bound to {record.mechanism}")
        return record

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        return []  # REMEMBERME never asks: the token itself is sent

    def mark_used(self, record: TokenRecord) -> None:
        self.used.append(record.id)


def _parse_rememberme(v: Mapping[str, Any], expect_failure: bool) -> _RememberMeCase:
    check_mechanism(v, "REMEMBERME")
    token, message = octets_field(v, "token"), octets_field(v, "message")
    if token is not None and message is not None and token != message:
        raise BadVector("token and message disagree")
    sent = need(token if token is not None else message, "token or message_b64")
    user, server_token = string_field(v, "user"), string_field(v, "server_token")
    pinned = string_field(v, "pinned_mechanism")
    state = v.get("state", "active")
    if state not in _RM_STATES:
        raise BadVector(f"state must be one of {list(_RM_STATES)}")
    if user is None and (server_token is not None or pinned is not None or state != "active"):
        raise BadVector("server_token, state and pinned_mechanism describe the token of user: give user")
    table: dict[str, TokenRecord] = {}
    if user is not None:
        if server_token is None:
            try:
                server_token = sent.decode("utf-8")
            except UnicodeDecodeError:
                raise BadVector("the token octets are not UTF-8: give server_token") from None
        table[server_token] = TokenRecord(
            _RM_RECORD_ID, user, "RANDOM", "vector", 0.0,
            expires=0.0 if state == "expired" else None,
            mechanism=pinned.upper() if pinned else None,
            revoked=0.0 if state == "revoked" else None,
        )  # fmt: skip
    authcid = string_field(v, "authcid")
    if not expect_failure and authcid is None:
        raise BadVector("missing authcid (the identity the server must report)")
    return _RememberMeCase(sent, table, authcid, string_field(v, "error_text"))


def _rememberme_server_final(answer: Failure, report: Report) -> tuple[str, str] | None:
    """``(server-error-value, server-error-message-value)`` from ``Failure.data`` (draft §3)."""
    try:
        text = (answer.data or b"").decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    head, sep, message = text.partition(",m=")
    if not head.startswith("e=") or len(head) == 2 or not sep or not message:
        report.problems.append(f"Failure.data is not e=<value>,m=<text>: {show(answer.data)}")
        return None
    return head[2:], message


def _run_rememberme_client(c: _RememberMeCase, expect_failure: bool, report: Report) -> str:
    """A client holding the token as a string must send exactly the vector's octets."""
    try:
        text = c.message.decode("utf-8")
    except UnicodeDecodeError:
        return "client skipped (no token string gives octets that are not UTF-8)"
    try:
        client = RememberMeClient(ClientCredentials("", text))
    except UsageError as exc:
        if not expect_failure:
            report.problems.append(f"client refuses the token: {exc}")
        return f"client refuses it ({exc})"
    report.same("client initial response", client.start(), c.message)
    if not expect_failure:
        try:
            client.finish(None)
        except ProtocolError as exc:
            report.problems.append(f"client did not finish: {exc}")
    return "client sends the same octets"


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """REMEMBERME (draft §3): the server's verdict and ``e=``/``m=``, and the client's initial response."""
    expect_failure, side, error = expectation(v)
    if side is not None:
        raise BadVector("side is not used by REMEMBERME vectors")
    c = _parse_rememberme(v, expect_failure)
    report = Report()
    tokens = _VectorRememberMeTokens(c.table)
    ctx = ServerContext(token_users({r.user for r in c.table.values()}), server_secret=FAKE_SALT_KEY, tls=True,
                        tokens=tokens)
    answer = RememberMeServer(ctx).step(c.message)
    if isinstance(answer, Success):
        outcome = f"accepted as {answer.authcid!r}"
        if expect_failure:
            report.problems.append(f"server {outcome}")
        else:
            report.same("authenticated as", answer.authcid, c.authcid)
            report.same("authzid", answer.authzid, None)
            report.same("token id", answer.details.get("token_id"), _RM_RECORD_ID)
            report.same("tokens marked used", tokens.used, [_RM_RECORD_ID])
    elif isinstance(answer, Failure):
        wire = _rememberme_server_final(answer, report)
        outcome = f"rejected (e={wire[0]})" if wire else f"rejected ({answer.reason})"
        if not expect_failure:
            report.problems.append(f"server rejected it: {answer.reason}: {answer.message}")
        elif wire is not None:
            if error is not None:
                report.same("e=", wire[0], error)
            if c.error_text is not None and c.error_text not in wire[1]:
                report.problems.append(f"m= {wire[1]!r} does not mention {c.error_text!r}")
            want = "invalid-encoding" if wire[0] == "invalid-encoding" else "authentication-failed"
            report.same("Failure.reason", answer.reason, want)
    else:
        outcome = "challenged"
        report.problems.append("server sent a challenge instead of an outcome")
    client = _run_rememberme_client(c, expect_failure, report)
    return report.verdict(f"REMEMBERME: {outcome}; {client}")
