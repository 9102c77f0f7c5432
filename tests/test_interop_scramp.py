"""Interoperability with scramp (an independent SCRAM implementation), no mocks.

Both directions for SCRAM-SHA-1, SCRAM-SHA-256 and SCRAM-SHA-512:

* scramp client (``scramp.ScramClient``) -> saslkit server
  (``default_registry().server(name, ServerContext(...))``);
* saslkit client -> scramp server (``ScramMechanism.make_auth_info`` /
  ``make_server``).

The -PLUS forms use a fixed 32-octet channel-binding value standing in for
TLS data.  scramp 1.5 refuses the ``tls-exporter`` type by name (it lists it
in ``CbName.UNSUPPORTED_TYPES``), so the same octets are also bound under
``tls-server-end-point`` and ``tls-unique``, which scramp accepts as raw
bytes; the ``tls-exporter`` case skips with that reason while scramp refuses
it.  scramp also refuses any gs2 authzid, so no test sends one.
"""

from __future__ import annotations

import pytest

scramp = pytest.importorskip("scramp")

from scramp import ScramClient as ScrampClient  # noqa: E402
from scramp import ScramException, ScramMechanism  # noqa: E402
from scramp.utils import ServerError  # noqa: E402

from saslkit import (  # noqa: E402
    AuthenticationFailed,
    Challenge,
    ClientCredentials,
    Failure,
    MemoryUserStore,
    ScramCredential,
    ServerContext,
    Success,
    default_registry,
    make_user,
)

pytestmark = pytest.mark.interop

USER = "user"
PASSWORD = "pencil"
WRONG = "pencil2"
ITERATIONS = 4096  # scramp's minimum; also RFC 5802's "at least 4096"
SERVER_SECRET = b"saslkit-interop-server-secret-01"
#: Stands in for TLS-Exporter("EXPORTER-Channel-Binding", "", 32) (RFC 9266 §2).
CB_DATA = bytes.fromhex("5e1f0a3c9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d0f")
OTHER_CB_DATA = bytes(32)

MECHS = ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"]
HASH_OF = {"SCRAM-SHA-1": "SHA-1", "SCRAM-SHA-256": "SHA-256", "SCRAM-SHA-512": "SHA-512"}


def _scramp_binds(cb_type: str) -> bool:
    return _scramp_refuses(cb_type) is None


def _scramp_refuses(cb_type: str) -> str | None:
    """Why scramp cannot bind ``cb_type`` with raw bytes, or ``None`` if it can."""
    try:
        ScrampClient(["SCRAM-SHA-256-PLUS"], USER, PASSWORD, channel_binding=(cb_type, CB_DATA))
    except ScramException as exc:
        return str(exc)
    return None


# scramp 1.5 refuses tls-exporter by name; the -PLUS rules are type-independent,
# and tls-exporter is exercised against our own client and the vector files.
CB_TYPES = [t for t in ("tls-exporter", "tls-server-end-point", "tls-unique") if _scramp_binds(t)]


def _require_scramp_cb(cb_type: str) -> None:
    why = _scramp_refuses(cb_type)
    if why is not None:
        pytest.skip(f"scramp {getattr(scramp, '__version__', '?')} cannot bind {cb_type}: {why}")


@pytest.fixture(scope="module")
def users() -> MemoryUserStore:
    # No argon2 hash: SCRAM never looks at it, and it keeps the fixture fast.
    return MemoryUserStore(
        [make_user(USER, PASSWORD, iterations=ITERATIONS, argon2_hash=False)],
        default_iterations=ITERATIONS,
    )


# --------------------------------------------------------------------------- helpers


def scramp_client_vs_saslkit_server(
    users: MemoryUserStore,
    mech: str,
    *,
    username: str = USER,
    password: str = PASSWORD,
    client_cb: tuple[str, bytes] | None = None,
    server_cb: dict[str, bytes] | None = None,
) -> tuple[ScrampClient, Success | Failure]:
    """scramp client -> saslkit server; returns the client and the server's outcome."""
    client = ScrampClient([mech], username, password, channel_binding=client_cb)
    ctx = ServerContext(users, server_secret=SERVER_SECRET, channel_bindings=server_cb or {})
    server = default_registry().server(mech, ctx)
    first = server.step(client.get_client_first().encode("utf-8"))
    if isinstance(first, Failure):
        return client, first
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode("utf-8"))
    outcome = server.step(client.get_client_final().encode("utf-8"))
    assert isinstance(outcome, Success | Failure)
    assert server.done
    return client, outcome


def make_scramp_server(
    mech: str,
    *,
    cb: tuple[str, bytes] | None = None,
    s_nonce: str | None = None,
    username: str = USER,
    password: str = PASSWORD,
):
    base = mech.removesuffix("-PLUS")
    salt, stored_key, server_key, iterations = ScramMechanism(base).make_auth_info(password, iteration_count=ITERATIONS)
    db = {username: (salt, stored_key, server_key, iterations)}
    return ScramMechanism(mech).make_server(db.get, channel_binding=cb, s_nonce=s_nonce)


def saslkit_client_vs_scramp_server(
    mech: str,
    *,
    password: str = PASSWORD,
    client_cb: tuple[str, bytes] | None = None,
    server_cb: tuple[str, bytes] | None = None,
    server_offers_plus: bool = False,
):
    """saslkit client -> scramp server, following the messages until one side stops.

    Returns ``(client, server)``; raises whatever the failing side raised.
    """
    creds = ClientCredentials(USER, password, channel_binding=client_cb, server_offers_plus=server_offers_plus)
    client = default_registry().client(mech, creds)
    server = make_scramp_server(mech, cb=server_cb)
    server.set_client_first(client.start().decode("utf-8"))
    client_final = client.step(server.get_server_first().encode("utf-8"))
    server.set_client_final(client_final.decode("utf-8"))
    assert client.step(server.get_server_final().encode("utf-8")) == b""
    client.finish()
    return client, server


# --------------------------------------------------------------------------- scramp client -> saslkit server


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_saslkit_server_success(users, mech):
    client, outcome = scramp_client_vs_saslkit_server(users, mech)
    assert isinstance(outcome, Success), outcome
    assert outcome.authcid == USER
    assert outcome.authzid is None
    assert outcome.mechanism == mech
    assert outcome.additional_data is not None and outcome.additional_data.startswith(b"v=")
    # scramp checks saslkit's ServerSignature; raises on a mismatch.
    client.set_server_final(outcome.additional_data.decode("ascii"))


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_saslkit_server_wrong_password(users, mech):
    client, outcome = scramp_client_vs_saslkit_server(users, mech, password=WRONG)
    assert isinstance(outcome, Failure)
    assert outcome.reason == "invalid-proof"
    assert outcome.data == b"e=invalid-proof"
    with pytest.raises(ScramException) as info:
        client.set_server_final(outcome.data.decode("ascii"))
    assert info.value.server_error is ServerError.INVALID_PROOF


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_saslkit_server_unknown_user_looks_like_wrong_password(users, mech):
    client, outcome = scramp_client_vs_saslkit_server(users, mech, username="nobody")
    assert isinstance(outcome, Failure)
    assert outcome.reason == "invalid-proof"  # RFC 5802 §9: do not reveal unknown users
    assert client.iterations is not None and int(client.iterations) == ITERATIONS


@pytest.mark.parametrize("cb_type", CB_TYPES)
@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_saslkit_server_plus(users, mech, cb_type):
    _require_scramp_cb(cb_type)
    plus = f"{mech}-PLUS"
    client, outcome = scramp_client_vs_saslkit_server(
        users, plus, client_cb=(cb_type, CB_DATA), server_cb={cb_type: CB_DATA}
    )
    assert isinstance(outcome, Success), outcome
    assert outcome.mechanism == plus
    assert outcome.additional_data is not None
    client.set_server_final(outcome.additional_data.decode("ascii"))


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_saslkit_server_plus_wrong_password(users, mech):
    _, outcome = scramp_client_vs_saslkit_server(
        users,
        f"{mech}-PLUS",
        password=WRONG,
        client_cb=("tls-server-end-point", CB_DATA),
        server_cb={"tls-server-end-point": CB_DATA},
    )
    assert isinstance(outcome, Failure)
    assert outcome.reason == "invalid-proof"


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_saslkit_server_plus_other_channel(users, mech):
    """Same type, different TLS channel: the c= check must refuse it."""
    _, outcome = scramp_client_vs_saslkit_server(
        users,
        f"{mech}-PLUS",
        client_cb=("tls-server-end-point", CB_DATA),
        server_cb={"tls-server-end-point": OTHER_CB_DATA},
    )
    assert isinstance(outcome, Failure)
    assert outcome.reason == "channel-bindings-dont-match"
    assert outcome.data == b"e=channel-bindings-dont-match"


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_client_y_flag(users, mech):
    """scramp can bind but picked a non-PLUS mechanism: it sends gs2 flag ``y``."""
    cb = ("tls-server-end-point", CB_DATA)
    # A server without channel binding accepts "y" ...
    client, outcome = scramp_client_vs_saslkit_server(users, mech, client_cb=cb)
    assert isinstance(outcome, Success), outcome
    client.set_server_final(outcome.additional_data.decode("ascii"))
    # ... one that supports it must treat "y" as a downgrade (RFC 5802 §6).
    _, outcome = scramp_client_vs_saslkit_server(users, mech, client_cb=cb, server_cb=dict([cb]))
    assert isinstance(outcome, Failure)
    assert outcome.reason == "server-does-support-channel-binding"


# --------------------------------------------------------------------------- saslkit client -> scramp server


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_scramp_server_success(mech):
    client, _ = saslkit_client_vs_scramp_server(mech)
    assert client.verified


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_scramp_server_wrong_password(mech):
    creds = ClientCredentials(USER, WRONG)
    client = default_registry().client(mech, creds)
    server = make_scramp_server(mech)
    server.set_client_first(client.start().decode("utf-8"))
    client_final = client.step(server.get_server_first().encode("utf-8"))
    with pytest.raises(ScramException) as info:
        server.set_client_final(client_final.decode("utf-8"))
    assert info.value.server_error is ServerError.INVALID_PROOF
    server_final = server.get_server_final()
    assert server_final == "e=invalid-proof"
    with pytest.raises(AuthenticationFailed) as failed:
        client.step(server_final.encode("ascii"))
    assert failed.value.reason == "invalid-proof"
    assert not client.verified


@pytest.mark.parametrize("cb_type", CB_TYPES)
@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_scramp_server_plus(mech, cb_type):
    _require_scramp_cb(cb_type)
    client, _ = saslkit_client_vs_scramp_server(
        f"{mech}-PLUS", client_cb=(cb_type, CB_DATA), server_cb=(cb_type, CB_DATA), server_offers_plus=True
    )
    assert client.verified


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_scramp_server_plus_wrong_password(mech):
    cb = ("tls-server-end-point", CB_DATA)
    with pytest.raises(ScramException) as info:
        saslkit_client_vs_scramp_server(
            f"{mech}-PLUS", password=WRONG, client_cb=cb, server_cb=cb, server_offers_plus=True
        )
    assert info.value.server_error is ServerError.INVALID_PROOF


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_scramp_server_plus_other_channel(mech):
    with pytest.raises(ScramException) as info:
        saslkit_client_vs_scramp_server(
            f"{mech}-PLUS",
            client_cb=("tls-server-end-point", CB_DATA),
            server_cb=("tls-server-end-point", OTHER_CB_DATA),
            server_offers_plus=True,
        )
    assert info.value.server_error is ServerError.CHANNEL_BINDINGS_DONT_MATCH


@pytest.mark.parametrize("mech", MECHS)
def test_saslkit_client_y_flag_scramp_server(mech):
    """saslkit could bind but the server offered no -PLUS: flag ``y`` (RFC 5802 §6)."""
    cb = ("tls-server-end-point", CB_DATA)
    client, _ = saslkit_client_vs_scramp_server(mech, client_cb=cb, server_offers_plus=False)
    assert client.verified
    # A scramp server that does have channel binding sees the downgrade.
    with pytest.raises(ScramException) as info:
        saslkit_client_vs_scramp_server(mech, client_cb=cb, server_cb=cb, server_offers_plus=False)
    assert info.value.server_error is ServerError.SERVER_DOES_SUPPORT_CHANNEL_BINDING


# --------------------------------------------------------------------------- stored keys


@pytest.mark.parametrize("mech", MECHS)
def test_stored_keys_agree(mech):
    """Both libraries derive identical StoredKey/ServerKey from the same salt and count."""
    salt = bytes(range(16))
    s_salt, s_stored, s_server, s_iter = ScramMechanism(mech).make_auth_info(
        PASSWORD, iteration_count=ITERATIONS, salt=salt
    )
    ours = ScramCredential.derive(HASH_OF[mech], PASSWORD, salt, ITERATIONS)
    assert (s_salt, s_stored, s_server, s_iter) == (ours.salt, ours.stored_key, ours.server_key, ours.iterations)


@pytest.mark.parametrize("mech", MECHS)
def test_scramp_made_keys_serve_saslkit_server(mech):
    """Keys made by scramp, imported into a saslkit store, authenticate a scramp client."""
    from saslkit import UserRecord

    salt, stored, server_key, iterations = ScramMechanism(mech).make_auth_info(PASSWORD, iteration_count=ITERATIONS)
    cred = ScramCredential(HASH_OF[mech], salt, iterations, stored, server_key)
    store = MemoryUserStore([UserRecord(USER, {cred.hash_name: cred})], default_iterations=ITERATIONS)
    client, outcome = scramp_client_vs_saslkit_server(store, mech)
    assert isinstance(outcome, Success), outcome
    client.set_server_final(outcome.additional_data.decode("ascii"))


#: (username, password the server stores, password the client types)
IDENTITIES = [
    pytest.param("us,er=1", PASSWORD, PASSWORD, id="saslname-escapes"),  # n=us=2Cer=3D1
    pytest.param("\u00fcser", "p\u00e4ssw\u00f6rd", "p\u00e4ssw\u00f6rd", id="non-ascii"),
    pytest.param(USER, "IX", "I\u00adX", id="saslprep-soft-hyphen"),  # RFC 4013 §3 example
    pytest.param(USER, "a b", "a\u00a0b", id="saslprep-nbsp"),  # non-ASCII space -> U+0020
]


@pytest.mark.parametrize(("username", "stored", "typed"), IDENTITIES)
def test_identities_scramp_client_saslkit_server(username, stored, typed):
    store = MemoryUserStore(
        [make_user(username, stored, iterations=ITERATIONS, argon2_hash=False)], default_iterations=ITERATIONS
    )
    client, outcome = scramp_client_vs_saslkit_server(store, "SCRAM-SHA-256", username=username, password=typed)
    assert isinstance(outcome, Success), outcome
    assert outcome.authcid == username
    assert outcome.additional_data is not None
    client.set_server_final(outcome.additional_data.decode("ascii"))


@pytest.mark.parametrize(("username", "stored", "typed"), IDENTITIES)
def test_identities_saslkit_client_scramp_server(username, stored, typed):
    client = default_registry().client("SCRAM-SHA-256", ClientCredentials(username, typed))
    server = make_scramp_server("SCRAM-SHA-256", username=username, password=stored)
    server.set_client_first(client.start().decode("utf-8"))
    client_final = client.step(server.get_server_first().encode("utf-8"))
    server.set_client_final(client_final.decode("utf-8"))
    assert client.step(server.get_server_final().encode("utf-8")) == b""
    client.finish()
