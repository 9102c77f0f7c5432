"""REMEMBERME and STOKEN vectors (vectors/rememberme.json, vectors/stoken.json) and their runner kinds."""

from __future__ import annotations

import base64
import copy
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from saslkit.mechanisms.stoken import parse_stoken_message
from saslkit.testing.vectors import VectorResult, check_file

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
REFERENCE = Path(__file__).resolve().parent / "reference"  # RFC/draft examples (tests/reference/README.md)
FILES = ("rememberme.json", "stoken.json")
DRAFT_STOKEN_B64 = "dXNlckBmb28uY29tXDBzNnhXMTVoOURo"


def _load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))["vectors"]
    return vectors


def _vector(name: str, vid: str) -> dict[str, Any]:
    [vector] = [v for v in _load(name) if v["id"] == vid]
    return copy.deepcopy(vector)


def _run(tmp_path: Path, kind: str, vector: dict[str, Any]) -> VectorResult:
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps({"kind": kind, "vectors": [vector]}), encoding="utf-8")
    [result] = check_file(path)
    return result


def _assert_all_ok(results: list[VectorResult]) -> None:
    failing = [str(r) for r in results if not r.ok]
    assert results and not failing, "\n".join(failing)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- the files


@pytest.mark.parametrize("name", FILES)
def test_token_vector_file_passes(name: str) -> None:
    results = check_file(VECTORS / name)
    _assert_all_ok(results)
    assert len(results) == len(_load(name))
    assert len({r.id for r in results}) == len(results)


def test_kind_is_guessed_from_the_mechanism(tmp_path: Path) -> None:
    for name, vid in (("rememberme.json", "rememberme-good"), ("stoken.json", "stoken-temp-good")):
        path = tmp_path / name
        path.write_text(json.dumps({"vectors": [_vector(name, vid)]}), encoding="utf-8")
        [result] = check_file(path)
        assert result.ok, result


def test_rememberme_file_covers_the_required_cases() -> None:
    vectors = _load("rememberme.json")
    errors = {v.get("error") for v in vectors}
    assert {"unknown-user", "other-error", "invalid-encoding"} <= errors
    states = {v.get("state") for v in vectors}
    assert {"revoked", "expired"} <= states
    assert any(v.get("pinned_mechanism") == "HT2-SHA-256-NONE" and v["expect"] == "failure" for v in vectors)
    assert any(len(v.get("token", "")) > 4096 for v in vectors)
    assert any(v.get("message_b64") == "" for v in vectors)
    revoked = [v for v in vectors if v.get("state") == "revoked"]
    assert revoked and all("revoked" in v["error_text"] for v in revoked)


def test_stoken_file_covers_the_required_cases() -> None:
    ids = {v["id"] for v in _load("stoken.json")}
    assert {
        "stoken-temp-good", "bad-stoken-temp-expired", "bad-stoken-wrong-recipient", "bad-stoken-tampered-mac",
        "bad-stoken-draft-example", "bad-stoken-draft-example-nul", "bad-stoken-no-separator",
        "bad-stoken-empty-token", "bad-stoken-not-utf8",
    } <= ids  # fmt: skip
    expired = _vector("stoken.json", "bad-stoken-temp-expired")
    assert expired["now"] == _vector("stoken.json", "stoken-temp-good")["now"] + 8 * 24 * 3600


# --------------------------------------------------------------------------- the draft examples


def test_rememberme_draft_example_with_lf_is_another_token() -> None:
    published = base64.b64decode("QUVDNjU3NjU3NjU1Nwo=")
    stated = "AEC6576576557".encode("ascii")
    assert published == stated + b"\n" and published != stated
    [ref] = json.loads((REFERENCE / "rememberme-draft.json").read_text(encoding="utf-8"))["vectors"]
    assert base64.b64decode(ref["initial_response_b64"]) == published
    assert ref["spec_says_token"] == "AEC6576576557"
    results = {r.id: r for r in check_file(VECTORS / "rememberme.json")}
    as_published = results["bad-rememberme-draft-s4-as-published"]
    assert as_published.ok and "e=unknown-user" in as_published.detail
    assert results["rememberme-draft-s4-token-as-stated"].ok
    assert results["rememberme-draft-s4-lf-is-part-of-token"].ok
    vector = _vector("rememberme.json", "bad-rememberme-draft-s4-as-published")
    assert base64.b64decode(vector["message_b64"]) == published and vector["server_token"] == "AEC6576576557"


def test_stoken_draft_example_parses() -> None:
    message = base64.b64decode(DRAFT_STOKEN_B64)
    assert message == b"user@foo.com\\0s6xW15h9Dh"  # a literal backslash-zero
    assert parse_stoken_message(message) == ("user@foo.com", "s6xW15h9Dh")
    assert parse_stoken_message(b"user@foo.com\0s6xW15h9Dh") == ("user@foo.com", "s6xW15h9Dh")
    vector = _vector("stoken.json", "bad-stoken-draft-example")
    assert vector["message_b64"] == DRAFT_STOKEN_B64
    assert vector["parsed"] == {"recipient": "user@foo.com", "token": "s6xW15h9Dh"}
    assert vector["expect"] == "failure"


# --------------------------------------------------------------------------- independent MAC check


def test_temp_token_mac_recomputed_with_hmac() -> None:
    """HMAC-SHA-256(key, "stoken-temp" NUL remote NUL local NUL expiry), base64url without padding."""
    vector = _vector("stoken.json", "stoken-temp-good")
    key = base64.b64decode(vector["token_key_b64"])
    prefix, kind, key_id, expiry, remote_b64, mac = vector["token"].split(".")
    assert (prefix, kind, key_id) == ("st1", "t", vector["token_key_id"])
    assert int(expiry) == vector["now"] + 7 * 24 * 3600
    assert base64.urlsafe_b64decode(remote_b64 + "=" * (-len(remote_b64) % 4)).decode() == vector["remote"]
    data = b"\0".join([b"stoken-temp", vector["remote"].encode(), vector["local"].encode(), expiry.encode()])
    assert _b64url(hmac.new(key, data, "sha256").digest()) == mac


def test_perm_token_mac_recomputed_with_hmac() -> None:
    vector = _vector("stoken.json", "stoken-perm-good")
    key = base64.b64decode(vector["token_key_b64"])
    prefix, kind, token_id, _, mac = vector["token"].split(".")
    assert (prefix, kind, token_id) == ("st1", "p", vector["perm"]["id"])
    data = b"\0".join([b"stoken-perm", token_id.encode(), vector["remote"].encode(), vector["local"].encode()])
    assert _b64url(hmac.new(key, data, "sha256").digest()) == mac


# --------------------------------------------------------------------------- tampering


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda v: v.update(changes)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda v: v.pop(key)


RM_TAMPERING: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "wrong user": ("rememberme-good", _set(authcid="mallory")),
    "other server token": ("rememberme-good", _set(server_token="sk1.other")),
    "revoked": ("rememberme-good", _set(state="revoked")),
    "pinned elsewhere": ("rememberme-good", _set(pinned_mechanism="HT-SHA-256-NONE")),
    "expect failure": ("rememberme-good", _set(expect="failure")),
    "wrong error": ("bad-rememberme-revoked", _set(error="unknown-user")),
    "wrong error text": ("bad-rememberme-revoked", _set(error_text="expired")),
    "repaired revocation": ("bad-rememberme-revoked", _set(state="active")),
    "lf stripped on the server": ("rememberme-draft-s4-lf-is-part-of-token", _set(server_token="AEC6576576557")),
    "lf accepted": ("bad-rememberme-draft-s4-as-published", _set(server_token="AEC6576576557\n")),
    "token and message disagree": ("rememberme-draft-s4-token-as-stated", _set(message_b64="QUVDNjU3NjU3NjU1Nwo=")),
}

STOKEN_TAMPERING: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "wrong expected kind": ("stoken-temp-good", _set(token_kind="PERM")),
    "wrong user": ("stoken-temp-good", _set(remote="mallory@example.net")),
    "wrong local": ("stoken-temp-good", _set(local="bob@example.org")),
    "wrong recipient": ("stoken-temp-good", _set(recipient="bob@example.org")),
    "expired": ("stoken-temp-good", _set(now=2_000_000_000)),
    "other key": ("stoken-temp-good", _set(token_key_b64=base64.b64encode(b"k" * 32).decode())),
    "wrong parse": ("stoken-temp-good", _set(parsed={"recipient": "alice@example.org", "token": "x"})),
    "message differs from client": ("stoken-temp-good", _set(message_b64=base64.b64encode(b"a@b\0c").decode())),
    "perm not stored": ("stoken-perm-good", _drop("perm")),
    "perm kind": ("stoken-perm-good", _set(token_kind="TEMP")),
    "draft parse": ("bad-stoken-draft-example", _set(parsed={"recipient": "user@foo.com\\", "token": "0s6xW15h9Dh"})),
    "draft parse refused": ("bad-stoken-draft-example", _set(parsed=None)),
    "wrong token error": ("bad-stoken-temp-expired", _set(token_error="invalid-token")),
    "wrong reason": ("bad-stoken-no-separator", _set(error="authentication-failed")),
    "repaired expiry": ("bad-stoken-temp-expired", _set(now=1_700_000_000)),
}


@pytest.mark.parametrize(("vid", "tamper"), RM_TAMPERING.values(), ids=RM_TAMPERING.keys())
def test_tampered_rememberme_vector_fails(tmp_path: Path, vid: str, tamper: Callable[[dict[str, Any]], None]) -> None:
    vector = _vector("rememberme.json", vid)
    assert _run(tmp_path, "rememberme", vector).ok
    tamper(vector)
    result = _run(tmp_path, "rememberme", vector)
    assert not result.ok, result


@pytest.mark.parametrize(("vid", "tamper"), STOKEN_TAMPERING.values(), ids=STOKEN_TAMPERING.keys())
def test_tampered_stoken_vector_fails(tmp_path: Path, vid: str, tamper: Callable[[dict[str, Any]], None]) -> None:
    vector = _vector("stoken.json", vid)
    assert _run(tmp_path, "stoken", vector).ok
    tamper(vector)
    result = _run(tmp_path, "stoken", vector)
    assert not result.ok, result


def test_wrong_user_is_reported(tmp_path: Path) -> None:
    vector = _vector("rememberme.json", "rememberme-good")
    vector["authcid"] = "mallory"
    result = _run(tmp_path, "rememberme", vector)
    assert not result.ok and "authenticated as" in result.detail and "'mallory'" in result.detail


def test_wrong_kind_is_reported(tmp_path: Path) -> None:
    vector = _vector("stoken.json", "stoken-temp-good")
    vector["token_kind"] = "PERM"
    result = _run(tmp_path, "stoken", vector)
    assert not result.ok and "token kind" in result.detail


# --------------------------------------------------------------------------- malformed vectors


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ({"kind": "rememberme"}, "missing token or message_b64"),
        ({"mechanism": "REMEMBERME", "token": "t", "user": "u"}, "missing authcid"),
        ({"kind": "rememberme", "mechanism": "PLAIN", "token": "t"}, "mechanism must be 'REMEMBERME'"),
        ({"mechanism": "REMEMBERME", "token": "t", "state": "revoked", "expect": "failure"}, "give user"),
        ({"mechanism": "REMEMBERME", "token": "t", "user": "u", "state": "lost", "expect": "failure"}, "state must"),
        ({"mechanism": "REMEMBERME", "message_hex": "ff", "user": "u", "expect": "failure"}, "not UTF-8"),
        ({"mechanism": "REMEMBERME", "token": "a", "message_b64": "Yg==", "expect": "failure"}, "disagree"),
        ({"mechanism": "REMEMBERME", "token": "a", "side": "server", "expect": "failure"}, "side is not used"),
        ({"kind": "stoken"}, "missing message_b64 or recipient and token"),
        ({"mechanism": "STOKEN", "recipient": "a@b"}, "given together"),
        ({"mechanism": "STOKEN", "recipient": "a@b", "token": "t"}, "missing remote, local, token_kind"),
        ({"mechanism": "STOKEN", "message": "a", "token_key_b64": "AA==", "expect": "failure"}, "together"),
        (
            {"mechanism": "STOKEN", "message": "a", "token_key_b64": "AA==", "token_key_id": "k", "expect": "failure"},
            "needs now",
        ),
        ({"mechanism": "STOKEN", "message": "a", "now": "soon", "expect": "failure"}, "POSIX seconds"),
        ({"mechanism": "STOKEN", "message": "a", "now": 1, "perm": {}, "expect": "failure"}, "perm needs"),
        ({"mechanism": "STOKEN", "message": "a", "parsed": ["a"], "expect": "failure"}, "parsed must"),
        ({"mechanism": "STOKEN", "recipient": "a@b", "token": "", "expect": "failure"}, "client refuses"),
    ],
)
def test_malformed_token_vector(tmp_path: Path, vector: dict[str, Any], expected: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"vectors": [vector]}), encoding="utf-8")
    [result] = check_file(path)
    assert not result.ok and expected in result.detail, result
