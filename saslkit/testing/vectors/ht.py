"""HT vectors (``HT-*``: draft-schmaus-kitten-sasl-ht-09; ``HT2-*``: draft-ietf-kitten-sasl-ht-01).

Run on both sides like SCRAM, against a server holding the vector's one
token; the initiator and responder HMACs are recomputed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...context import ClientCredentials, ServerContext
from ...errors import AuthenticationFailed, PreparationError, ProtocolError, TokenRejected
from ...mechanism import Failure, Success
from ...mechanisms.ht import HT_MECHANISMS, HTClient, HTServer, HTSpec
from ...saslprep import saslprep
from ...tokens.records import TokenRecord
from ._common import (
    FAKE_SALT_KEY,
    BadVector,
    Report,
    Side,
    expectation,
    merge_sides,
    need,
    octets_field,
    rejection_verdict,
    string_field,
    token_users,
)

#: Keys an HT vector that expects success must have (any ``_b64``/``_hex`` form for octets).
_HT_REQUIRED = ("mechanism", "authcid", "token", "initiator", "responder")


#: The id of the one token an HT vector's server holds.
_HT_RECORD_ID = "vector-record"


@dataclass(frozen=True)
class _HTCase:
    """One HT vector (HT-09 §3 / ietf-01 §3 exchange plus its inputs)."""

    spec: HTSpec
    authcid: str | None
    token: str | None
    client_token: str | None
    token_user: str | None
    token_mechanism: str | None
    cb: tuple[str, bytes] | None
    client_cb_data: bytes | None
    server_cb: bool
    bindings_used: frozenset[str]
    extra_initiator: str
    extra_responder: str
    initiator: bytes | None
    responder: bytes | None


class _VectorTokens:
    """A TokenVerifier holding the vector's one token (pinned if ``token_mechanism``)."""

    def __init__(self, record: TokenRecord | None, token: str) -> None:
        self._record = record
        self._token = token
        self.used: list[str] = []

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        raise TokenRejected("invalid-token", "HT vectors hold no bearer tokens")

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        r = self._record
        if r is None or user != r.user or (r.mechanism is not None and r.mechanism != mechanism.upper()):
            return []
        return [(r, self._token)]

    def mark_used(self, record: TokenRecord) -> None:
        self.used.append(record.id)


def _parse_ht(v: Mapping[str, Any], expect_failure: bool) -> _HTCase:
    if not expect_failure:
        missing = [k for k in _HT_REQUIRED if v.get(k) is None and octets_field(v, k) is None]
        if missing:
            raise BadVector("missing " + ", ".join(missing))
    mechanism = need(string_field(v, "mechanism"), "mechanism").upper()
    spec = HT_MECHANISMS.get(mechanism)
    if spec is None:
        raise BadVector(f"not an HT mechanism: {mechanism!r}")
    cb_type, cb_data = string_field(v, "cb_type"), octets_field(v, "cb_data")
    if (cb_type is None) != (cb_data is None):
        raise BadVector("cb_type and cb_data must be given together")
    if not expect_failure and cb_type != spec.cb_type:
        raise BadVector(f"{mechanism} needs cb_type {spec.cb_type!r}, the vector has {cb_type!r}")
    server_cb = v.get("server_cb", True)
    if not isinstance(server_cb, bool):
        raise BadVector("server_cb must be a boolean")
    used = v.get("bindings_used", [])
    if not isinstance(used, list) or not all(isinstance(u, str) for u in used):
        raise BadVector("bindings_used must be a list of channel-binding types")
    extra_initiator = string_field(v, "extra_initiator") or ""
    extra_responder = string_field(v, "extra_responder") or ""
    if (extra_initiator or extra_responder) and not spec.extended:
        raise BadVector(f"{mechanism} has no extra values (HT2-* only)")
    return _HTCase(
        spec=spec,
        authcid=string_field(v, "authcid"),
        token=string_field(v, "token"),
        client_token=string_field(v, "client_token"),
        token_user=string_field(v, "token_user"),
        token_mechanism=string_field(v, "token_mechanism"),
        cb=(cb_type, cb_data) if cb_type is not None and cb_data is not None else None,
        client_cb_data=octets_field(v, "client_cb_data"),
        server_cb=server_cb,
        bindings_used=frozenset(used),
        extra_initiator=extra_initiator,
        extra_responder=extra_responder,
        initiator=octets_field(v, "initiator"),
        responder=octets_field(v, "responder"),
    )


def _ht_reference(c: _HTCase) -> dict[str, bytes]:
    """initiator-msg and success responder-msg recomputed from the inputs (HT-09 §3.1/§3.3,
    ietf-01 §3.1/§3.3.1), straight from RFC 2104 HMAC and not through the mechanism."""
    if c.authcid is None or c.token is None:
        return {}
    key, cb = c.token.encode("utf-8"), c.cb[1] if c.cb is not None and c.spec.cb_type is not None else b""
    ext_i, ext_r = c.extra_initiator.encode("utf-8"), c.extra_responder.encode("utf-8")
    mac_i = hmac.digest(key, b"Initiator" + cb + ext_i, c.spec.algo)
    mac_r = hmac.digest(key, b"Responder" + cb + ext_r, c.spec.algo)
    name = c.authcid.encode("utf-8")
    if c.spec.extended:
        return {"initiator": name + b"\0" + ext_i + b"\0" + mac_i, "responder": b"\0" + ext_r + b"\0" + mac_r}
    return {"initiator": name + b"\0" + mac_i, "responder": mac_r}


def _run_ht_server(c: _HTCase) -> Side:
    """Feed the initiator-msg to an HTServer holding the vector's token; compare its answer."""
    side = Side()
    if c.initiator is None:
        side.stopped = "no initiator"
        return side
    user = c.token_user
    if user is None and c.authcid is not None:
        try:
            user = saslprep(c.authcid)
        except PreparationError:
            user = c.authcid
    record = None
    if user is not None and c.token is not None:
        pin = c.token_mechanism.upper() if c.token_mechanism else None
        record = TokenRecord(_HT_RECORD_ID, user, "RANDOM", "vector", 0.0, mechanism=pin)
    tokens = _VectorTokens(record, c.token or "")
    ctx = ServerContext(
        token_users([record.user] if record is not None else []),
        server_secret=FAKE_SALT_KEY,
        channel_bindings=dict([c.cb]) if c.cb is not None and c.server_cb else {},
        tls=True,
        tokens=tokens,
        bindings_used=set(c.bindings_used),
    )
    server = HTServer(c.spec.name, ctx, extra_values=c.extra_responder)
    answer = server.step(c.initiator)
    if isinstance(answer, Failure):
        side.rejected = answer.reason
        if c.responder is not None and c.spec.extended:
            side.report.same("server failure-response", answer.data, c.responder)
    elif isinstance(answer, Success):
        side.success = True
        side.report.same("responder", answer.additional_data, c.responder)
        side.report.same("authenticated as", answer.authcid, user)
        side.report.same("token id", answer.details.get("token_id"), _HT_RECORD_ID)
        side.report.same("tokens marked used", tokens.used, [_HT_RECORD_ID])
        if c.spec.extended:
            side.report.same("client extra values seen by the server", answer.details.get("extra_values"),
                             c.extra_initiator)
        if c.spec.cb_type is not None and c.spec.cb_type not in ctx.bindings_used:
            side.report.problems.append(f"{c.spec.cb_type} not recorded in bindings_used")
    else:
        side.report.problems.append("server sent a challenge instead of an outcome")
    return side


def _run_ht_client(c: _HTCase) -> Side:
    """An HTClient with the vector's inputs must send ``initiator`` and verify ``responder``."""
    side = Side()
    token = c.client_token if c.client_token is not None else c.token
    if c.authcid is None or token is None:
        side.stopped = "client side needs authcid and token"
        return side
    cb = None
    if c.spec.cb_type is not None:
        if c.cb is None:
            side.stopped = "client side needs cb_type and cb_data"
            return side
        cb = (c.cb[0], c.client_cb_data if c.client_cb_data is not None else c.cb[1])
    client = HTClient(c.spec.name, ClientCredentials(c.authcid, token, channel_binding=cb),
                      extra_values=c.extra_initiator)
    first = client.start()
    if c.initiator is not None and first != c.initiator:
        side.report.same("initiator", first, c.initiator)
        side.stopped = "initiator differs"
        return side
    if c.responder is None:
        side.stopped = "no responder"
        return side
    try:
        client.step(c.responder)
        client.finish()
    except (ProtocolError, AuthenticationFailed) as exc:
        side.rejected = exc.reason
        return side
    side.success = client.verified
    if c.spec.extended:
        side.report.same("server extra values seen by the client", client.peer_extra_values, c.extra_responder)
    return side


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """HT-09 / ietf-01 exchange on both sides, plus the recomputed HMACs."""
    expect_failure, side_name, error = expectation(v)
    c = _parse_ht(v, expect_failure)
    report = Report()
    if not expect_failure:
        labels = ("vector has", "recomputed")
        for name, value in _ht_reference(c).items():
            report.same(name, getattr(c, name), value, labels)
    sides: dict[str, Side] = {}
    if side_name != "client":
        sides["server"] = _run_ht_server(c)
    if side_name != "server":
        sides["client"] = _run_ht_client(c)
    if not expect_failure:
        merge_sides(report, sides, partial_is_problem=True)
        return report.verdict(f"{c.spec.name}: both sides match")
    return rejection_verdict(report, sides, side_name, error, c.spec.name)
