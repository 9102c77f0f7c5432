"""STOKEN vectors (draft-slusarz-extra-smtp-submission-token-00 §7.3.1).

``recipient NUL token`` goes to a server holding the vector's fixed token key
and clock; the token MACs are recomputed.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...context import ClientCredentials, ServerContext
from ...credentials import MemoryUserStore
from ...errors import ProtocolError, TokenRejected, UsageError
from ...keys import Key, KeyRing
from ...mechanism import Failure, Success
from ...mechanisms.stoken import StokenClient, StokenServer, parse_stoken_message
from ...tokens.records import StokenRecord, TokenRecord
from ...tokens.submission import PERM_TTL, SubmissionTokens, normalize_address
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
)


@dataclass(frozen=True)
class _StokenCase:
    """One STOKEN vector (draft-slusarz-extra-smtp-submission-token-00 §7.3.1)."""

    message: bytes | None
    recipient: str | None
    token: str | None
    key: Key | None
    now: float
    perm: StokenRecord | None
    has_parsed: bool
    parsed: tuple[str, str] | None
    remote: str | None
    local: str | None
    kind: str | None
    token_error: str | None
    error_text: str | None


class _VectorStokenStore:
    """A throwaway in-memory TokenStore: the vector's permanent submission token, if any."""

    def __init__(self, records: Iterable[StokenRecord], clock: Callable[[], float]) -> None:
        self._stokens = {(r.remote, r.local): r for r in records}
        self._clock = clock

    def put(self, record: TokenRecord) -> None:
        raise UsageError("STOKEN vectors hold no reauthentication tokens")

    def get(self, token_id: str) -> TokenRecord | None:
        return None

    def revoke(self, token_id: str, at: float) -> bool:
        return False

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        return 0

    def touch(self, token_id: str, at: float) -> None:
        pass

    def stoken_get(self, remote: str, local: str) -> StokenRecord | None:
        record = self._stokens.get((remote, local))
        return record if record is not None and record.expires > self._clock() else None

    def stoken_put_if_absent(self, record: StokenRecord) -> StokenRecord:
        existing = self.stoken_get(record.remote, record.local)
        if existing is not None:
            return existing
        self._stokens[(record.remote, record.local)] = record
        return record

    def stoken_refresh(self, remote: str, local: str, expires: float) -> None:
        record = self.stoken_get(remote, local)
        if record is not None:
            self._stokens[(remote, local)] = StokenRecord(
                remote, local, record.id, record.key_id, record.created, max(record.expires, expires)
            )

    def stoken_delete(self, remote: str, local: str) -> bool:
        return self._stokens.pop((remote, local), None) is not None

    def close(self) -> None:
        pass

    def list(self, user: str | None = None) -> list[TokenRecord]:
        return []


def _number(v: Mapping[str, Any], key: str) -> float | None:
    value = v.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise BadVector(f"{key} must be POSIX seconds (a non-negative number)")
    return float(value)


def _parse_stoken_perm(raw: Any, key: Key | None, now: float) -> StokenRecord | None:
    """``perm``: the permanent token the server's store holds (``remote``, ``local``, ``id``, ``expires``)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadVector("perm must be an object")
    if key is None:
        raise BadVector("perm needs token_key_b64 and token_key_id")
    fields = [need(string_field(raw, name), f"perm.{name}") for name in ("remote", "local", "id")]
    try:
        remote, local = normalize_address(fields[0]), normalize_address(fields[1])
    except UsageError as exc:
        raise BadVector(f"perm: {exc}") from None
    expires = _number(raw, "expires")
    return StokenRecord(remote, local, fields[2], key.id, now, now + PERM_TTL if expires is None else expires)


def _parse_stoken(v: Mapping[str, Any], expect_failure: bool) -> _StokenCase:
    check_mechanism(v, "STOKEN")
    message, recipient, token = octets_field(v, "message"), string_field(v, "recipient"), string_field(v, "token")
    if (recipient is None) != (token is None):
        raise BadVector("recipient and token must be given together")
    if message is None and recipient is None:
        raise BadVector("missing message_b64 or recipient and token")
    secret, key_id = octets_field(v, "token_key"), string_field(v, "token_key_id")
    if (secret is None) != (key_id is None):
        raise BadVector("token_key_b64 and token_key_id must be given together")
    now = _number(v, "now")
    if now is None and (secret is not None or v.get("perm") is not None):
        raise BadVector("a vector with token_key_b64 or perm needs now")
    now = now or 0.0
    key = Key(key_id, "token", secret, now) if key_id is not None and secret is not None else None
    parsed = v.get("parsed")
    if parsed is not None:
        if not isinstance(parsed, dict):
            raise BadVector("parsed must be {recipient, token} or null")
        parsed = (
            need(string_field(parsed, "recipient"), "parsed.recipient"),
            need(string_field(parsed, "token"), "parsed.token"),
        )
    # ``kind`` already selects the vector kind, so the token's kind is ``token_kind``.
    expected = {name: string_field(v, name) for name in ("remote", "local", "token_kind")}
    if not expect_failure:
        missing = [name for name, value in expected.items() if value is None]
        if key is None:
            missing.append("token_key_b64, token_key_id")
        if missing:
            raise BadVector("missing " + ", ".join(missing))
    return _StokenCase(
        message=message,
        recipient=recipient,
        token=token,
        key=key,
        now=now,
        perm=_parse_stoken_perm(v.get("perm"), key, now),
        has_parsed="parsed" in v,
        parsed=parsed,
        remote=expected["remote"],
        local=expected["local"],
        kind=expected["token_kind"],
        token_error=string_field(v, "token_error"),
        error_text=string_field(v, "error_text"),
    )


def _stoken_service(c: _StokenCase) -> SubmissionTokens:
    """SubmissionTokens with the vector's key (in memory: no key-ring file), clock and permanent token."""
    now = c.now
    ring = KeyRing(Path("(vector key ring)"), [c.key] if c.key is not None else [])
    store = _VectorStokenStore([c.perm] if c.perm is not None else [], lambda: now)
    return SubmissionTokens(store, ring, clock=lambda: now)


def _stoken_reference(c: _StokenCase, token: str, report: Report) -> None:
    """Recompute the token's MAC (saslkit/tokens/submission.py) straight from RFC 2104 HMAC."""
    if c.key is None or c.remote is None or c.local is None:
        return
    parts = token.split(".")
    fields: tuple[str, ...]
    if c.kind == "TEMP" and len(parts) == 6 and parts[:2] == ["st1", "t"]:
        fields = ("stoken-temp", c.remote, c.local, parts[3])
        report.same("token key id", parts[2], c.key.id)
    elif c.kind == "PERM" and len(parts) == 5 and parts[:2] == ["st1", "p"]:
        fields = ("stoken-perm", parts[2], c.remote, c.local)
    else:
        report.problems.append(f"token is not a {c.kind} submission token: {show(token)}")
        return
    b64url = base64.urlsafe_b64encode
    mac = b64url(hmac.digest(c.key.secret, "\x00".join(fields).encode("utf-8"), "sha256")).rstrip(b"=")
    labels = ("token has", "recomputed")
    remote = b64url(c.remote.encode("utf-8")).rstrip(b"=").decode("ascii")
    report.same("remote address in the token", parts[-2], remote, labels)
    report.same("token MAC", parts[-1], mac.decode("ascii"), labels)


def _stoken_message(c: _StokenCase, expect_failure: bool, report: Report) -> bytes:
    """The message: ``message`` and/or what a client with ``recipient`` and ``token`` sends."""
    if c.recipient is None or c.token is None:
        return need(c.message, "message_b64")
    try:
        sent = StokenClient(ClientCredentials(c.recipient, c.token)).start()
    except UsageError as exc:
        if c.message is None:
            raise BadVector(f"the client refuses recipient and token ({exc}): give message_b64") from None
        (report.notes if expect_failure else report.problems).append(f"client refuses recipient and token: {exc}")
        return c.message
    if c.message is not None:
        report.same("client initial response", sent, c.message)
        return c.message
    return sent


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """STOKEN (draft §7.3.1): message parsing, the token itself, and the server's verdict."""
    expect_failure, side, error = expectation(v)
    if side is not None:
        raise BadVector("side is not used by STOKEN vectors")
    c = _parse_stoken(v, expect_failure)
    report = Report()
    message = _stoken_message(c, expect_failure, report)
    parsed: tuple[str, str] | None
    try:
        parsed = parse_stoken_message(message)
    except ProtocolError:
        parsed = None
    if c.has_parsed:
        if c.parsed is None and parsed is not None:
            report.problems.append(f"parse_stoken_message accepted it as {show(parsed)}, expected an error")
        elif c.parsed is not None:
            report.same("parse_stoken_message", parsed, c.parsed)
    if c.token_error is not None:
        if parsed is None:
            report.problems.append("token_error is given but the message does not parse")
        else:
            try:
                verified = _stoken_service(c).verify(*parsed)
                report.problems.append(f"SubmissionTokens.verify accepted it: {verified}")
            except TokenRejected as exc:
                report.same("SubmissionTokens.verify reason", exc.reason, c.token_error)
    if not expect_failure and parsed is not None:
        _stoken_reference(c, parsed[1], report)
    ctx = ServerContext(MemoryUserStore(), server_secret=FAKE_SALT_KEY, tls=True, stokens=_stoken_service(c))
    answer = StokenServer(ctx).step(message)
    if isinstance(answer, Success):
        local, kind = answer.details.get("stoken_local"), answer.details.get("stoken_kind")
        outcome = f"accepted: {answer.authcid} may deliver to {local} ({kind})"
        if expect_failure:
            report.problems.append(f"server {outcome}")
        else:
            report.same("authenticated as (remote address)", answer.authcid, c.remote)
            report.same("local address", local, c.local)
            report.same("token kind", kind, c.kind)
            report.same("authzid", answer.authzid, None)
    elif isinstance(answer, Failure):
        outcome = f"rejected ({answer.reason}: {answer.message})"
        if not expect_failure:
            report.problems.append(f"server {outcome}")
        else:
            if error is not None:
                report.same("Failure.reason", answer.reason, error)
            if c.error_text is not None and c.error_text not in answer.message:
                report.problems.append(f"Failure.message {answer.message!r} does not mention {c.error_text!r}")
    else:
        outcome = "challenged"
        report.problems.append("server sent a challenge instead of an outcome")
    return report.verdict(f"STOKEN: {outcome}")
