"""The vector runner (saslkit.testing.vectors), the files in vectors/ and an independent cross-check with scramp."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from saslkit.testing.vectors import VectorResult, check_file, check_files, summarize

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SHARED = Path(__file__).resolve().parent / "reference"  # RFC examples (tests/reference/README.md)
SHARED_FILES = [
    "scram-rfc5802-sha1.json",
    "scram-rfc7677-sha256.json",
    "scram-xep0474-sha1-plus.json",
    "plain-rfc4616.json",
    "saslprep-rfc4013.json",
]
MESSAGES = ("client_first", "server_first", "client_final", "server_final")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))["vectors"]
    return vectors


def _shared(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((SHARED / name).read_text(encoding="utf-8"))["vectors"]
    return vectors


def _assert_all_ok(results: list[VectorResult]) -> None:
    failing = [str(r) for r in results if not r.ok]
    assert results and not failing, "\n".join(failing)


# --------------------------------------------------------------------------- the files


def test_expected_vector_files_exist() -> None:
    names = {p.name for p in VECTORS.glob("*.json")}
    assert {"scram-sha1.json", "scram-sha256.json", "scram-sha512.json", "scram-plus.json"} <= names
    assert {"scram-bad.json", "plain.json", "saslprep.json"} <= names
    assert (VECTORS / "README.md").is_file()


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.name)
def test_repo_vector_file_passes(path: Path) -> None:
    results = check_file(path)
    _assert_all_ok(results)
    assert len(results) == len(json.loads(path.read_text(encoding="utf-8"))["vectors"])


@pytest.mark.parametrize("name", SHARED_FILES)
def test_shared_reference_file_passes(name: str) -> None:
    _shared(name)
    _assert_all_ok(check_file(SHARED / name))


def test_xep0474_extensions_reported_as_partial() -> None:
    """saslkit sends neither h= nor x=: both sides stop there, proof and v= are recomputed."""
    [result] = [r for r in check_file(VECTORS / "scram-plus.json") if r.id == "xep0474-scram-sha-1-plus-ssdp"]
    assert result.ok and "h=G6k/rBLDqgOhRRaCuuatSDFkJ08=" in result.detail and "x=19C6532F" in result.detail


def test_bad_scram_vectors_cover_the_required_cases() -> None:
    errors = {v.get("error") for v in _load("scram-bad.json")}
    assert {
        "invalid-proof", "invalid-server-signature", "other-error", "invalid-encoding",
        "server-does-support-channel-binding", "unsupported-channel-binding-type", "extensions-not-supported",
        "invalid-username-encoding", "channel-bindings-dont-match",
    } <= errors  # fmt: skip
    assert {v.get("side") for v in _load("scram-bad.json")} == {"server", "client", None}


# --------------------------------------------------------------------------- published values


@pytest.mark.parametrize(
    ("ours", "reference"),
    [("scram-sha1.json", "scram-rfc5802-sha1.json"), ("scram-sha256.json", "scram-rfc7677-sha256.json")],
)
def test_published_scram_values_are_byte_identical(ours: str, reference: str) -> None:
    [ref] = _shared(reference)
    [vec] = _load(ours)
    for name in MESSAGES:
        assert vec[name] == ref["messages"][f"{name}_message"]
    assert (vec["username"], vec["password"], vec["salt_b64"]) == (ref["username"], ref["password"], ref["salt_b64"])
    assert (vec["iterations"], vec["client_nonce"]) == (ref["iteration_count"], ref["client_nonce"])
    assert vec["server_nonce"] == ref["server_nonce_suffix"]
    assert vec["auth_message"] == ref["derived"]["auth_message"]
    assert base64.b64decode(vec["stored_key_b64"]).hex() == ref["derived"]["stored_key_hex"]
    assert base64.b64decode(vec["server_key_b64"]).hex() == ref["derived"]["server_key_hex"]


def test_published_xep0474_values_are_byte_identical() -> None:
    [ref] = _shared("scram-xep0474-sha1-plus.json")
    [vec] = [v for v in _load("scram-plus.json") if v["id"] == ref["id"]]
    for name in MESSAGES:
        assert vec[name] == ref["messages"][f"{name}_message"]
    assert vec["cb_type"] == ref["channel_binding"]["type"]
    assert vec["cb_data_hex"] == ref["channel_binding"]["cb_data_hex"]
    assert vec["auth_message"] == ref["derived"]["auth_message"]


def test_published_plain_and_saslprep_values_are_identical() -> None:
    plain = {v["id"]: v for v in _load("plain.json")}
    for ref in _shared("plain-rfc4616.json"):
        vec = plain[ref["id"]]
        assert (vec["message_b64"], vec["message_hex"]) == (ref["message_b64"], ref["message_hex"])
        assert (vec["authzid"], vec["authcid"], vec["passwd"]) == (ref["authzid"], ref["authcid"], ref["passwd"])
    prep = {v["id"]: v for v in _load("saslprep.json")}
    refs = _shared("saslprep-rfc4013.json")
    assert len(refs) == 7
    for ref in refs:
        assert (prep[ref["id"]]["input"], prep[ref["id"]]["output"]) == (ref["input"], ref["output"])
        assert prep[ref["id"]]["error"] is ref["error"]


# --------------------------------------------------------------------------- scramp (independent implementation)


def scramp_exchange(
    mechanism: str,
    username: str,
    password: str,
    salt: bytes,
    iterations: int,
    c_nonce: str,
    s_nonce: str,
    cb: tuple[str, bytes] | None = None,
) -> dict[str, Any]:
    """Run scramp's client against scramp's server; return a flat vector (vectors/README.md)."""
    scramp = pytest.importorskip("scramp")
    mech = scramp.ScramMechanism(mechanism)
    salt, stored_key, server_key, iterations = mech.make_auth_info(password, iteration_count=iterations, salt=salt)
    server = mech.make_server(lambda _: (salt, stored_key, server_key, iterations), channel_binding=cb, s_nonce=s_nonce)
    client = scramp.ScramClient([mechanism], username, password, channel_binding=cb, c_nonce=c_nonce)
    client_first = client.get_client_first()
    server.set_client_first(client_first)
    server_first = server.get_server_first()
    client.set_server_first(server_first)
    client_final = client.get_client_final()
    server.set_client_final(client_final)
    server_final = server.get_server_final()
    client.set_server_final(server_final)  # raises if v= does not verify
    vector: dict[str, Any] = {
        "id": f"scramp-{mechanism.lower()}",
        "mechanism": mechanism,
        "username": username,
        "password": password,
        "salt_b64": _b64(salt),
        "iterations": iterations,
        "client_nonce": c_nonce,
        "server_nonce": s_nonce,
        "client_first": client_first,
        "server_first": server_first,
        "client_final": client_final,
        "server_final": server_final,
        "stored_key_b64": _b64(stored_key),
        "server_key_b64": _b64(server_key),
    }
    if cb is not None:
        vector["cb_type"], vector["cb_data_b64"] = cb[0], _b64(cb[1])
    return vector


def _scramp_can_run(v: dict[str, Any]) -> bool:
    """scramp has no authzid, no tls-exporter and no extension attributes."""
    return (
        v.get("expect", "success") == "success"
        and not v.get("authzid")
        and v.get("cb_type") in (None, "tls-server-end-point")
        and v["mechanism"].endswith("-PLUS") == ("cb_type" in v)
        and v["server_first"].count(",") == 2
    )


CROSS_CHECKED = [
    pytest.param(v, id=v["id"])
    for name in ("scram-sha1.json", "scram-sha256.json", "scram-sha512.json", "scram-plus.json")
    for v in _load(name)
    if _scramp_can_run(v)
]


@pytest.mark.interop
@pytest.mark.parametrize("vector", CROSS_CHECKED)
def test_scramp_reproduces_vector(vector: dict[str, Any]) -> None:
    cb = (vector["cb_type"], bytes.fromhex(vector["cb_data_hex"])) if "cb_type" in vector else None
    theirs = scramp_exchange(
        vector["mechanism"],
        vector["username"],
        vector["password"],
        base64.b64decode(vector["salt_b64"]),
        vector["iterations"],
        vector["client_nonce"],
        vector["server_nonce"],
        cb,
    )
    for name in (*MESSAGES, "stored_key_b64", "server_key_b64"):
        assert theirs[name] == vector[name], name


def test_sha512_and_endpoint_vectors_are_cross_checked() -> None:
    ids = {p.id for p in CROSS_CHECKED}
    assert {"generated-scram-sha-512", "scram-sha-256-plus-tls-server-end-point"} <= ids
    assert {"rfc5802-s5-scram-sha-1", "rfc7677-s3-scram-sha-256"} <= ids


@pytest.mark.interop
def test_scramp_generated_file_passes(tmp_path: Path) -> None:
    salt = bytes(range(16))
    cases = [
        ("SCRAM-SHA-1", "user", None),
        ("SCRAM-SHA-256", "a,b=c", None),  # saslname escaping (RFC 5802 §5.1 'n')
        ("SCRAM-SHA-512", "user", None),
        ("SCRAM-SHA-256-PLUS", "user", ("tls-server-end-point", bytes(range(100, 132)))),
    ]
    vectors = [
        scramp_exchange(mech, user, "pencil", salt, 4096, "scrampClientNonce42", "scrampServerNonce%$)", cb)
        for mech, user, cb in cases
    ]
    path = tmp_path / "scramp.json"
    path.write_text(json.dumps({"description": "generated by scramp", "vectors": vectors}), encoding="utf-8")
    results = check_file(path)
    _assert_all_ok(results)
    assert [r.id for r in results] == [v["id"] for v in vectors]


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"vectors": [', "not valid JSON"),
        (b"\xff\xfe not utf-8", "cannot read"),
        (b"[]", "unknown file shape"),
        (b'{"tests": []}', "unknown file shape"),
        (b'{"vectors": []}', "no vectors"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_unreadable_file_is_one_failing_result(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    [result] = check_file(path)
    assert not result.ok and expected in result.detail and result.file == str(path)


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    [missing] = check_file(tmp_path / "nope.json")
    assert not missing.ok and "cannot read" in missing.detail
    [empty] = check_files([tmp_path])
    assert not empty.ok and "no *.json" in empty.detail


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ("not an object", "not a JSON object"),
        ({"id": "x", "kind": "nope"}, "unknown kind"),
        ({"id": "x", "foo": 1}, "unknown vector shape"),
        ({"id": "x", "mechanism": "CRAM-MD5"}, "unsupported mechanism"),
        ({"id": "x", "mechanism": "SCRAM-SHA-256"}, "missing username"),
        ({"id": "x", "mechanism": "SCRAM-MD5", "expect": "failure"}, "not a SCRAM mechanism"),
        ({"id": "x", "kind": "plain", "message_b64": "***"}, "does not decode"),
        ({"id": "x", "kind": "plain", "message_b64": "AA==", "message_hex": "01"}, "disagree"),
        ({"id": "x", "input": "a", "output": "a", "stored": "yes"}, "booleans"),
        ({"id": "x", "input": 7, "output": "7"}, "must be a string"),
    ],
)
def test_malformed_vector_fails_without_crashing(tmp_path: Path, vector: object, expected: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"vectors": [vector]}), encoding="utf-8")
    [result] = check_file(path)
    assert not result.ok and expected in result.detail, result


def _tamper(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(v: dict[str, Any]) -> None:
        v[key] = value

    return apply


SHA1_TAMPERING = {
    "server_final": _tamper("server_final", "v=rmF9pqV8S7suAoZWja4dJRkFsKA="),
    "client_first": _tamper("client_first", "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawM"),
    "stored_key": _tamper("stored_key_b64", _b64(bytes(20))),
    "auth_message": _tamper("auth_message", "n=user"),
    "salted_password": _tamper("salted_password_hex", "00" * 20),
    "password": _tamper("password", "pencil2"),
    "iterations": _tamper("iterations", 4097),
    "expect_failure": _tamper("expect", "failure"),
    "expect_bogus": _tamper("expect", "maybe"),
}


@pytest.mark.parametrize("tamper", SHA1_TAMPERING.values(), ids=SHA1_TAMPERING.keys())
def test_tampered_vector_is_reported_failing(tmp_path: Path, tamper: Callable[[dict[str, Any]], None]) -> None:
    [vector] = _load("scram-sha1.json")
    tamper(vector)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps({"vectors": [vector, *_load("scram-sha256.json")]}), encoding="utf-8")
    results = check_file(path)
    assert [r.ok for r in results] == [False, True], results
    assert summarize(results) == "1 passed, 1 failed"


BAD_TAMPERING = {
    "wrong error": ("wrong-proof", _tamper("error", "other-error")),
    "wrong side": ("wrong-proof", _tamper("side", "client")),
    "wrong e= message": ("wrong-proof", _tamper("server_final", "e=other-error")),
    "fault repaired": (
        "wrong-server-signature",
        _tamper("server_final", "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
    ),
    "no messages": ("bad-gs2-flag", _tamper("client_first", None)),
}


@pytest.mark.parametrize(("vid", "tamper"), BAD_TAMPERING.values(), ids=BAD_TAMPERING.keys())
def test_tampered_failure_vector_is_reported_failing(
    tmp_path: Path, vid: str, tamper: Callable[[dict[str, Any]], None]
) -> None:
    [vector] = [v for v in _load("scram-bad.json") if v["id"] == vid]
    tamper(vector)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps({"vectors": [vector]}), encoding="utf-8")
    [result] = check_file(path)
    assert not result.ok, result


def test_plain_vector_with_wrong_message_fails(tmp_path: Path) -> None:
    vector = dict(_load("plain.json")[0], message_b64=_b64(b"\0tim\0tanstaafTANSTAAF"))
    vector.pop("message_hex")
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"vectors": [vector, dict(vector, expect="failure")]}), encoding="utf-8")
    assert [r.ok for r in check_file(path)] == [False, False]


def test_check_files_accepts_directories_and_summarizes() -> None:
    results = check_files([VECTORS])
    _assert_all_ok(results)
    assert {Path(r.file).name for r in results} == {p.name for p in VECTORS.glob("*.json")}
    assert summarize(results) == f"{len(results)} passed, 0 failed"
    assert str(results[0]).startswith("ok ")
