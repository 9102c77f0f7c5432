"""The aiosmtpd adapter against real aiosmtpd servers on loopback, driven by smtplib and raw lines."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import smtplib
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiosmtpd")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from saslkit import ClientCredentials, MemoryUserStore, Policy, Success, channel_bindings_from_ssl, make_user
from saslkit.auth.framing import encode_initial_response
from saslkit.keys import KeyRing
from saslkit.mechanism import ClientMechanism
from saslkit.mechanisms.ht import HTClient
from saslkit.mechanisms.rememberme import RememberMeClient
from saslkit.mechanisms.scram import ScramClient
from saslkit.mechanisms.stoken import StokenClient
from saslkit.penalty import AuthPenalty
from saslkit.smtp.aiosmtpd import SaslkitAuth, SaslkitController, SaslkitSMTP, saslkit_controller
from saslkit.stores import SQLiteTokenStore
from saslkit.tokens import SubmissionTokens, TokenService

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Pki:
    cert: Path
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A self-signed certificate for localhost / 127.0.0.1, made with cryptography."""
    d = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(d / "cert.pem", d / "key.pem")
    return Pki(d / "cert.pem", server, ssl.create_default_context(cafile=str(d / "cert.pem")))


@pytest.fixture(scope="module")
def users() -> MemoryUserStore:
    return MemoryUserStore([make_user("alice", "pencil", iterations=4096)])


class Recorder:
    """An aiosmtpd handler that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((session.auth_data, envelope))
        return "250 2.0.0 OK"


@dataclass
class Running:
    port: int
    handler: Recorder
    controller: SaslkitController
    tokens: TokenService
    stokens: SubmissionTokens
    pki: Pki
    lmtp: bool

    def connect(self, *, tls: bool = True) -> smtplib.SMTP:
        client = (smtplib.LMTP if self.lmtp else smtplib.SMTP)(HOST, self.port, timeout=20)
        client.ehlo("client.test")
        if tls:
            client.starttls(context=self.pki.client)
            client.ehlo("client.test")
        return client


@pytest.fixture
def serve(tmp_path: Path, pki: Pki, users: MemoryUserStore) -> Iterator[Callable[..., Running]]:
    started: list[SaslkitController] = []
    keys = KeyRing.open(tmp_path / "k.keys", quiet=True)
    store = SQLiteTokenStore(tmp_path / "tokens.db")
    tokens, stokens = TokenService(store, keys), SubmissionTokens(store, keys)

    def start(*, lmtp: bool = False, handler: Recorder | None = None, **kwargs: Any) -> Running:
        handler, port = handler or Recorder(), _free_port()
        kwargs.setdefault("certificate", pki.cert)
        kwargs.setdefault("tls_context", pki.server)
        kwargs.setdefault("auth_penalty", None)  # the tests fail logins on purpose; test_auth_penalty_* turn it on
        controller = saslkit_controller(
            handler, users=users, server_secret=keys.server_secret, tokens=tokens, stokens=stokens, lmtp=lmtp,
            failure_delay=0.0, hostname=HOST, port=port, server_hostname="mx.test",
            **kwargs,
        )
        controller.start()
        started.append(controller)
        return Running(port, handler, controller, tokens, stokens, pki, lmtp)

    yield start
    for controller in started:
        controller.stop()


#: SCRAM-*-PLUS advertised with tls-server-end-point only (the stdlib's TLS 1.3 has no tls-exporter).
PLUS_WITH_END_POINT = Policy(plus_with_end_point=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sasl(client: smtplib.SMTP, mech: ClientMechanism) -> tuple[int, bytes]:
    """Drive a saslkit client mechanism over an smtplib connection (binary-safe, unlike smtplib.auth)."""
    initial = mech.start()
    code, resp = client.docmd("AUTH", mech.name + ("" if initial is None else " " + encode_initial_response(initial)))
    while code == 334:
        code, resp = client.docmd(b64(mech.step(base64.b64decode(resp))))
    if code == 235:
        mech.finish(None)
    return code, resp


def keywords(client: smtplib.SMTP) -> dict[str, str]:
    return dict(client.esmtp_features)


def raw_line(client: smtplib.SMTP, line: str) -> bytes:
    """Send one line and return the first reply line exactly as it came (smtplib strips it)."""
    client.send(line + "\r\n")
    assert client.file is not None
    return bytes(client.file.readline())


# ---------------------------------------------------------------- offer and policy


def test_ehlo_offers_follow_tls_and_policy(serve: Callable[..., Running]) -> None:
    server = serve(policy=PLUS_WITH_END_POINT)
    with server.connect(tls=False) as plain:
        feats = keywords(plain)
        assert "starttls" in feats
        offered = feats["auth"].split()
        assert "PLAIN" not in offered and "REMEMBERME" not in offered  # plaintext mechanisms need TLS
        assert "LOGIN" not in offered
        assert not any(m.endswith("-PLUS") or m.startswith("HT") for m in offered)
        assert "SCRAM-SHA-256" in offered
        assert "rememberme" not in feats
        assert plain.docmd("AUTH", "PLAIN " + b64(b"\0alice\0pencil"))[0] == 534  # 5.7.9 too weak here
    with server.connect() as secure:
        feats = keywords(secure)
        offered = feats["auth"].split()
        assert {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "HT2-SHA-256-NONE", "HT-SHA-256-ENDP",
                "REMEMBERME"} <= set(offered)
        assert "STOKEN" not in offered and "stoken" not in feats  # LMTP only
        # aiosmtpd's own list is gone: LOGIN is saslkit's (once, "Username:" not aiosmtpd's "User Name\0").
        assert offered.count("LOGIN") == 1 and offered.index("LOGIN") == offered.index("PLAIN") + 1
        assert secure.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
        assert secure.docmd("*")[0] == 501
        assert feats["rememberme"] == "RANDOM JWT"
        assert list(secure.esmtp_features)[-1] == "help"  # keywords inserted before the final line


def test_no_plus_without_channel_binding_data(serve: Callable[..., Running]) -> None:
    server = serve(certificate=None)  # TLS 1.3 and no certificate: no tls-unique, no tls-server-end-point
    with server.connect() as client:
        offered = keywords(client)["auth"].split()
        assert "SCRAM-SHA-256" in offered and not any(m.endswith(("-PLUS", "-ENDP")) for m in offered)


def test_require_starttls_hides_auth(serve: Callable[..., Running]) -> None:
    server = serve(require_starttls=True)
    with server.connect(tls=False) as client:
        assert "auth" not in keywords(client) and "starttls" in keywords(client)
        assert client.docmd("AUTH", "SCRAM-SHA-256")[0] == 530
    with server.connect() as client:
        assert "SCRAM-SHA-256" in keywords(client)["auth"].split()


def test_allow_plaintext_auth(serve: Callable[..., Running]) -> None:
    server = serve(allow_plaintext_auth=True)
    with server.connect(tls=False) as client:
        assert "PLAIN" in keywords(client)["auth"].split()
        client.login("alice", "pencil")


def test_implicit_tls(serve: Callable[..., Running], pki: Pki) -> None:
    # port-465 style: TLS from the first octet
    server = serve(ssl_context=pki.server, tls_context=None, policy=PLUS_WITH_END_POINT)
    with smtplib.SMTP_SSL(HOST, server.port, context=pki.client, timeout=20) as client:
        client.ehlo("client.test")
        offered = keywords(client)["auth"].split()
        assert "PLAIN" in offered and "SCRAM-SHA-256-PLUS" in offered
        assert client.login("alice", "pencil")[0] == 235


# ---------------------------------------------------------------- PLAIN and auth_required


def test_mail_before_auth_is_530_by_default(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        code, msg = client.docmd("MAIL", "FROM:<alice@example.org>")
        assert (code, msg[:5]) == (530, b"5.7.0")
        assert client.docmd("RCPT", "TO:<bob@example.org>")[0] == 530
    assert server.handler.messages == []


def test_plain_login_delivers_with_identity(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        code, msg = client.login("alice", "pencil")
        assert (code, msg[:5]) == (235, b"2.7.0")
        client.sendmail("alice@example.org", ["bob@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
        assert client.docmd("AUTH", "PLAIN " + b64(b"\0alice\0pencil"))[0] == 503  # already authenticated
    (auth, envelope), = server.handler.messages
    assert isinstance(auth, Success) and auth.identity == "alice" and auth.mechanism == "PLAIN"
    assert envelope.rcpt_tos == ["bob@example.org"] and b"hello" in envelope.content
    assert envelope.auth_param is None


def test_mail_from_auth_parameter(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        client.login("alice", "pencil")
        assert client.mail("alice@example.org", ["AUTH=e+3Dmc2@example.com"])[0] == 250
        assert client.rcpt("bob@example.org")[0] == 250
        assert client.data(b"x\r\n")[0] == 250
        assert client.docmd("MAIL", "FROM:<a@example.org> AUTH=bad+zz")[:2] == (501, b"5.5.4 Invalid AUTH= parameter")
    assert server.handler.messages[0][1].auth_param == "e=mc2@example.com"


def test_auth_required_can_be_turned_off(serve: Callable[..., Running]) -> None:
    server = serve(auth_required=False)
    with server.connect() as client:
        assert client.mail("anon@example.org", ["AUTH=someone@example.org"])[0] == 250
        code, msg = client.docmd("AUTH", "PLAIN " + b64(b"\0alice\0pencil"))
        assert (code, msg[:5]) == (503, b"5.5.1")  # not during a mail transaction (RFC 4954 §4)
        assert client.rcpt("bob@example.org")[0] == 250
        assert client.data(b"x\r\n")[0] == 250
    auth, envelope = server.handler.messages[0]
    assert auth is None and envelope.auth_param == ""  # untrusted AUTH= of an unauthenticated client


def test_allow_list_and_logged_events(serve: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    """``mechanisms`` is an allow-list in offer order; outcomes are logged from typed events, never secrets."""
    caplog.set_level("INFO", logger="saslkit.smtp.aiosmtpd")
    server = serve(mechanisms=("SCRAM-SHA-256", "PLAIN"))
    with server.connect() as client:
        assert keywords(client)["auth"].split() == ["SCRAM-SHA-256", "PLAIN"]
        assert client.docmd("AUTH", "SCRAM-SHA-1")[0] == 534  # 5.7.9: not in the allow-list
        assert client.docmd("AUTH", "PLAIN " + b64(b"\0a b\0secret-pw-1"))[0] == 535
        client.login("alice", "pencil")
    log = caplog.text
    assert 'auth refused peer=127.0.0.1 mechanism=SCRAM-SHA-1 reason="disabled by policy"' in log
    assert 'auth failed peer=127.0.0.1 mechanism=PLAIN identity="a b" reason=authentication-failed' in log
    assert "auth ok peer=127.0.0.1 mechanism=PLAIN identity=alice" in log
    assert "secret-pw-1" not in log and "pencil" not in log


def test_wrong_password_535_and_failure_cap(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        client.esmtp_features["auth"] = "PLAIN"  # smtplib would try LOGIN too after PLAIN's 535
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("alice", "wrong")
        assert info.value.smtp_code == 535 and "5.7.8" in str(info.value)
        assert client.docmd("AUTH", "PLAIN " + b64(b"\0alice\0nope"))[0] == 535
        assert client.docmd("AUTH", "PLAIN " + b64(b"\0mallory\0nope"))[0] == 535  # third failure
        assert client.getreply()[0] == 421  # RFC 4954 §9: dropped after 3 failed attempts
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_rfc4954_framing_codes(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        assert raw_line(client, "AUTH PLAIN") == b"334 \r\n"  # empty challenge keeps its space
        assert client.docmd("*") == (501, b"5.0.0 Authentication cancelled")
        assert client.docmd("AUTH", "PLAIN")[0] == 334
        assert client.docmd("abc")[:2] == (501, b"5.5.2 Invalid base64 data")
        assert client.docmd("AUTH", "PLAIN !!!!")[:2] == (501, b"5.5.2 Invalid base64 data")
        assert client.docmd("AUTH", "X-UNKNOWN")[:2] == (504, b"5.5.4 Unrecognized authentication type")
        assert client.docmd("AUTH")[0] == 501
        assert client.docmd("AUTH", "PLAIN " + "A" * 600) == (500, b"5.5.6 Line too long")  # 512-octet command
        assert client.docmd("AUTH", "SCRAM-SHA-256")[0] == 334
        assert client.docmd("A" * 13000) == (500, b"5.5.6 Authentication Exchange line is too long")
        assert client.noop()[0] == 250
        client.login("alice", "pencil")  # the cancelled and malformed exchanges were not failures


def test_auth_needs_ehlo(serve: Callable[..., Running]) -> None:
    server = serve(allow_plaintext_auth=True)
    with smtplib.SMTP(HOST, server.port, timeout=20) as client:
        client.helo("client.test")
        assert client.docmd("AUTH", "PLAIN " + b64(b"\0alice\0pencil"))[:2] == (503, b"5.5.1 Send EHLO first")


# ---------------------------------------------------------------- SCRAM


def test_scram_sha_256_with_smtplib_authobject(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        mech = ScramClient("SCRAM-SHA-256", ClientCredentials("alice", "pencil", server_offers_plus=True))

        def authobject(challenge: bytes | None = None) -> str:
            data = mech.start() if challenge is None else mech.step(challenge)
            return data.decode("ascii")

        code, msg = client.auth("SCRAM-SHA-256", authobject)
        mech.finish(None)  # the server's v= was checked on the last 334
        assert (code, msg[:5]) == (235, b"2.7.0")
        client.sendmail("alice@example.org", ["bob@example.org"], b"x\r\n")
    assert server.handler.messages[0][0].mechanism == "SCRAM-SHA-256"


def test_scram_wrong_password(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        code, _ = sasl(client, ScramClient("SCRAM-SHA-256", ClientCredentials("alice", "wrong")))
        assert code == 535


def test_no_scram_plus_with_end_point_only_by_default(serve: Callable[..., Running]) -> None:
    """Issue 11: aiosmtpd's TLS is the stdlib's (no tls-exporter, no word on the extended master secret), so
    SCRAM-*-PLUS, whose clients bind to tls-exporter or tls-unique, is not advertised unless opted into."""
    server = serve()
    with server.connect() as client:
        offered = keywords(client)["auth"].split()
        assert "HT-SHA-256-ENDP" in offered and "SCRAM-SHA-256" in offered
        assert not any(m.startswith("SCRAM") and m.endswith("-PLUS") for m in offered)
        creds = ClientCredentials("alice", "pencil", server_offers_plus=True,
                                  channel_binding=("tls-server-end-point", b"\0" * 32))
        assert sasl(client, ScramClient("SCRAM-SHA-256-PLUS", creds))[0] == 534  # 5.7.9: not offered here


def test_scram_sha_256_plus_tls_server_end_point(serve: Callable[..., Running]) -> None:
    server = serve(policy=PLUS_WITH_END_POINT)
    with server.connect() as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        bindings = channel_bindings_from_ssl(client.sock)
        creds = ClientCredentials("alice", "pencil", server_offers_plus=True,
                                  channel_binding=("tls-server-end-point", bindings["tls-server-end-point"]))
        code, msg = sasl(client, ScramClient("SCRAM-SHA-256-PLUS", creds))
        assert (code, msg[:5]) == (235, b"2.7.0")
    with server.connect() as client:  # bound to another channel: refused
        creds = ClientCredentials("alice", "pencil", server_offers_plus=True,
                                  channel_binding=("tls-server-end-point", b"\0" * 32))
        assert sasl(client, ScramClient("SCRAM-SHA-256-PLUS", creds))[0] == 535


# ---------------------------------------------------------------- REMEMBERME and HT


def _remember(server: Running, kind: str) -> str:
    with server.connect() as client:
        client.login("alice", "pencil")
        code, msg = client.docmd("REMEMBERME", kind)
        assert code == 235 and msg.startswith(b"2.7.0 ")
        return base64.b64decode(msg.split()[1], validate=True).decode()


@pytest.mark.parametrize("kind", ["RANDOM", "JWT"])
def test_rememberme_then_reauthenticate(serve: Callable[..., Running], kind: str) -> None:
    server = serve()
    token = _remember(server, kind)
    assert server.tokens.verify(token, mechanism="REMEMBERME").user == "alice"
    with server.connect() as client:
        code, msg = sasl(client, RememberMeClient(ClientCredentials("alice", token)))
        assert (code, msg[:5]) == (235, b"2.7.0")
        code, msg = client.docmd("REMEMBERME", "RANDOM")
        assert (code, msg[:5]) == (534, b"5.7.9")  # a token login cannot mint another token
        client.sendmail("alice@example.org", ["bob@example.org"], b"x\r\n")
    with server.connect() as client:
        code, msg = sasl(client, HTClient("HT2-SHA-256-NONE", ClientCredentials("alice", token)))
        assert (code, msg[:5]) == (235, b"2.7.0")
    with server.connect() as client:
        assert sasl(client, RememberMeClient(ClientCredentials("alice", token + "x")))[0] == 535
    assert [m[0].mechanism for m in server.handler.messages] == ["REMEMBERME"]


def test_rememberme_codes(serve: Callable[..., Running]) -> None:
    server = serve(allow_plaintext_auth=True)
    with server.connect(tls=False) as client:
        assert "rememberme" not in keywords(client)
        assert client.docmd("REMEMBERME", "RANDOM")[0] == 502  # not without TLS
    with server.connect() as client:
        assert client.docmd("REMEMBERME", "RANDOM")[:2] == (503, b"5.5.1 Authenticate first")
        client.login("alice", "pencil")
        assert client.docmd("REMEMBERME")[:2] == (501, b"5.5.2 Syntax: REMEMBERME token-type")
        assert client.docmd("REMEMBERME", "OPAQUE")[0:1] == (504,)
        assert client.docmd("REMEMBERME", "OPAQUE")[1][:5] == b"5.5.4"


# ---------------------------------------------------------------- LMTP and STOKEN


def test_lmtp_stoken(serve: Callable[..., Running]) -> None:
    server = serve(lmtp=True)
    token, _ = server.stokens.generate("TEMP", "bob@remote.example", "alice@mx.test")
    with server.connect(tls=False) as client:
        assert "stoken" not in keywords(client)  # TLS only
        assert client.docmd("EHLO", "x")[0] == 500  # LMTP speaks LHLO
    with server.connect() as client:
        feats = keywords(client)
        assert "stoken" in feats and "STOKEN" in feats["auth"].split()
        code, msg = sasl(client, StokenClient(ClientCredentials("alice@mx.test", token)))
        assert (code, msg[:5]) == (235, b"2.7.0")
        assert client.mail("bob@remote.example")[0] == 250
        assert client.rcpt("carol@mx.test") == (550, b"5.7.1 Submission token not valid for this recipient")
        assert client.rcpt("Alice@MX.test")[0] == 250
        assert client.data(b"hi\r\n")[0] == 250
    auth, envelope = server.handler.messages[0]
    assert auth.identity == "bob@remote.example" and envelope.rcpt_tos == ["Alice@MX.test"]
    with server.connect() as client:
        assert sasl(client, StokenClient(ClientCredentials("carol@mx.test", token)))[0] == 535


def test_genstoken_revstoken(serve: Callable[..., Running]) -> None:
    server = serve()
    with server.connect() as client:
        assert client.docmd("GENSTOKEN", "PERM bob@remote.example")[0] == 530
        client.login("alice", "pencil")
        code, msg = client.docmd("GENSTOKEN", "PERM bob@remote.example")
        assert (code, msg[:6]) == (250, b"2.1.11")
        token = msg.split()[1].decode()
        assert server.stokens.verify("alice@mx.test", token).remote == "bob@remote.example"
        assert client.docmd("GENSTOKEN", "PERM bob@remote.example carol@mx.test")[:2] == (
            501, b"5.1.7 Local address is not yours")
        assert client.docmd("REVSTOKEN", "bob@remote.example")[:2] == (250, b"2.1.0 Submission tokens revoked")


# ---------------------------------------------------------------- configuration and liveness


def test_aiosmtpd_auth_options_are_refused(users: MemoryUserStore) -> None:
    auth = SaslkitAuth(users, b"s" * 32)
    try:
        with pytest.raises(TypeError, match="authenticator"):
            SaslkitSMTP(Recorder(), saslkit=auth, authenticator=lambda *a: None)
    finally:
        auth.close()


def test_slow_logins_do_not_stall_other_connections(serve: Callable[..., Running]) -> None:
    """8 concurrent argon2 PLAIN logins; another connection's NOOPs keep answering."""
    server = serve()
    idle = server.connect()
    results: list[int] = []
    lock = threading.Lock()

    def login() -> None:
        with server.connect() as client:
            code, _ = client.login("alice", "pencil")
            with lock:
                results.append(code)

    threads = [threading.Thread(target=login) for _ in range(8)]
    latencies: list[float] = []
    start = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or not latencies:
        t0 = time.perf_counter()
        assert idle.noop()[0] == 250
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    idle.quit()
    assert results == [235] * 8
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"\n8 argon2 logins in {elapsed:.2f}s; {len(latencies)} NOOPs, median "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert latencies[-1] < 1.0


# ---------------------------------------------------------------- issue 8: auth penalty, no exception text


def test_auth_penalty_is_on_by_default(users: MemoryUserStore) -> None:
    auth = SaslkitAuth(users, b"s" * 32)
    assert isinstance(auth.auth_penalty, AuthPenalty) and (auth.auth_penalty.base, auth.auth_penalty.cap) == (2, 15)


class RecordingPenalty(AuthPenalty):
    """The adapter's auth penalty, recording the delay it gives each final reply (no clock is asserted on)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delays: list[tuple[bool, float]] = []

    def settle(self, peer: str, authcid: str | None, success: bool) -> float:
        delay = super().settle(peer, authcid, success)
        self.delays.append((success, delay))
        return delay


def test_auth_penalty_delays_logins_across_connections(serve: Callable[..., Running]) -> None:
    """Failures on separate connections from one address: each next reply waits longer; a success resets."""
    penalty = RecordingPenalty(0.5, 1.5)
    server = serve(auth_penalty=penalty)

    def attempt(password: str) -> bool:
        with server.connect() as client:
            client.user, client.password = "alice", password
            try:  # one AUTH PLAIN (login() would go on to LOGIN after a 535)
                client.auth("PLAIN", client.auth_plain)
            except smtplib.SMTPAuthenticationError:
                return False
            return True

    assert [attempt("wrong"), attempt("wrong"), attempt("wrong"), attempt("pencil"), attempt("wrong")] == \
        [False, False, False, True, False]
    # 0, then 0.5 doubling (cap 1.5); the success of a penalized attempt waits too, and resets the counts.
    assert penalty.delays == [(False, 0.0), (False, 0.5), (False, 1.0), (True, 1.5), (False, 0.0)]


class Exploding(Recorder):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raise RuntimeError("the database password is hunter2")


def test_unexpected_exception_text_never_reaches_the_client(serve: Callable[..., Running]) -> None:
    """aiosmtpd's default answer is ``500 Error: (RuntimeError) <text>``; the adapter logs and says 421."""
    server = serve(handler=Exploding())
    client = server.connect()
    client.login("alice", "pencil")
    client.mail("a@example.org")
    client.rcpt("b@mx.test")
    code, message = client.data(b"Subject: x\r\n\r\nhello\r\n")
    assert (code, message) == (421, b"4.3.0 Internal error; closing")
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        client.noop()


# ---------------------------------------------------------------- the fast path (issue 9)


class CountingAuth(SaslkitAuth):
    """Counts the lines handed to the worker pool."""

    pooled: list[bytes]

    async def run(self, fn: Callable[[bytes], Any], arg: bytes) -> Any:
        self.pooled.append(arg)
        return await super().run(fn, arg)


def test_scram_lines_run_inline_and_plain_in_the_pool(users: MemoryUserStore) -> None:
    """A memory store never waits: every SCRAM line runs on the loop; PLAIN (argon2) goes to the pool."""
    auth = CountingAuth(users, b"s" * 32, allow_plaintext_auth=True, failure_delay=0.0, auth_penalty=None)
    auth.pooled = []
    port = _free_port()
    controller = SaslkitController(Recorder(), auth, hostname=HOST, port=port)
    controller.start()
    try:
        with smtplib.SMTP(HOST, port, timeout=20) as client:
            client.ehlo("client.test")
            code, _ = sasl(client, ScramClient("SCRAM-SHA-256", ClientCredentials("alice", "pencil")))
            assert code == 235 and auth.pooled == []
        with smtplib.SMTP(HOST, port, timeout=20) as client:
            client.ehlo("client.test")
            assert client.docmd("AUTH", "PLAIN " + b64(b"\0alice\0pencil"))[0] == 235
            assert auth.pooled == [b"AUTH PLAIN " + b64(b"\0alice\0pencil").encode()]
    finally:
        controller.stop()


def test_reads_into_a_shared_buffer_and_introspects_like_aiosmtpd(users: MemoryUserStore) -> None:
    """BufferedProtocol: asyncio reads into one buffer per thread; aiosmtpd finds the same commands."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    async def build() -> tuple[SaslkitSMTP, SMTP]:
        auth = SaslkitAuth(users, b"s" * 32)
        return SaslkitSMTP(Recorder(), saslkit=auth), SMTP(Recorder())

    ours, plain = asyncio.run(build())
    assert isinstance(ours, asyncio.BufferedProtocol)
    assert set(ours._smtp_methods) == set(plain._smtp_methods) | {"REMEMBERME", "GENSTOKEN", "REVSTOKEN"}
    assert "connection_made" in dir(ours) and "saslkit" in dir(ours)  # dir() is the usual one afterwards
    buffer = ours.get_buffer(-1)
    assert 0 < len(buffer) < 128 * 1024  # a copy of one read stays below glibc's mmap threshold


def test_multi_line_replies_arrive_whole(serve: Callable[..., Running]) -> None:
    """EHLO's reply is written at once; a client reading line by line still sees every line."""
    server = serve(allow_plaintext_auth=True)
    with socket.create_connection((HOST, server.port), timeout=20) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.test\r\n")
        lines = [reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(reader.readline())
        assert lines[-1].startswith(b"250 ") and any(x.startswith(b"250-AUTH ") or x.startswith(b"250 AUTH ")
                                                      for x in lines)
        assert all(x.endswith(b"\r\n") and x[:3] == b"250" for x in lines)


# ---------------------------------------------------------------- STARTTLS on pyOpenSSL: tls-exporter (issue 11)


def test_starttls_on_pyopenssl_binds_tls_exporter(serve: Callable[..., Running], pki: Pki) -> None:
    """``tls_context=OpenSSLServerContext(...)``: STARTTLS runs on pyOpenSSL and -PLUS binds to tls-exporter."""
    pytest.importorskip("OpenSSL")
    import os
    import shutil
    import subprocess

    from saslkit.net.client import client_tls_context
    from saslkit.net.tls import OpenSSLServerContext
    from saslkit.smtp.client import SmtpClient

    server = serve(tls_context=OpenSSLServerContext(pki.cert, pki.cert.parent / "key.pem"))
    with server.connect() as client:  # smtplib on the stdlib's ssl
        offered = keywords(client)["auth"].split()
        assert {"SCRAM-SHA-256-PLUS", "HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "PLAIN"} <= set(offered)
        assert client.login("alice", "pencil")[0] == 235
        client.sendmail("alice@example.com", ["bob@example.com"], b"Subject: over pyOpenSSL\r\n\r\nbody\r\n")
    assert server.handler.messages and server.handler.messages[-1][1].mail_from == "alice@example.com"
    transcript: list[str] = []
    with SmtpClient(HOST, server.port, ssl_context=client_tls_context(cafile=str(pki.cert)),
                    log=transcript.append) as smtp:
        smtp.connect("starttls")
        result = smtp.authenticate("SCRAM-SHA-256-PLUS", "alice", "pencil")
    assert (result.mechanism, result.channel_binding) == ("SCRAM-SHA-256-PLUS", "tls-exporter")
    assert any(line.startswith("C: AUTH SCRAM-SHA-256-PLUS p=tls-exporter,,") for line in transcript), transcript
    gsasl = shutil.which("gsasl")
    if gsasl is None:
        if os.environ.get("CI"):
            pytest.fail("gsasl is not installed")
        return
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    for mech in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
        done = subprocess.run([gsasl, "--smtp", "--connect", f"{HOST}:{server.port}", "-m", mech, "-a", "alice",
                               "-p", "pencil", f"--x509-ca-file={pki.cert}", "--verbose"],
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
        transcript_text = done.stdout + done.stderr
        assert done.returncode == 0 and "235 2.7.0" in transcript_text, transcript_text
        assert "(TLS1.3)" in transcript_text
