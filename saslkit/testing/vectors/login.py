"""LOGIN vectors (draft-murchison-sasl-login-00 §2): a server's challenges and a client's answers, replayed."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ...context import ClientCredentials, ServerContext
from ...credentials import MIN_ITERATIONS, MemoryUserStore, make_user
from ...mechanism import Challenge, Failure, ServerStep, Success
from ...mechanisms.login import LoginClient, LoginServer
from ._common import FAKE_SALT_KEY, BadVector, Report, expectation, octets_field, show, string_field


def _responses(v: Mapping[str, Any]) -> list[bytes]:
    """``responses_b64``: the client's answers after the initial response, base64 (RFC 4648 §4)."""
    raw = v.get("responses_b64", [])
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise BadVector("responses_b64 must be a list of base64 strings")
    try:
        return [base64.b64decode(r.encode("ascii"), validate=True) for r in raw]
    except (ValueError, binascii.Error) as exc:
        raise BadVector(f"responses_b64 does not decode: {exc}") from None


def _challenges(v: Mapping[str, Any]) -> list[bytes] | None:
    raw = v.get("challenges")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise BadVector("challenges must be a list of strings")
    return [c.encode("utf-8") for c in raw]


def _replay(server: LoginServer, first: bytes | None, answers: list[bytes]) -> tuple[list[bytes], ServerStep]:
    """Feed the initial response and the answers; the challenges seen and the last step."""
    seen: list[bytes] = []
    step = server.step(first)
    for answer in answers:
        if not isinstance(step, Challenge):
            break
        seen.append(step.data)
        step = server.step(answer)
    return seen, step


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """Server challenges and verdict for the given answers; on success also the client's answers."""
    expect_failure, _, error = expectation(v)
    authcid, passwd = string_field(v, "authcid"), string_field(v, "passwd")
    first, answers, challenges = octets_field(v, "initial_response"), _responses(v), _challenges(v)
    users = [make_user(authcid, passwd, iterations=MIN_ITERATIONS, hashes=("SHA-256",), argon2_hash=False)
             ] if authcid and passwd else []
    report = Report()
    seen, step = _replay(LoginServer(ServerContext(MemoryUserStore(users), FAKE_SALT_KEY)), first, answers)
    if challenges is not None:
        report.same("LoginServer challenges", seen, challenges)
    if expect_failure:
        if not isinstance(step, Failure):
            report.problems.append(f"LoginServer did not reject it: {show(step)}")
        elif error is not None:
            report.same("LoginServer error", step.reason, error)
        return report.verdict("LOGIN: rejected")
    if not isinstance(step, Success):
        report.problems.append(f"LoginServer did not accept it: {show(step)}")
    elif authcid is not None:
        report.same("LoginServer authcid", step.authcid, authcid)
    if first is None and authcid and passwd:
        client = LoginClient(ClientCredentials(authcid, passwd))
        report.same("LoginClient answers", [client.step(c) for c in seen], answers)
    return report.verdict("LOGIN: server (and client) agree")
