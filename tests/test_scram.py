"""SCRAM (RFC 5802, RFC 7677, draft-melnikov-scram-sha-512): vectors, round trips and every server rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from saslkit import (
    AuthenticationFailed,
    Challenge,
    ClientCredentials,
    Failure,
    FailureReason,
    MemoryUserStore,
    ProtocolError,
    ScramCredential,
    ServerContext,
    Success,
    UsageError,
    UserRecord,
    make_user,
    run_exchange,
)
from saslkit.credentials import SCRAM_HASHES, salted_password, scram_keys
from saslkit.mechanisms.scram import (
    SCRAM_MECHANISMS,
    SERVER_ERRORS,
    ClientFinal,
    ClientFirst,
    GS2Header,
    ScramClient,
    ScramServer,
    ServerError,
    ServerFinal,
    ServerFirst,
    decode_message,
    decode_proof,
    parse_client_final,
    parse_client_first,
    parse_server_final,
    parse_server_first,
)

SECRET = b"unit-test-server-secret-0123456789"
ITERATIONS = 4096
PASSWORD = "pencil"
CB_DATA = {
    "tls-unique": b"\x01" * 12,
    "tls-server-end-point": bytes(range(32)),
    "tls-exporter": b"\xee" * 32,
}
BASE_MECHS = [m for m, (_, plus) in SCRAM_MECHANISMS.items() if not plus]
PLUS_MECHS = [m for m, (_, plus) in SCRAM_MECHANISMS.items() if plus]


#: RFC examples as reference data (tests/reference/README.md).
REFERENCE = Path(__file__).resolve().parent / "reference"


def _load_vector(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text(encoding="utf-8"))["vectors"][0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def users() -> MemoryUserStore:
    return MemoryUserStore(
        [
            make_user("user", PASSWORD, iterations=ITERATIONS, argon2_hash=False),
            make_user("admin", "other secret", iterations=ITERATIONS, argon2_hash=False),
            make_user("a,b=c", PASSWORD, iterations=ITERATIONS, argon2_hash=False),
            make_user("IX", PASSWORD, iterations=ITERATIONS, argon2_hash=False),
        ],
        default_iterations=ITERATIONS,
    )


def ctx(users: MemoryUserStore, **kw: object) -> ServerContext:
    return ServerContext(users, server_secret=SECRET, **kw)  # type: ignore[arg-type]


def client(mech: str, username: str = "user", password: str = PASSWORD, **kw: object) -> ScramClient:
    return ScramClient(mech, ClientCredentials(username, password, **kw))  # type: ignore[arg-type]


def parse_attrs(message: bytes) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.decode().split(","))


def manual_final(
    hash_name: str, password: str, bare: str, server_first: bytes, cbind_input: bytes, extra: str = ""
) -> tuple[bytes, bytes]:
    """Compute a client-final message by hand (RFC 5802 §3); returns it and the expected v= value."""
    algo = SCRAM_HASHES[hash_name][0]
    attrs = parse_attrs(server_first)
    salt, iterations, nonce = base64.b64decode(attrs["s"]), int(attrs["i"]), attrs["r"]
    without_proof = f"c={_b64(cbind_input)},r={nonce}{extra}"
    auth_message = f"{bare},{server_first.decode()},{without_proof}".encode()
    client_key, stored_key, server_key = scram_keys(hash_name, salted_password(hash_name, password, salt, iterations))
    proof = _xor(client_key, hmac.digest(stored_key, auth_message, algo))
    return f"{without_proof},p={_b64(proof)}".encode(), b"v=" + _b64(
        hmac.digest(server_key, auth_message, algo)
    ).encode()


def assert_scram_failure(result: object, reason: str) -> None:
    assert isinstance(result, Failure), result
    assert result.reason == reason
    assert result.data == b"e=" + reason.encode()


# --------------------------------------------------------------------------- RFC vectors


@pytest.mark.parametrize("filename", ["scram-rfc5802-sha1.json", "scram-rfc7677-sha256.json"])
def test_rfc_vector_replays_byte_for_byte(filename: str) -> None:
    v = _load_vector(filename)
    msgs, derived = v["messages"], v["derived"]
    salt = base64.b64decode(v["salt_b64"])
    assert salt.hex() == v["salt_hex"]

    salted = salted_password(v["hash"], v["password"], salt, v["iteration_count"])
    assert salted.hex() == derived["salted_password_hex"]
    client_key, stored_key, server_key = scram_keys(v["hash"], salted)
    assert client_key.hex() == derived["client_key_hex"]
    assert stored_key.hex() == derived["stored_key_hex"]
    assert server_key.hex() == derived["server_key_hex"]

    credential = ScramCredential.derive(v["hash"], v["password"], salt, v["iteration_count"])
    store = MemoryUserStore([UserRecord(v["username"], {v["hash"]: credential})])
    server = ScramServer(v["mechanism"], ServerContext(store, SECRET, nonce_factory=lambda: v["server_nonce_suffix"]))
    cl = ScramClient(
        v["mechanism"],
        ClientCredentials(v["username"], v["password"], nonce_factory=lambda: v["client_nonce"]),
    )

    client_first = cl.start()
    assert client_first == msgs["client_first_message"].encode()
    server_first = server.step(client_first)
    assert server_first == Challenge(msgs["server_first_message"].encode())
    client_final = cl.step(server_first.data)
    assert client_final == msgs["client_final_message"].encode()
    outcome = server.step(client_final)
    assert isinstance(outcome, Success)
    assert outcome.additional_data == msgs["server_final_message"].encode()
    assert outcome.authcid == v["username"]
    assert outcome.authzid is None
    assert outcome.mechanism == v["mechanism"]
    assert server.done
    assert cl.step(outcome.additional_data) == b""
    assert cl.verified
    cl.finish()


@pytest.mark.parametrize("filename", ["scram-rfc5802-sha1.json", "scram-rfc7677-sha256.json"])
def test_rfc_vector_server_side_from_published_messages(filename: str) -> None:
    """The server alone, fed the published client messages, answers the published server messages."""
    v = _load_vector(filename)
    msgs = v["messages"]
    salt = base64.b64decode(v["salt_b64"])
    credential = ScramCredential.derive(v["hash"], v["password"], salt, v["iteration_count"])
    store = MemoryUserStore([UserRecord(v["username"], {v["hash"]: credential})])
    server = ScramServer(v["mechanism"], ServerContext(store, SECRET, nonce_factory=lambda: v["server_nonce_suffix"]))
    assert server.step(msgs["client_first_message"].encode()).data == msgs["server_first_message"].encode()
    outcome = server.step(msgs["client_final_message"].encode())
    assert isinstance(outcome, Success)
    assert outcome.additional_data == msgs["server_final_message"].encode()


@pytest.mark.parametrize("filename", ["scram-rfc5802-sha1.json", "scram-rfc7677-sha256.json"])
def test_rfc_vector_client_rejects_tampered_server_signature(filename: str) -> None:
    v = _load_vector(filename)
    msgs = v["messages"]
    cl = ScramClient(
        v["mechanism"],
        ClientCredentials(v["username"], v["password"], nonce_factory=lambda: v["client_nonce"]),
    )
    cl.start()
    assert cl.step(msgs["server_first_message"].encode()) == msgs["client_final_message"].encode()
    signature = bytearray(base64.b64decode(msgs["server_final_message"][2:]))
    signature[0] ^= 1
    with pytest.raises(AuthenticationFailed) as info:
        cl.step(b"v=" + _b64(bytes(signature)).encode())
    assert info.value.reason == "invalid-server-signature"
    assert not cl.verified


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("mech", BASE_MECHS)
def test_round_trip(users: MemoryUserStore, mech: str) -> None:
    outcome, transcript = run_exchange(client(mech), ScramServer(mech, ctx(users)))
    assert isinstance(outcome, Success)
    assert (outcome.authcid, outcome.authzid, outcome.identity, outcome.mechanism) == (
        "user",
        None,
        "user",
        mech,
    )
    # C: first, S: server-first, C: final, S: v=..., C: empty (RFC 4422 §5 item 2b)
    assert [who for who, _ in transcript.lines] == ["C", "S", "C", "S", "C"]
    assert transcript.lines[-1] == ("C", b"")
    assert transcript.lines[-2][1].startswith(b"v=")


def test_scram_sha_512_round_trip(users: MemoryUserStore) -> None:
    server = ScramServer("SCRAM-SHA-512", ctx(users, nonce_factory=lambda: "servernonce"))
    cl = client("SCRAM-SHA-512", nonce_factory=lambda: "clientnonce")
    first = cl.start()
    assert first == b"n,,n=user,r=clientnonce"
    challenge = server.step(first)
    attrs = parse_attrs(challenge.data)
    assert attrs["r"] == "clientnonceservernonce"
    assert attrs["i"] == str(ITERATIONS)
    assert base64.b64decode(attrs["s"]) == users.get_user("user").scram_for("SHA-512").salt
    final = cl.step(challenge.data)
    outcome = server.step(final)
    assert isinstance(outcome, Success)
    signature = base64.b64decode(outcome.additional_data[2:])
    assert len(signature) == hashlib.sha512().digest_size
    assert len(base64.b64decode(parse_attrs(final)["p"])) == 64
    assert cl.step(outcome.additional_data) == b""
    cl.finish()


def test_username_escaping_round_trip(users: MemoryUserStore) -> None:
    """',' and '=' travel as =2C and =3D (RFC 5802 §5.1 'n')."""
    cl = client("SCRAM-SHA-256", username="a,b=c")
    first = cl.start()
    assert b"n=a=2Cb=3Dc," in first
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    outcome = server.step(cl.step(server.step(first).data))
    assert isinstance(outcome, Success)
    assert outcome.authcid == "a,b=c"


def test_server_saslpreps_username_but_hashes_it_as_received(users: MemoryUserStore) -> None:
    """RFC 5802 §5.1 'n': SASLprep for the lookup, the received form in AuthMessage."""
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    bare = "n=\u2168,r=rawclientnonce"  # ROMAN NUMERAL NINE -> "IX" under NFKC
    challenge = server.step(("n,," + bare).encode())
    assert isinstance(challenge, Challenge)
    final, expected_v = manual_final("SHA-256", PASSWORD, bare, challenge.data, b"n,,")
    outcome = server.step(final)
    assert isinstance(outcome, Success)
    assert outcome.authcid == "IX"
    assert outcome.additional_data == expected_v


def test_unknown_optional_extensions_are_ignored_but_hashed(users: MemoryUserStore) -> None:
    """Unknown attributes are ignored (RFC 5802 §5.1) yet stay in AuthMessage."""
    server = ScramServer("SCRAM-SHA-1", ctx(users))
    bare = "n=user,r=extnonce,x=client-first-extension"
    challenge = server.step(("n,," + bare).encode())
    final, expected_v = manual_final("SHA-1", PASSWORD, bare, challenge.data, b"n,,", ",y=final-ext")
    outcome = server.step(final)
    assert isinstance(outcome, Success)
    assert outcome.additional_data == expected_v


# --------------------------------------------------------------------------- channel binding


@pytest.mark.parametrize("cb_type", sorted(CB_DATA))
@pytest.mark.parametrize("mech", PLUS_MECHS)
def test_plus_with_each_channel_binding_type(users: MemoryUserStore, mech: str, cb_type: str) -> None:
    cl = client(mech, channel_binding=(cb_type, CB_DATA[cb_type]))
    server = ScramServer(mech, ctx(users, channel_bindings=CB_DATA, tls=True))
    first = cl.start()
    assert first.startswith(f"p={cb_type},,".encode())
    final = cl.step(server.step(first).data)
    cbind = base64.b64decode(parse_attrs(final)["c"])
    assert cbind == f"p={cb_type},,".encode() + CB_DATA[cb_type]
    outcome = server.step(final)
    assert isinstance(outcome, Success), outcome
    assert outcome.mechanism == mech
    assert cl.step(outcome.additional_data) == b""
    cl.finish()


def test_plus_with_authzid_covers_whole_gs2_header(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256-PLUS", authzid="user", channel_binding=("tls-exporter", CB_DATA["tls-exporter"]))
    outcome, _ = run_exchange(cl, ScramServer("SCRAM-SHA-256-PLUS", ctx(users, channel_bindings=CB_DATA)))
    assert isinstance(outcome, Success)


def test_plus_client_needs_channel_binding_data() -> None:
    with pytest.raises(UsageError):
        client("SCRAM-SHA-256-PLUS")


def test_flag_y_refused_when_server_supports_channel_binding(users: MemoryUserStore) -> None:
    """RFC 5802 §6: 'y' while the server supports binding is a downgrade."""
    cl = client("SCRAM-SHA-256", channel_binding=("tls-unique", CB_DATA["tls-unique"]))
    first = cl.start()
    assert first.startswith(b"y,,")
    result = ScramServer("SCRAM-SHA-256", ctx(users, channel_bindings=CB_DATA)).step(first)
    assert_scram_failure(result, "server-does-support-channel-binding")


def test_flag_y_accepted_when_server_has_no_channel_binding(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", channel_binding=("tls-unique", CB_DATA["tls-unique"]))
    outcome, transcript = run_exchange(cl, ScramServer("SCRAM-SHA-256", ctx(users, channel_bindings={})))
    assert isinstance(outcome, Success)
    assert transcript.lines[0][1].startswith(b"y,,")
    assert base64.b64decode(parse_attrs(transcript.lines[2][1])["c"]) == b"y,,"


def test_client_uses_n_when_server_offers_plus_but_client_picked_base(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", channel_binding=("tls-unique", b"x"), server_offers_plus=True)
    assert cl.start().startswith(b"n,,")


def test_flag_n_accepted_on_base_mechanism_when_server_supports_binding(users: MemoryUserStore) -> None:
    """A client without binding support says 'n'; that is not a downgrade (RFC 5802 §6)."""
    outcome, _ = run_exchange(client("SCRAM-SHA-1"), ScramServer("SCRAM-SHA-1", ctx(users, channel_bindings=CB_DATA)))
    assert isinstance(outcome, Success)


def test_flag_p_without_any_channel_binding(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256-PLUS", channel_binding=("tls-unique", CB_DATA["tls-unique"]))
    result = ScramServer("SCRAM-SHA-256-PLUS", ctx(users, channel_bindings={})).step(cl.start())
    assert_scram_failure(result, "channel-binding-not-supported")


def test_flag_p_with_type_not_offered(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256-PLUS", channel_binding=("tls-unique", CB_DATA["tls-unique"]))
    server = ScramServer("SCRAM-SHA-256-PLUS", ctx(users, channel_bindings={"tls-exporter": CB_DATA["tls-exporter"]}))
    assert_scram_failure(server.step(cl.start()), "unsupported-channel-binding-type")


def test_flag_p_on_base_mechanism_refused(users: MemoryUserStore) -> None:
    server = ScramServer("SCRAM-SHA-256", ctx(users, channel_bindings=CB_DATA))
    result = server.step(b"p=tls-unique,,n=user,r=abcdef")
    assert isinstance(result, Failure)
    assert result.reason in {"channel-binding-not-supported", "unsupported-channel-binding-type"}
    assert result.data == b"e=" + result.reason.encode()


@pytest.mark.parametrize("mech", PLUS_MECHS)
def test_flag_n_on_plus_mechanism_refused(users: MemoryUserStore, mech: str) -> None:
    server = ScramServer(mech, ctx(users, channel_bindings=CB_DATA))
    result = server.step(b"n,,n=user,r=abcdef")
    assert isinstance(result, Failure)
    assert result.reason in SERVER_ERRORS
    assert result.data == b"e=" + result.reason.encode()
    assert server.done


def test_flag_y_on_plus_mechanism_refused(users: MemoryUserStore) -> None:
    result = ScramServer("SCRAM-SHA-1-PLUS", ctx(users)).step(b"y,,n=user,r=abcdef")
    assert isinstance(result, Failure)
    assert result.reason in SERVER_ERRORS


def test_channel_binding_data_mismatch(users: MemoryUserStore) -> None:
    """A man in the middle sees another TLS channel: c= differs (RFC 5802 §6)."""
    cl = client("SCRAM-SHA-256-PLUS", channel_binding=("tls-exporter", b"\x00" * 32))
    server = ScramServer("SCRAM-SHA-256-PLUS", ctx(users, channel_bindings=CB_DATA))
    final = cl.step(server.step(cl.start()).data)
    assert_scram_failure(server.step(final), "channel-bindings-dont-match")


def test_c_attribute_must_match_gs2_header(users: MemoryUserStore) -> None:
    """The server rebuilds c= itself: a header of 'y,,' where 'n,,' was sent does not match."""
    cl = client("SCRAM-SHA-256")
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    final = cl.step(server.step(cl.start()).data)
    assert final.startswith(b"c=biws,")
    tampered = b"c=" + base64.b64encode(b"y,,") + final[len(b"c=biws") :]
    assert_scram_failure(server.step(tampered), "channel-bindings-dont-match")


def test_c_attribute_not_base64(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256")
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    final = cl.step(server.step(cl.start()).data)
    tampered = b"c=b!ws" + final[len(b"c=biws") :]
    result = server.step(tampered)
    assert isinstance(result, Failure)
    assert result.reason == "invalid-encoding"


# --------------------------------------------------------------------------- other server rules


def test_nonce_mismatch(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", nonce_factory=lambda: "clientnonce")
    server = ScramServer("SCRAM-SHA-256", ctx(users, nonce_factory=lambda: "servernonce"))
    final = cl.step(server.step(cl.start()).data)
    assert b",r=clientnonceservernonce," in final
    tampered = final.replace(b"r=clientnonceservernonce", b"r=clientnonceSERVERNONCE")
    result = server.step(tampered)
    assert isinstance(result, Failure)
    assert result.reason == "other-error"
    assert result.data == b"e=other-error"


def test_nonce_must_be_the_full_combined_nonce(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", nonce_factory=lambda: "clientnonce")
    server = ScramServer("SCRAM-SHA-256", ctx(users, nonce_factory=lambda: "servernonce"))
    final = cl.step(server.step(cl.start()).data)
    result = server.step(final.replace(b"r=clientnonceservernonce", b"r=clientnonce"))
    assert isinstance(result, Failure)
    assert result.reason in SERVER_ERRORS


def test_wrong_password_is_invalid_proof(users: MemoryUserStore) -> None:
    outcome, _ = run_exchange(client("SCRAM-SHA-256", password="wrong"), ScramServer("SCRAM-SHA-256", ctx(users)))
    assert_scram_failure(outcome, "invalid-proof")


@pytest.mark.parametrize("mech", BASE_MECHS)
def test_tampered_proof_is_invalid_proof(users: MemoryUserStore, mech: str) -> None:
    cl = client(mech)
    server = ScramServer(mech, ctx(users))
    final = cl.step(server.step(cl.start()).data)
    head, _, proof = final.rpartition(b",p=")
    raw = bytearray(base64.b64decode(proof))
    raw[-1] ^= 0x80
    assert_scram_failure(server.step(head + b",p=" + base64.b64encode(bytes(raw))), "invalid-proof")


def test_truncated_proof_is_invalid_proof(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256")
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    final = cl.step(server.step(cl.start()).data)
    head, _, _ = final.rpartition(b",p=")
    assert_scram_failure(server.step(head + b",p=" + base64.b64encode(b"\0" * 20)), "invalid-proof")


def test_missing_proof_is_refused(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256")
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    final = cl.step(server.step(cl.start()).data)
    head, _, _ = final.rpartition(b",p=")
    result = server.step(head)
    assert isinstance(result, Failure)
    assert result.reason == "invalid-encoding"


@pytest.mark.parametrize(
    "message",
    [b"n,,m=mandatory,n=user,r=abcdef", b"n,a=user,m=x,n=user,r=abc"],
)
def test_mandatory_extension_refused(users: MemoryUserStore, message: bytes) -> None:
    assert_scram_failure(ScramServer("SCRAM-SHA-256", ctx(users)).step(message), "extensions-not-supported")


@pytest.mark.parametrize(
    "message",
    [
        b"n,,n=us=41er,r=abcdef",  # '=' followed by something other than 2C/3D
        b"n,,n=user=,r=abcdef",  # dangling '='
        b"n,,n=user=2,r=abcdef",
        b"n,,n=us=2cer,r=abcdef",  # lower case hex is not the escape
        b"n,a=ad=ZZmin,n=user,r=abcdef",  # bad escape in the authzid
    ],
)
def test_bad_escape_is_invalid_username_encoding(users: MemoryUserStore, message: bytes) -> None:
    assert_scram_failure(ScramServer("SCRAM-SHA-256", ctx(users)).step(message), "invalid-username-encoding")


@pytest.mark.parametrize(
    "message",
    [
        b"x,,n=user,r=abcdef",  # must start with n, y or p (RFC 5802 §5)
        b"n,,r=abcdef,n=user",  # attribute order is fixed
        b"n,,n=user",  # no nonce
        b"n,,n=user,r=",  # empty nonce
        b"n,,n=user,r=ab\x7fcd",  # not printable
        b"n,x=user,n=user,r=abcdef",  # bad authzid field
        b"n,,n=user,r=abc\xff",  # not UTF-8
        b"n,,n=user,r=abc\x00",  # NUL
        b"",
        b"n,",
    ],
)
def test_malformed_client_first_is_invalid_encoding(users: MemoryUserStore, message: bytes) -> None:
    assert_scram_failure(ScramServer("SCRAM-SHA-256", ctx(users)).step(message), "invalid-encoding")


def test_oversized_message_refused(users: MemoryUserStore) -> None:
    server = ScramServer("SCRAM-SHA-256", ctx(users, max_message_size=64))
    assert_scram_failure(server.step(b"n,,n=user,r=" + b"a" * 100), "invalid-encoding")


def test_unprepareable_username_is_invalid_username_encoding(users: MemoryUserStore) -> None:
    result = ScramServer("SCRAM-SHA-256", ctx(users)).step("n,,n=us\u0007er,r=abcdef".encode())
    assert_scram_failure(result, "invalid-username-encoding")


# --------------------------------------------------------------------------- authorization identity


def test_authzid_equal_to_user(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", authzid="user")
    assert cl.start().startswith(b"n,a=user,n=user,")
    outcome, _ = run_exchange(client("SCRAM-SHA-256", authzid="user"), ScramServer("SCRAM-SHA-256", ctx(users)))
    assert isinstance(outcome, Success)
    assert outcome.authzid is None
    assert outcome.identity == "user"


def test_authzid_refused_by_default_policy(users: MemoryUserStore) -> None:
    outcome, _ = run_exchange(client("SCRAM-SHA-256", authzid="admin"), ScramServer("SCRAM-SHA-256", ctx(users)))
    assert isinstance(outcome, Failure)
    assert outcome.reason == FailureReason.AUTHORIZATION_FAILED
    assert outcome.authorization
    assert outcome.data is not None and outcome.data.startswith(b"e=")


def test_authzid_allowed_by_custom_policy(users: MemoryUserStore) -> None:
    calls: list[tuple[str, str]] = []

    def authorize(authcid: str, authzid: str) -> bool:
        calls.append((authcid, authzid))
        return authcid == "user" and authzid == "admin"

    outcome, _ = run_exchange(
        client("SCRAM-SHA-256", authzid="admin"), ScramServer("SCRAM-SHA-256", ctx(users, authorize=authorize))
    )
    assert isinstance(outcome, Success)
    assert (outcome.authcid, outcome.authzid, outcome.identity) == ("user", "admin", "admin")
    assert calls == [("user", "admin")]


def test_authzid_with_escapes(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", authzid="a,b=c")
    assert cl.start().startswith(b"n,a=a=2Cb=3Dc,")
    outcome, _ = run_exchange(
        client("SCRAM-SHA-256", authzid="a,b=c"),
        ScramServer("SCRAM-SHA-256", ctx(users, authorize=lambda c, z: z == "a,b=c")),
    )
    assert isinstance(outcome, Success)
    assert outcome.authzid == "a,b=c"


def test_authzid_saslprep_equal_to_user(users: MemoryUserStore) -> None:
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    bare = "n=user,r=prepnonce"
    header = "n,a=us\u00ader,"
    challenge = server.step((header + bare).encode())
    final, _ = manual_final("SHA-256", PASSWORD, bare, challenge.data, header.encode())
    outcome = server.step(final)
    assert isinstance(outcome, Success)
    assert outcome.authzid is None


@pytest.mark.parametrize("authzid", ["\u00ad", "\u200b\u00ad"])
def test_authzid_empty_after_saslprep_refused(users: MemoryUserStore, authzid: str) -> None:
    """A non-empty authzid that prepares to "" fails, even under a permissive policy (RFC 4954 §4)."""
    server = ScramServer("SCRAM-SHA-256", ctx(users, authorize=lambda c, z: True))
    result = server.step(f"n,a={authzid},n=user,r=abcdef".encode())
    assert isinstance(result, Failure)
    assert result.reason in SERVER_ERRORS


def test_authzid_failing_saslprep_refused(users: MemoryUserStore) -> None:
    result = ScramServer("SCRAM-SHA-256", ctx(users)).step("n,a=ad\u0007min,n=user,r=abcdef".encode())
    assert_scram_failure(result, "invalid-username-encoding")


def test_authorization_is_not_checked_before_authentication(users: MemoryUserStore) -> None:
    """A wrong password with a foreign authzid must fail as invalid-proof, not leak the policy."""
    called: list[object] = []
    outcome, _ = run_exchange(
        client("SCRAM-SHA-256", password="wrong", authzid="admin"),
        ScramServer("SCRAM-SHA-256", ctx(users, authorize=lambda *a: called.append(a) or True)),
    )
    assert_scram_failure(outcome, "invalid-proof")
    assert called == []


# --------------------------------------------------------------------------- client-side checks


def _client_after_first(mech: str = "SCRAM-SHA-256", **kw: object) -> ScramClient:
    cl = client(mech, nonce_factory=lambda: "cnonce", **kw)
    cl.start()
    return cl


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=othernonce,s=QSXCR+Q6sek8bf92,i=4096",  # does not start with the client nonce
        b"r=cnonce,s=QSXCR+Q6sek8bf92,i=4096",  # does not extend it
        b"r=cnonc,s=QSXCR+Q6sek8bf92,i=4096",  # a prefix of it
        b"r=xcnoncey,s=QSXCR+Q6sek8bf92,i=4096",
    ],
)
def test_client_rejects_server_nonce_not_extending_client_nonce(server_first: bytes) -> None:
    cl = _client_after_first()
    with pytest.raises(ProtocolError):
        cl.step(server_first)
    with pytest.raises(AuthenticationFailed):
        cl.finish()


@pytest.mark.parametrize("iterations", ["0", "-1", "5001", "99999999", "", "4k"])
def test_client_rejects_bad_iteration_count(iterations: str) -> None:
    cl = _client_after_first(max_iterations=5000)
    with pytest.raises(ProtocolError):
        cl.step(f"r=cnonceSERVER,s=QSXCR+Q6sek8bf92,i={iterations}".encode())


def test_client_accepts_iteration_count_at_its_limit() -> None:
    cl = _client_after_first(max_iterations=5000)
    assert cl.step(b"r=cnonceSERVER,s=QSXCR+Q6sek8bf92,i=5000").startswith(b"c=biws,r=cnonceSERVER,p=")


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=cnonceSERVER,s=,i=4096",  # empty salt
        b"r=cnonceSERVER,s=not base64!,i=4096",
        b"r=cnonceSERVER,i=4096,s=QSXCR+Q6sek8bf92",  # wrong order
        b"r=cnonceSERVER,s=QSXCR+Q6sek8bf92",  # i= missing (RFC 5802 §5.1: i MUST be sent with s)
        b"m=ext,r=cnonceSERVER,s=QSXCR+Q6sek8bf92,i=4096",
        b"garbage",
        b"\xff\xfe",
    ],
)
def test_client_rejects_malformed_server_first(server_first: bytes) -> None:
    cl = _client_after_first()
    with pytest.raises(ProtocolError):
        cl.step(server_first)


def test_client_reports_error_in_server_first() -> None:
    cl = _client_after_first()
    with pytest.raises(AuthenticationFailed) as info:
        cl.step(b"e=unknown-user")
    assert info.value.reason == "unknown-user"


def _client_before_final(users: MemoryUserStore, mech: str = "SCRAM-SHA-256") -> tuple[ScramClient, bytes]:
    cl = client(mech)
    server = ScramServer(mech, ctx(users))
    outcome = server.step(cl.step(server.step(cl.start()).data))
    assert isinstance(outcome, Success)
    return cl, outcome.additional_data


def test_client_rejects_wrong_server_signature(users: MemoryUserStore) -> None:
    cl, _ = _client_before_final(users)
    with pytest.raises(AuthenticationFailed) as info:
        cl.step(b"v=" + base64.b64encode(b"\x00" * 32))
    assert info.value.reason == "invalid-server-signature"
    assert not cl.verified
    with pytest.raises(AuthenticationFailed):
        cl.finish()


def test_client_rejects_server_signature_of_another_exchange(users: MemoryUserStore) -> None:
    cl1, _ = _client_before_final(users)
    _, v2 = _client_before_final(users)
    with pytest.raises(AuthenticationFailed):
        cl1.step(v2)


@pytest.mark.parametrize("reason", ["invalid-proof", "other-error", "unknown-user", "some-extension-error"])
def test_client_reports_error_in_server_final(users: MemoryUserStore, reason: str) -> None:
    cl, _ = _client_before_final(users)
    with pytest.raises(AuthenticationFailed) as info:
        cl.step(b"e=" + reason.encode())
    assert info.value.reason == reason


def test_client_error_from_real_server_failure(users: MemoryUserStore) -> None:
    cl = client("SCRAM-SHA-256", password="wrong")
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    failure = server.step(cl.step(server.step(cl.start()).data))
    assert isinstance(failure, Failure)
    with pytest.raises(AuthenticationFailed) as info:
        cl.step(failure.data)
    assert info.value.reason == "invalid-proof"


@pytest.mark.parametrize("server_final", [b"v=not*base64", b"x=1", b"", b"v"])
def test_client_rejects_malformed_server_final(users: MemoryUserStore, server_final: bytes) -> None:
    cl, _ = _client_before_final(users)
    with pytest.raises(ProtocolError):
        cl.step(server_final)


def test_finish_without_verification_raises(users: MemoryUserStore) -> None:
    cl = _client_after_first()
    with pytest.raises(AuthenticationFailed) as info:
        cl.finish()
    assert info.value.reason == "server-not-verified"

    cl, _ = _client_before_final(users)
    with pytest.raises(AuthenticationFailed):
        cl.finish()  # the server's success arrived but v= was never checked
    assert not cl.verified


def test_finish_with_additional_data_verifies(users: MemoryUserStore) -> None:
    cl, v = _client_before_final(users)
    cl.finish(v)
    assert cl.verified


def test_finish_with_wrong_additional_data_raises(users: MemoryUserStore) -> None:
    cl, _ = _client_before_final(users)
    with pytest.raises(AuthenticationFailed):
        cl.finish(b"v=" + base64.b64encode(b"\x01" * 32))


def test_client_step_after_done_raises_usage_error(users: MemoryUserStore) -> None:
    cl, v = _client_before_final(users)
    assert cl.step(v) == b""
    with pytest.raises(UsageError):
        cl.step(v)
    with pytest.raises(UsageError):
        cl.start()


def test_client_step_before_start_raises_usage_error() -> None:
    with pytest.raises(UsageError):
        client("SCRAM-SHA-256").step(b"r=x,s=QSXCR+Q6sek8bf92,i=4096")


def test_client_step_after_failure_raises_usage_error() -> None:
    cl = _client_after_first()
    with pytest.raises(AuthenticationFailed):
        cl.step(b"e=other-error")
    with pytest.raises(UsageError):
        cl.step(b"r=cnonceX,s=QSXCR+Q6sek8bf92,i=4096")


@pytest.mark.parametrize("final_ok", [True, False])
def test_server_step_after_done_raises_usage_error(users: MemoryUserStore, final_ok: bool) -> None:
    cl = client("SCRAM-SHA-256", password=PASSWORD if final_ok else "wrong")
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    outcome = server.step(cl.step(server.step(cl.start()).data))
    assert isinstance(outcome, Success if final_ok else Failure)
    assert server.done
    with pytest.raises(UsageError):
        server.step(b"")
    with pytest.raises(UsageError):
        server.step(None)


def test_server_step_after_early_failure_raises_usage_error(users: MemoryUserStore) -> None:
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    assert isinstance(server.step(b"garbage"), Failure)
    assert server.done
    with pytest.raises(UsageError):
        server.step(b"n,,n=user,r=abc")


# --------------------------------------------------------------------------- no initial response


@pytest.mark.parametrize("mech", BASE_MECHS)
def test_no_initial_response_gets_empty_challenge(users: MemoryUserStore, mech: str) -> None:
    server = ScramServer(mech, ctx(users))
    assert server.step(None) == Challenge(b"")
    assert not server.done
    cl = client(mech)
    outcome = server.step(cl.step(server.step(cl.start()).data))
    assert isinstance(outcome, Success)


def test_no_initial_response_via_run_exchange(users: MemoryUserStore) -> None:
    outcome, transcript = run_exchange(
        client("SCRAM-SHA-256"), ScramServer("SCRAM-SHA-256", ctx(users)), initial_response=False
    )
    assert isinstance(outcome, Success)
    assert transcript.lines[:2] == [("C", None), ("S", b"")]


def test_second_missing_response_is_an_empty_message(users: MemoryUserStore) -> None:
    server = ScramServer("SCRAM-SHA-256", ctx(users))
    assert server.step(None) == Challenge(b"")
    assert_scram_failure(server.step(None), "invalid-encoding")


def test_every_scram_mechanism_is_covered() -> None:
    assert set(SCRAM_MECHANISMS) == {f"SCRAM-{h}{p}" for h in SCRAM_HASHES for p in ("", "-PLUS")}


def test_tls_exporter_binding_serves_one_authentication_per_connection() -> None:
    """RFC 9266 §4.1: a second SCRAM-PLUS login with tls-exporter on the same connection fails."""
    from saslkit.context import ClientCredentials, ServerContext
    from saslkit.credentials import MemoryUserStore, make_user
    from saslkit.mechanism import Failure, Success
    from saslkit.registry import default_registry
    from saslkit.testing.loopback import run_exchange

    users = MemoryUserStore([make_user("user", "pencil", iterations=4096, argon2_hash=False)])
    reg = default_registry()
    for cb_type, second_ok in (("tls-exporter", False), ("tls-server-end-point", True)):
        ctx = ServerContext(users, b"s" * 32, channel_bindings={cb_type: b"\x01" * 32})
        results = []
        for _ in range(2):
            creds = ClientCredentials("user", "pencil", channel_binding=(cb_type, b"\x01" * 32))
            client = reg.client("SCRAM-SHA-256-PLUS", creds)
            results.append(run_exchange(client, reg.server("SCRAM-SHA-256-PLUS", ctx))[0])
        assert isinstance(results[0], Success)
        assert isinstance(results[1], Success if second_ok else Failure)


# --------------------------------------------------------------------------- Failure.authcid


def test_failure_names_the_prepared_identity_tried(users: MemoryUserStore) -> None:
    """Failure.authcid (for logs and the auth penalty; never sent) once n= was parsed and prepared."""
    wrong, _ = run_exchange(client("SCRAM-SHA-256", "I\u00adX", "wrong"), ScramServer("SCRAM-SHA-256", ctx(users)))
    assert isinstance(wrong, Failure)
    assert (wrong.reason, wrong.authcid, wrong.data) == ("invalid-proof", "IX", b"e=invalid-proof")
    unknown, _ = run_exchange(client("SCRAM-SHA-1", "nobody"), ScramServer("SCRAM-SHA-1", ctx(users)))
    assert isinstance(unknown, Failure) and unknown.authcid == "nobody"
    refused, _ = run_exchange(client("SCRAM-SHA-1", authzid="admin"), ScramServer("SCRAM-SHA-1", ctx(users)))
    assert isinstance(refused, Failure) and refused.authcid == "user"
    empty_authzid = ScramServer("SCRAM-SHA-1", ctx(users)).step(b"n,a=\xc2\xad,n=user,r=abc")
    assert isinstance(empty_authzid, Failure) and empty_authzid.authcid == "user"
    unparsed = ScramServer("SCRAM-SHA-1", ctx(users)).step(b"n,,r=abc")
    assert isinstance(unparsed, Failure) and unparsed.authcid is None


# --------------------------------------------------------------------------- parse functions (RFC 5802 §7)

RFC_C_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
RFC_NONCE = RFC_C_NONCE + "3rfcNHYJY1ZVvWVs7j"


def test_parse_client_first_rfc_example() -> None:
    first = parse_client_first(f"n,,n=user,r={RFC_C_NONCE}")
    assert first == ClientFirst(GS2Header("n", None, None, "n,,"), "user", RFC_C_NONCE, f"n=user,r={RFC_C_NONCE}")


def test_parse_client_first_with_binding_authzid_and_escapes() -> None:
    first = parse_client_first("p=tls-unique,a=adm=2Cin,n=us=3Der,r=abc,x=ext")
    assert first.gs2 == GS2Header("p", "tls-unique", "adm,in", "p=tls-unique,a=adm=2Cin,")
    assert (first.username, first.nonce, first.bare) == ("us=er", "abc", "n=us=3Der,r=abc,x=ext")


def test_parse_client_final_rfc_example() -> None:
    final = parse_client_final(f"c=biws,r={RFC_NONCE},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
    assert final == ClientFinal("biws", RFC_NONCE, "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", f"c=biws,r={RFC_NONCE}")
    assert decode_proof(final.proof_b64) == base64.b64decode("v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")


def test_parse_server_messages_rfc_example() -> None:
    text = f"r={RFC_NONCE},s=QSXCR+Q6sek8bf92,i=4096"
    assert parse_server_first(text, RFC_C_NONCE, 10000) == ServerFirst(
        RFC_NONCE, base64.b64decode("QSXCR+Q6sek8bf92"), 4096, text
    )
    assert parse_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=") == ServerFinal(
        base64.b64decode("rmF9pqV8S7suAoZWja4dJRkFsKQ=")
    )


def test_parse_server_messages_return_the_server_error() -> None:
    assert parse_server_first("e=unknown-user", RFC_C_NONCE, 10000) == ServerError("unknown-user")
    assert parse_server_final("e=invalid-proof") == ServerError("invalid-proof")


@pytest.mark.parametrize(
    ("parse", "args", "reason"),
    [
        (decode_message, (b"n,,n=u,r=a", 5), "invalid-encoding"),
        (decode_message, (b"n,,n=\xff,r=a", 100), "invalid-encoding"),
        (decode_message, (b"n,,n=\0,r=a", 100), "invalid-encoding"),
        (parse_client_first, ("x,,n=u,r=a",), "invalid-encoding"),
        (parse_client_first, ("n,n=u,r=a",), "invalid-encoding"),
        (parse_client_first, ("p=t!,,n=u,r=a",), "invalid-encoding"),
        (parse_client_first, ("n,b=x,n=u,r=a",), "invalid-encoding"),
        (parse_client_first, ("n,,m=ext,n=u,r=a",), "extensions-not-supported"),
        (parse_client_first, ("n,,r=a,n=u",), "invalid-encoding"),
        (parse_client_first, ("n,,n=,r=a",), "invalid-username-encoding"),
        (parse_client_first, ("n,,n=u=2X,r=a",), "invalid-username-encoding"),
        (parse_client_first, ("n,,n=u,r=a b",), "invalid-encoding"),
        (parse_client_final, ("c=biws,r=abc",), "invalid-encoding"),
        (parse_client_final, ("c=biws,r=abc,n=x,p=AAAA",), "invalid-encoding"),
        (decode_proof, ("!!",), "invalid-proof"),
        (parse_server_first, ("m=x,r=ab,s=AAAA,i=1", "a", 10), "extensions-not-supported"),
        (parse_server_first, ("r=ab,i=1,s=AAAA", "a", 10), "invalid-encoding"),
        (parse_server_first, ("r=xb,s=AAAA,i=1", "a", 10), "other-error"),
        (parse_server_first, ("r=a,s=AAAA,i=1", "a", 10), "other-error"),
        (parse_server_first, ("r=ab,s=AAA,i=1", "a", 10), "invalid-encoding"),
        (parse_server_first, ("r=ab,s=AAAA,i=x", "a", 10), "invalid-encoding"),
        (parse_server_first, ("r=ab,s=AAAA,i=11", "a", 10), "other-error"),
        (parse_server_final, ("x=1",), "invalid-encoding"),
        (parse_server_final, ("v=!!",), "invalid-encoding"),
    ],
)
def test_parse_functions_raise_protocol_error_with_rfc_reason(parse: object, args: tuple, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(*args)  # type: ignore[operator]
    assert info.value.reason == reason


def test_channel_binding_refusal_outranks_a_malformed_rest(users: MemoryUserStore) -> None:
    # RFC 5802 §6: the gs2 header is judged before the rest of client-first is parsed.
    server = ScramServer("SCRAM-SHA-256", ctx(users, channel_bindings=CB_DATA))
    outcome = server.step(b"y,,n=user")
    assert isinstance(outcome, Failure) and outcome.data == b"e=server-does-support-channel-binding"
