"""TLS channel-binding data (RFC 5929, RFC 9266) on certificates and on live in-memory TLS connections."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from saslkit import (
    ChannelBindingUnavailable,
    ClientCredentials,
    Failure,
    MemoryUserStore,
    ServerContext,
    Success,
    UsageError,
    channel_bindings_from_ssl,
    make_user,
    run_exchange,
    tls_server_end_point,
)
from saslkit.channel_binding import channel_bindings_from_pyopenssl, select
from saslkit.mechanisms.scram import ScramClient, ScramServer

SECRET = b"channel-binding-test-secret-0123"
HOSTNAME = "localhost"


# --------------------------------------------------------------------------- certificates


def _certificate(key: object, algorithm: hashes.HashAlgorithm | None, **sign_kw: object) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return builder.sign(key, algorithm, **sign_kw)  # type: ignore[arg-type]


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_sha256_cert(rsa_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return _certificate(rsa_key, hashes.SHA256())


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


# sha256WithRSAEncryption and sha1WithRSAEncryption (DER AlgorithmIdentifier OIDs): same length,
# so the SHA-1 variant of a SHA-256 certificate can be produced by substitution and re-signing.
_OID_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")
_OID_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")


def _sha1_signed_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    try:
        return _certificate(key, hashes.SHA1())  # noqa: S303 - the point of the test
    except UnsupportedAlgorithm:
        pass
    # cryptography refuses to sign certificates with SHA-1: build one from a SHA-256 certificate
    # by swapping the signature AlgorithmIdentifier (inside and outside the TBS) and re-signing.
    template = _certificate(key, hashes.SHA256())
    tbs = template.tbs_certificate_bytes
    der = _der(template)
    if tbs.count(_OID_SHA256_RSA) != 1 or der.count(_OID_SHA256_RSA) != 2:
        pytest.skip("cryptography refuses SHA-1 certificate signatures and the DER rewrite does not apply")
    new_tbs = tbs.replace(_OID_SHA256_RSA, _OID_SHA1_RSA)
    try:
        signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    except UnsupportedAlgorithm:
        pytest.skip("cryptography refuses SHA-1 signatures altogether")
    assert len(signature) == len(template.signature)
    new_der = der.replace(tbs, new_tbs).replace(_OID_SHA256_RSA, _OID_SHA1_RSA).replace(template.signature, signature)
    try:
        cert = x509.load_der_x509_certificate(new_der)
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    except (ValueError, UnsupportedAlgorithm) as exc:
        pytest.skip(f"cryptography cannot load a SHA-1 signed certificate: {exc}")
    key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    return cert


def test_rsa_sha256(rsa_sha256_cert: x509.Certificate) -> None:
    der = _der(rsa_sha256_cert)
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_pem_and_der_give_the_same_binding(rsa_sha256_cert: x509.Certificate) -> None:
    pem = rsa_sha256_cert.public_bytes(serialization.Encoding.PEM)
    assert tls_server_end_point(pem) == tls_server_end_point(_der(rsa_sha256_cert))


def test_ecdsa_sha384(ec_key: ec.EllipticCurvePrivateKey) -> None:
    der = _der(_certificate(ec_key, hashes.SHA384()))
    binding = tls_server_end_point(der)
    assert binding == hashlib.sha384(der).digest()
    assert len(binding) == 48


def test_rsa_sha512(rsa_key: rsa.RSAPrivateKey) -> None:
    der = _der(_certificate(rsa_key, hashes.SHA512()))
    assert tls_server_end_point(der) == hashlib.sha512(der).digest()


def test_sha1_signed_certificate_uses_sha256(rsa_key: rsa.RSAPrivateKey) -> None:
    """RFC 5929 §4.1: MD5 or SHA-1 signature hashes become SHA-256."""
    der = _der(_sha1_signed_certificate(rsa_key))
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()
    assert tls_server_end_point(der) != hashlib.sha1(der).digest()  # noqa: S324


def test_ed25519_uses_sha256() -> None:
    """RFC 5929 leaves hash-less signatures undefined; saslkit documents SHA-256 (as Prosody/ejabberd)."""
    der = _der(_certificate(ed25519.Ed25519PrivateKey.generate(), None))
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_ed448_uses_sha256() -> None:
    der = _der(_certificate(ed448.Ed448PrivateKey.generate(), None))
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


@pytest.mark.parametrize(
    "data", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
def test_not_a_certificate(data: bytes) -> None:
    with pytest.raises(UsageError):
        tls_server_end_point(data)


def test_select() -> None:
    bindings = {"tls-exporter": b"x" * 32}
    assert select(bindings, "tls-exporter") == b"x" * 32
    with pytest.raises(ChannelBindingUnavailable):
        select(bindings, "tls-unique")
    with pytest.raises(UsageError):
        select(bindings, "tls-bogus")


# --------------------------------------------------------------------------- stdlib ssl over MemoryBIO


@pytest.fixture(scope="module")
def tls_files(
    tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey, rsa_sha256_cert: x509.Certificate
) -> tuple[Path, Path, bytes]:
    directory = tmp_path_factory.mktemp("tls")
    cert_pem = rsa_sha256_cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory / "cert.pem", directory / "key.pem", cert_pem


def _pump(a_out: ssl.MemoryBIO, b_in: ssl.MemoryBIO) -> bool:
    data = a_out.read()
    if data:
        b_in.write(data)
    return bool(data)


def _stdlib_pair(tls_files: tuple[Path, Path, bytes], version: ssl.TLSVersion) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    cert_path, key_path, cert_pem = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=cert_pem.decode())
    for context in (server_ctx, client_ctx):
        context.minimum_version = context.maximum_version = version
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOSTNAME)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for label, conn in (("client", client), ("server", server)):
            if not done[label]:
                try:
                    conn.do_handshake()
                    done[label] = True
                except ssl.SSLWantReadError:
                    pass
        moved = _pump(c_out, s_in) | _pump(s_out, c_in)
        if all(done.values()) and not moved:
            break
    assert all(done.values()), "TLS handshake did not complete"
    return client, server


TLS_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, "TLSv1.2", id="TLSv1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, "TLSv1.3", id="TLSv1.3"),
]


def test_bindings_need_a_completed_handshake(tls_files: tuple[Path, Path, bytes]) -> None:
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client = client_ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=HOSTNAME)
    with pytest.raises(ChannelBindingUnavailable):
        channel_bindings_from_ssl(client)


@pytest.mark.parametrize(("version", "name"), TLS_VERSIONS)
def test_stdlib_tls_server_end_point(
    tls_files: tuple[Path, Path, bytes], rsa_sha256_cert: x509.Certificate, version: ssl.TLSVersion, name: str
) -> None:
    client, server = _stdlib_pair(tls_files, version)
    assert client.version() == server.version() == name
    client_side = channel_bindings_from_ssl(client)
    server_side = channel_bindings_from_ssl(server, server_certificate=tls_files[2])
    expected = hashlib.sha256(_der(rsa_sha256_cert)).digest()
    assert client_side["tls-server-end-point"] == server_side["tls-server-end-point"] == expected
    # DER works as well as PEM for the server's own certificate.
    assert (
        channel_bindings_from_ssl(server, server_certificate=_der(rsa_sha256_cert))["tls-server-end-point"] == expected
    )
    assert "tls-exporter" not in client_side and "tls-exporter" not in server_side


@pytest.mark.parametrize(("version", "name"), TLS_VERSIONS)
def test_stdlib_server_without_certificate_has_no_end_point(
    tls_files: tuple[Path, Path, bytes], version: ssl.TLSVersion, name: str
) -> None:
    _, server = _stdlib_pair(tls_files, version)
    assert "tls-server-end-point" not in channel_bindings_from_ssl(server)


def test_stdlib_tls_unique_on_tls12(tls_files: tuple[Path, Path, bytes]) -> None:
    client, server = _stdlib_pair(tls_files, ssl.TLSVersion.TLSv1_2)
    client_side = channel_bindings_from_ssl(client)
    server_side = channel_bindings_from_ssl(server, server_certificate=tls_files[2])
    assert client_side["tls-unique"] == server_side["tls-unique"]
    assert len(client_side["tls-unique"]) == 12  # TLS 1.2 verify_data
    # A second connection has a different Finished message.
    other_client, _ = _stdlib_pair(tls_files, ssl.TLSVersion.TLSv1_2)
    assert channel_bindings_from_ssl(other_client)["tls-unique"] != client_side["tls-unique"]


def test_stdlib_no_tls_unique_on_tls13(tls_files: tuple[Path, Path, bytes]) -> None:
    """RFC 9266 §3: tls-unique is undefined for TLS 1.3."""
    client, server = _stdlib_pair(tls_files, ssl.TLSVersion.TLSv1_3)
    assert "tls-unique" not in channel_bindings_from_ssl(client)
    assert "tls-unique" not in channel_bindings_from_ssl(server, server_certificate=tls_files[2])


def test_stdlib_bindings_drive_scram_plus(tls_files: tuple[Path, Path, bytes]) -> None:
    client_conn, server_conn = _stdlib_pair(tls_files, ssl.TLSVersion.TLSv1_2)
    client_side = channel_bindings_from_ssl(client_conn)
    server_side = channel_bindings_from_ssl(server_conn, server_certificate=tls_files[2])
    users = MemoryUserStore([make_user("user", "pencil", iterations=4096, argon2_hash=False, hashes=("SHA-1",))])
    for cb_type in ("tls-unique", "tls-server-end-point"):
        outcome, _ = run_exchange(
            ScramClient(
                "SCRAM-SHA-1-PLUS", ClientCredentials("user", "pencil", channel_binding=(cb_type, client_side[cb_type]))
            ),
            ScramServer("SCRAM-SHA-1-PLUS", ServerContext(users, SECRET, channel_bindings=server_side, tls=True)),
        )
        assert isinstance(outcome, Success), (cb_type, outcome)


# --------------------------------------------------------------------------- pyOpenSSL memory-BIO pair

SSL = pytest.importorskip("OpenSSL.SSL")


def _pyopenssl_contexts(key: rsa.RSAPrivateKey, cert: x509.Certificate, version: int) -> tuple[object, object]:
    server_ctx = SSL.Context(SSL.TLS_METHOD)
    server_ctx.use_certificate(cert)
    server_ctx.use_privatekey(key)
    server_ctx.set_session_id(b"saslkit-tests")
    client_ctx = SSL.Context(SSL.TLS_METHOD)
    for context in (server_ctx, client_ctx):
        context.set_min_proto_version(version)
        context.set_max_proto_version(version)
    return client_ctx, server_ctx


def _pyopenssl_pair(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    version: int,
    contexts: tuple[object, object] | None = None,
    session: object | None = None,
) -> tuple[object, object]:
    client_ctx, server_ctx = contexts or _pyopenssl_contexts(key, cert, version)
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    client.set_tlsext_host_name(HOSTNAME.encode())
    if session is not None:
        client.set_session(session)

    def transfer(src: SSL.Connection, dst: SSL.Connection) -> bool:
        try:
            data = src.bio_read(65536)
        except SSL.WantReadError:
            return False
        dst.bio_write(data)
        return bool(data)

    done = {"client": False, "server": False}
    for _ in range(20):
        for label, conn in (("client", client), ("server", server)):
            if not done[label]:
                try:
                    conn.do_handshake()
                    done[label] = True
                except SSL.WantReadError:
                    pass
        moved = transfer(client, server) | transfer(server, client)
        if all(done.values()) and not moved:
            break
    assert all(done.values()), "pyOpenSSL handshake did not complete"
    return client, server


PYOPENSSL_VERSIONS = [
    pytest.param(("TLS1_2_VERSION", "TLSv1.2"), id="TLSv1.2"),
    pytest.param(("TLS1_3_VERSION", "TLSv1.3"), id="TLSv1.3"),
]


@pytest.fixture(scope="module", params=PYOPENSSL_VERSIONS)
def pyopenssl_bindings(
    request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey, rsa_sha256_cert: x509.Certificate
) -> tuple[str, dict[str, bytes], dict[str, bytes]]:
    constant, name = request.param
    client, server = _pyopenssl_pair(rsa_key, rsa_sha256_cert, getattr(SSL, constant))
    assert client.get_protocol_version_name() == name
    return (
        name,
        channel_bindings_from_pyopenssl(client, server_side=False),
        channel_bindings_from_pyopenssl(server, server_side=True),
    )


def test_pyopenssl_tls_exporter(pyopenssl_bindings: tuple[str, dict[str, bytes], dict[str, bytes]]) -> None:
    _, client_side, server_side = pyopenssl_bindings
    assert client_side["tls-exporter"] == server_side["tls-exporter"]
    assert len(client_side["tls-exporter"]) == 32
    assert client_side["tls-exporter"] != b"\0" * 32


def test_pyopenssl_tls_server_end_point(
    pyopenssl_bindings: tuple[str, dict[str, bytes], dict[str, bytes]], rsa_sha256_cert: x509.Certificate
) -> None:
    _, client_side, server_side = pyopenssl_bindings
    expected = hashlib.sha256(_der(rsa_sha256_cert)).digest()
    assert client_side["tls-server-end-point"] == server_side["tls-server-end-point"] == expected


def test_pyopenssl_tls_unique(pyopenssl_bindings: tuple[str, dict[str, bytes], dict[str, bytes]]) -> None:
    name, client_side, server_side = pyopenssl_bindings
    if name == "TLSv1.3":
        assert "tls-unique" not in client_side and "tls-unique" not in server_side
    else:
        assert client_side["tls-unique"] == server_side["tls-unique"]
        assert len(client_side["tls-unique"]) == 12


def test_pyopenssl_tls_unique_on_resumed_tls12_session(
    rsa_key: rsa.RSAPrivateKey, rsa_sha256_cert: x509.Certificate
) -> None:
    """RFC 5929 §3.1: on a resumed handshake tls-unique is the *server's* Finished."""
    contexts = _pyopenssl_contexts(rsa_key, rsa_sha256_cert, SSL.TLS1_2_VERSION)
    first_client, _ = _pyopenssl_pair(rsa_key, rsa_sha256_cert, SSL.TLS1_2_VERSION, contexts)
    full = channel_bindings_from_pyopenssl(first_client, server_side=False)
    assert full["tls-unique"] == first_client.get_finished()  # full handshake: the client's Finished

    client, server = _pyopenssl_pair(rsa_key, rsa_sha256_cert, SSL.TLS1_2_VERSION, contexts, first_client.get_session())
    from OpenSSL._util import lib

    if not lib.SSL_session_reused(client._ssl):
        pytest.skip("OpenSSL did not resume the TLS 1.2 session")
    client_side = channel_bindings_from_pyopenssl(client, server_side=False)
    server_side = channel_bindings_from_pyopenssl(server, server_side=True)
    assert client_side["tls-unique"] == server_side["tls-unique"] == server.get_finished()
    assert client_side["tls-unique"] == client.get_peer_finished()
    assert client_side["tls-unique"] != full["tls-unique"]


@pytest.mark.parametrize(("version", "name"), TLS_VERSIONS)
def test_stdlib_cannot_give_tls_exporter(
    tls_files: tuple[Path, Path, bytes], version: ssl.TLSVersion, name: str
) -> None:
    client, server = _stdlib_pair(tls_files, version)
    with pytest.raises(ChannelBindingUnavailable):
        select(channel_bindings_from_ssl(client), "tls-exporter")
    with pytest.raises(ChannelBindingUnavailable):
        select(channel_bindings_from_ssl(server, server_certificate=tls_files[2]), "tls-exporter")


def test_pyopenssl_exporter_differs_per_connection(
    rsa_key: rsa.RSAPrivateKey, rsa_sha256_cert: x509.Certificate
) -> None:
    first, _ = _pyopenssl_pair(rsa_key, rsa_sha256_cert, SSL.TLS1_3_VERSION)
    second, _ = _pyopenssl_pair(rsa_key, rsa_sha256_cert, SSL.TLS1_3_VERSION)
    a = channel_bindings_from_pyopenssl(first, server_side=False)["tls-exporter"]
    b = channel_bindings_from_pyopenssl(second, server_side=False)["tls-exporter"]
    assert a != b


@pytest.fixture(scope="module")
def scram_users() -> MemoryUserStore:
    return MemoryUserStore([make_user("user", "pencil", iterations=4096, argon2_hash=False, hashes=("SHA-256",))])


def test_scram_sha256_plus_over_tls_exporter(
    pyopenssl_bindings: tuple[str, dict[str, bytes], dict[str, bytes]], scram_users: MemoryUserStore
) -> None:
    _, client_side, server_side = pyopenssl_bindings
    client = ScramClient(
        "SCRAM-SHA-256-PLUS",
        ClientCredentials("user", "pencil", channel_binding=("tls-exporter", client_side["tls-exporter"])),
    )
    server = ScramServer(
        "SCRAM-SHA-256-PLUS", ServerContext(scram_users, SECRET, channel_bindings=server_side, tls=True)
    )
    outcome, transcript = run_exchange(client, server)
    assert isinstance(outcome, Success), outcome
    assert transcript.lines[0][1].startswith(b"p=tls-exporter,,")
    assert client.verified


def test_scram_plus_detects_a_relayed_channel(
    rsa_key: rsa.RSAPrivateKey, rsa_sha256_cert: x509.Certificate, scram_users: MemoryUserStore
) -> None:
    """A man in the middle terminates the client's TLS and opens its own to the server: c= differs."""
    victim_client, _ = _pyopenssl_pair(rsa_key, rsa_sha256_cert, SSL.TLS1_3_VERSION)
    _, real_server = _pyopenssl_pair(rsa_key, rsa_sha256_cert, SSL.TLS1_3_VERSION)
    client_side = channel_bindings_from_pyopenssl(victim_client, server_side=False)
    server_side = channel_bindings_from_pyopenssl(real_server, server_side=True)
    outcome, _ = run_exchange(
        ScramClient(
            "SCRAM-SHA-256-PLUS",
            ClientCredentials("user", "pencil", channel_binding=("tls-exporter", client_side["tls-exporter"])),
        ),
        ScramServer("SCRAM-SHA-256-PLUS", ServerContext(scram_users, SECRET, channel_bindings=server_side)),
    )
    assert isinstance(outcome, Failure)
    assert outcome.reason == "channel-bindings-dont-match"
