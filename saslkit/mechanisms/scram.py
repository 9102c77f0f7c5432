"""SCRAM-SHA-1/-256/-512 and their -PLUS forms (RFC 5802, RFC 7677, draft-melnikov-scram-sha-512).

Server and client are sans-IO state machines over the RFC 5802 §7 messages.
Channel binding follows RFC 5802 §6 (``y`` is a downgrade when the server
supports binding; ``p`` must name a type this connection offers; ``c=`` is
always rebuilt and compared).  Unknown users, and users lacking the hash
asked for, are shown a deterministic fake salt and an iteration count drawn
per name from the store's real users (:mod:`saslkit.unknown_users`) and fail
only at the proof, with the same ``e=invalid-proof`` as a wrong password
(RFC 5802 §9).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, NamedTuple

from ..context import ClientCredentials, ServerContext
from ..credentials import (
    MAX_ITERATIONS,
    SCRAM_HASHES,
    ScramCredential,
    salted_password,
    scram_keys,
)
from ..errors import AuthenticationFailed, PreparationError, ProtocolError, UsageError
from ..mechanism import Challenge, Failure, FailureReason, ServerStep, Success
from ..saslprep import saslprep
from ..unknown_users import fake_scram_parameters

__all__ = [
    "SCRAM_MECHANISMS",
    "ClientFinal",
    "ClientFirst",
    "GS2Header",
    "ScramClient",
    "ScramServer",
    "ServerError",
    "ServerFinal",
    "ServerFirst",
    "decode_message",
    "decode_proof",
    "decode_saslname",
    "encode_saslname",
    "parse_client_final",
    "parse_client_first",
    "parse_client_first_bare",
    "parse_gs2_header",
    "parse_server_final",
    "parse_server_first",
    "scram_hash_of",
]

#: mechanism name -> (hash name, channel binding required)
SCRAM_MECHANISMS: dict[str, tuple[str, bool]] = {}
for _h in SCRAM_HASHES:
    SCRAM_MECHANISMS[f"SCRAM-{_h}"] = (_h, False)
    SCRAM_MECHANISMS[f"SCRAM-{_h}-PLUS"] = (_h, True)

# RFC 5802 §7: printable = %x21-2B / %x2D-7E ; cb-name = 1*(ALPHA / DIGIT / "." / "-")
_PRINTABLE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_CB_NAME_RE = re.compile(r"[A-Za-z0-9.\-]+")
_ATTR_RE = re.compile(r"[A-Za-z]=")

# RFC 5802 §7 server-error-value
INVALID_ENCODING = "invalid-encoding"
EXTENSIONS_NOT_SUPPORTED = "extensions-not-supported"
INVALID_PROOF = "invalid-proof"
CHANNEL_BINDINGS_DONT_MATCH = "channel-bindings-dont-match"
SERVER_DOES_SUPPORT_CHANNEL_BINDING = "server-does-support-channel-binding"
CHANNEL_BINDING_NOT_SUPPORTED = "channel-binding-not-supported"
UNSUPPORTED_CHANNEL_BINDING_TYPE = "unsupported-channel-binding-type"
UNKNOWN_USER = "unknown-user"
INVALID_USERNAME_ENCODING = "invalid-username-encoding"
NO_RESOURCES = "no-resources"
OTHER_ERROR = "other-error"
SERVER_ERRORS = frozenset(
    {
        INVALID_ENCODING,
        EXTENSIONS_NOT_SUPPORTED,
        INVALID_PROOF,
        CHANNEL_BINDINGS_DONT_MATCH,
        SERVER_DOES_SUPPORT_CHANNEL_BINDING,
        CHANNEL_BINDING_NOT_SUPPORTED,
        UNSUPPORTED_CHANNEL_BINDING_TYPE,
        UNKNOWN_USER,
        INVALID_USERNAME_ENCODING,
        NO_RESOURCES,
        OTHER_ERROR,
    }
)

MAX_NONCE_LENGTH = 512
MAX_NAME_LENGTH = 1024


def scram_hash_of(mechanism: str) -> tuple[str, bool]:
    """``"SCRAM-SHA-256-PLUS"`` -> ``("SHA-256", True)``."""
    try:
        return SCRAM_MECHANISMS[mechanism.upper()]
    except KeyError:
        raise UsageError(f"not a SCRAM mechanism: {mechanism!r}") from None


def encode_saslname(name: str) -> str:
    """Escape ``=`` and ``,`` as ``=3D`` and ``=2C`` (RFC 5802 §5.1 'n')."""
    return name.replace("=", "=3D").replace(",", "=2C")


def decode_saslname(value: str) -> str:
    """Undo :func:`encode_saslname`; any other ``=`` sequence is an error (RFC 5802 §5.1)."""
    if "=" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "=":
            code = value[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ProtocolError(INVALID_USERNAME_ENCODING, "bad '=' escape in saslname")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _b64decode(value: str, reason: str) -> bytes:
    """Strict base64 (RFC 4648 §4): alphabet, padding and canonical pad bits."""
    try:
        data = _a2b_strict(value)
    except (binascii.Error, ValueError):
        raise ProtocolError(reason, "invalid base64") from None
    if not value or binascii.b2a_base64(data, newline=False) != value.encode("ascii"):
        raise ProtocolError(reason, "invalid base64")
    return data


def _a2b_strict(value: str) -> bytes:
    return binascii.a2b_base64(value, strict_mode=True)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class _HmacKey:
    """HMAC (RFC 2104) with the key pads already absorbed into two hash states.

    Each message then costs two hash-state copies and the message blocks,
    about a third of a one-shot ``hmac.digest`` call.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, algo: str) -> None:
        h = hashlib.new(algo)
        block = h.block_size
        if len(key) > block:
            key = hashlib.new(algo, key).digest()
        key = key.ljust(block, b"\x00")
        self._inner = hashlib.new(algo, key.translate(_IPAD))
        self._outer = hashlib.new(algo, key.translate(_OPAD))

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@lru_cache(maxsize=8192)
def _hmac_key(key: bytes, algo: str) -> _HmacKey:
    """Cached per StoredKey/ServerKey (values the credential store already holds in memory)."""
    return _HmacKey(key, algo)


def _hmac(key: bytes, msg: bytes, algo: str) -> bytes:
    return _hmac_key(key, algo).digest(msg)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _split_attrs(text: str, reason: str = INVALID_ENCODING) -> list[str]:
    """Split ``a=…,b=…`` into its parts; every part must be ``ALPHA "=" value``."""
    parts = text.split(",")
    for part in parts:
        if part[1:2] != "=" or part[:1] not in _ALPHA:
            raise ProtocolError(reason, "malformed attribute")
    return parts


# --- Parsing: pure functions from message text to immutable records (RFC 5802 §7) ---------------
# They raise ProtocolError only, whose reason is the RFC 5802 §7 server-error-value to send.
# The records are NamedTuples, not frozen dataclasses: a frozen dataclass costs ~0.4 µs more to
# build, 2% of a whole server exchange (benchmarks/bench_scram.py).


class GS2Header(NamedTuple):
    """A parsed ``gs2-header`` (RFC 5802 §7): flag ``n``/``y``/``p``, its cb-name, the authzid."""

    flag: str
    cb_name: str | None
    authzid: str | None  # decoded saslname, not yet SASLprep-ed
    raw: str  # the header as sent, for ``c=`` (RFC 5802 §6)


_NO_BINDING = GS2Header("n", None, None, "n,,")
_NO_BINDING_CBIND = "biws"  # base64 of "n,,"


class ClientFirst(NamedTuple):
    """client-first-message (RFC 5802 §7): header, username (decoded, not prepared), nonce."""

    gs2: GS2Header
    username: str
    nonce: str
    bare: str  # client-first-message-bare, part of AuthMessage (RFC 5802 §3)


class ClientFinal(NamedTuple):
    """client-final-message (RFC 5802 §7), values still base64 so checks keep their order."""

    cbind_b64: str
    nonce: str
    proof_b64: str
    without_proof: str  # client-final-message-without-proof, part of AuthMessage


class ServerFirst(NamedTuple):
    """server-first-message (RFC 5802 §7)."""

    nonce: str
    salt: bytes
    iterations: int
    text: str


class ServerFinal(NamedTuple):
    """server-final-message with ``v=`` (RFC 5802 §7)."""

    signature: bytes


class ServerError(NamedTuple):
    """A server message carrying ``e=`` (RFC 5802 §7 server-error)."""

    reason: str


def decode_message(data: bytes, limit: int) -> str:
    """UTF-8 text of a SCRAM message of at most ``limit`` octets, without NUL (RFC 5802 §7)."""
    if len(data) > limit:
        raise ProtocolError(INVALID_ENCODING, "message too long")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(INVALID_ENCODING, "message is not UTF-8") from None
    if "\x00" in text:
        raise ProtocolError(INVALID_ENCODING, "NUL in message")
    return text


def parse_gs2_header(text: str) -> tuple[GS2Header, str]:
    """Split client-first-message into its ``gs2-header`` and the rest (RFC 5802 §7)."""
    if text.startswith("n,,"):  # the common case
        return _NO_BINDING, text[3:]
    first = text.find(",")
    second = text.find(",", first + 1) if first >= 0 else -1
    if second < 0:
        raise ProtocolError(INVALID_ENCODING, "missing gs2-header")
    flag, cb_name = _parse_gs2_flag(text[:first])
    authzid = _parse_gs2_authzid(text[first + 1 : second])
    return GS2Header(flag, cb_name, authzid, text[: second + 1]), text[second + 1 :]


def _parse_gs2_flag(flag_part: str) -> tuple[str, str | None]:
    """``gs2-cbind-flag``: ``n``, ``y`` or ``p=cb-name``."""
    if flag_part in ("n", "y"):
        return flag_part, None
    if not flag_part.startswith("p="):
        raise ProtocolError(INVALID_ENCODING, "gs2 flag must be n, y or p=")
    cb_name = flag_part[2:]
    if not _CB_NAME_RE.fullmatch(cb_name):
        raise ProtocolError(INVALID_ENCODING, "bad channel-binding name")
    return "p", cb_name


def _parse_gs2_authzid(authz_part: str) -> str | None:
    """``[ authzid ]``: empty, or ``a=saslname``."""
    if not authz_part:
        return None
    if not authz_part.startswith("a=") or len(authz_part) < 3:
        raise ProtocolError(INVALID_ENCODING, "bad authzid in gs2-header")
    return decode_saslname(authz_part[2:])


def parse_client_first_bare(gs2: GS2Header, bare: str) -> ClientFirst:
    """Parse client-first-message-bare ``[reserved-mext ","] username "," nonce ["," extensions]``."""
    attrs = _split_attrs(bare)
    if attrs[0][0] == "m":
        raise ProtocolError(EXTENSIONS_NOT_SUPPORTED, "mandatory extension")
    if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
        raise ProtocolError(INVALID_ENCODING, "expected n= and r=")
    raw_name = attrs[0][2:]
    nonce = attrs[1][2:]
    if not raw_name or len(raw_name) > MAX_NAME_LENGTH:
        raise ProtocolError(INVALID_USERNAME_ENCODING, "bad username length")
    if not _PRINTABLE_RE.fullmatch(nonce) or len(nonce) > MAX_NONCE_LENGTH:
        raise ProtocolError(INVALID_ENCODING, "bad client nonce")
    return ClientFirst(gs2, decode_saslname(raw_name), nonce, bare)


def parse_client_first(text: str) -> ClientFirst:
    """Parse a whole client-first-message (RFC 5802 §7).

    The server parses it in two parts so that a channel-binding refusal
    (RFC 5802 §6) outranks an error in the rest of the message.
    """
    gs2, bare = parse_gs2_header(text)
    return parse_client_first_bare(gs2, bare)


def parse_client_final(text: str) -> ClientFinal:
    """Parse client-final-message ``c=…,r=…[,extensions],p=…`` (RFC 5802 §7)."""
    attrs = text.split(",")
    if len(attrs) < 3 or attrs[0][:2] != "c=" or attrs[1][:2] != "r=" or attrs[-1][:2] != "p=":
        raise ProtocolError(INVALID_ENCODING, "expected c=, r= … p=")
    if len(attrs) > 3:  # extensions: well-formed, not a core attribute, not a mandatory one
        extensions = _split_attrs(",".join(attrs[2:-1]))
        if any(a[0] in "cnrpm" for a in extensions):
            raise ProtocolError(INVALID_ENCODING, "unexpected attribute in client-final")
    return ClientFinal(attrs[0][2:], attrs[1][2:], attrs[-1][2:], text[: -len(attrs[-1]) - 1])


def decode_proof(proof_b64: str) -> bytes:
    """The ClientProof octets; non-canonical pad bits are harmless, the proof is checked bit for bit."""
    try:
        return _a2b_strict(proof_b64)
    except (binascii.Error, ValueError):
        raise ProtocolError(INVALID_PROOF, "invalid base64") from None


def parse_server_first(text: str, client_nonce: str, max_iterations: int) -> ServerFirst | ServerError:
    """Parse server-first-message ``r=…,s=…,i=…`` or ``e=…`` (RFC 5802 §7).

    The nonce must extend ``client_nonce`` and the count lie in ``1..max_iterations``
    (both ``other-error``); checked in the order the message is read.
    """
    attrs = _split_attrs(text)
    if attrs[0][0] == "e":
        return ServerError(attrs[0][2:])
    if attrs[0][0] == "m":
        raise ProtocolError(EXTENSIONS_NOT_SUPPORTED, "mandatory extension from server")
    if len(attrs) < 3 or [a[0] for a in attrs[:3]] != ["r", "s", "i"]:
        raise ProtocolError(INVALID_ENCODING, "expected r=, s=, i=")
    nonce, salt_b64, iter_text = attrs[0][2:], attrs[1][2:], attrs[2][2:]
    if (
        not nonce.startswith(client_nonce)
        or len(nonce) <= len(client_nonce)
        or not _PRINTABLE_RE.fullmatch(nonce)
        or len(nonce) > MAX_NONCE_LENGTH * 2
    ):
        raise ProtocolError(OTHER_ERROR, "server nonce does not extend the client nonce")
    salt = _b64decode(salt_b64, INVALID_ENCODING)
    if not salt:
        raise ProtocolError(INVALID_ENCODING, "empty salt")
    if not iter_text.isdigit() or not iter_text.isascii() or len(iter_text) > 9:
        raise ProtocolError(INVALID_ENCODING, "bad iteration count")
    iterations = int(iter_text)
    if not 1 <= iterations <= max_iterations:
        raise ProtocolError(OTHER_ERROR, f"iteration count {iterations} out of bounds")
    return ServerFirst(nonce, salt, iterations, text)


def parse_server_final(text: str) -> ServerFinal | ServerError:
    """Parse server-final-message ``v=…`` or ``e=…`` (RFC 5802 §7)."""
    attrs = _split_attrs(text)
    key, value = attrs[0][0], attrs[0][2:]
    if key == "e":
        return ServerError(value)
    if key != "v":
        raise ProtocolError(INVALID_ENCODING, "expected v= or e=")
    return ServerFinal(_b64decode(value, INVALID_ENCODING))


# --- Conversation ---------------------------------------------------------------------------------


@cache
def _dummy_credential(hash_name: str) -> ScramCredential:
    """Random keys that no proof matches, checked for unknown users to equalise work."""
    _, size = SCRAM_HASHES[hash_name]
    return ScramCredential(hash_name, secrets.token_bytes(16), 4096, secrets.token_bytes(size),
                           secrets.token_bytes(size))


@cache
def _server_suite(mechanism: str) -> tuple[str, bool, str, int, Callable[[bytes], Any]]:
    """Hash name, -PLUS, hashlib name, digest size and constructor of a SCRAM mechanism (computed once)."""
    hash_name, plus = scram_hash_of(mechanism)
    algo, size = SCRAM_HASHES[hash_name]
    return hash_name, plus, algo, size, getattr(hashlib, algo)


class _ServerState(enum.Enum):
    """Server states (RFC 5802 §5): client-first awaited, then client-final."""

    START = "start"
    EMPTY_CHALLENGE_SENT = "empty challenge sent"  # no initial response (RFC 4422 §3)
    SENT_SERVER_FIRST = "server-first sent"
    DONE = "done"


# Bound once: an Enum attribute lookup costs ~90 ns, several per exchange on the server's hot path.
_START = _ServerState.START
_EMPTY_CHALLENGE_SENT = _ServerState.EMPTY_CHALLENGE_SENT
_SENT_SERVER_FIRST = _ServerState.SENT_SERVER_FIRST
_DONE = _ServerState.DONE


class ScramServer:
    """Server side of SCRAM (RFC 5802 §5, §7).

    Step 1 takes client-first-message and returns server-first-message; step 2
    takes client-final-message and returns :class:`Success` with the
    server-final-message (``v=``) as additional data, or :class:`Failure` whose
    ``reason`` and ``data`` carry the ``e=`` value.
    """

    def __init__(self, mechanism: str, ctx: ServerContext) -> None:
        self.name = mechanism.upper()
        self.hash_name, self.plus, self._algo, self._size, self._hash = _server_suite(self.name)
        self._ctx = ctx
        self._state = _START
        self._credential: ScramCredential | None = None
        self._nonce = ""
        self._cb_name: str | None = None
        self._username = ""
        self._authzid: str | None = None
        self._client_first_bare = ""
        self._server_first = ""
        self._gs2 = _NO_BINDING

    @property
    def done(self) -> bool:
        return self._state is _DONE

    def step(self, response: bytes | None) -> ServerStep:
        state = self._state
        if state is _DONE:
            raise UsageError("SCRAM exchange already finished")
        if response is None:
            if state is _START:
                # Client-first mechanism without an initial response: empty challenge (RFC 4422 §3).
                self._state = _EMPTY_CHALLENGE_SENT
                return Challenge(b"")
            response = b""
        try:
            if state is _SENT_SERVER_FIRST:
                return self._client_final(response)
            return self._client_first(response)
        except ProtocolError as exc:
            return self._fail(exc.reason, str(exc))

    def _fail(self, reason: str, message: str = "") -> Failure:
        self._state = _DONE
        error = reason if reason in SERVER_ERRORS else OTHER_ERROR
        return Failure(error, message, b"e=" + error.encode("ascii"), authcid=self._username or None)

    def _check_binding(self, gs2: GS2Header) -> None:
        """The gs2 flag against this mechanism and connection (RFC 5802 §6, RFC 9266 §4.1)."""
        cb = self._ctx.channel_bindings
        if gs2.flag == "y":
            advertised = self._ctx.plus_advertised
            if cb if advertised is None else advertised:
                raise ProtocolError(SERVER_DOES_SUPPORT_CHANNEL_BINDING, "downgrade attempt: flag y")
            if self.plus:
                raise ProtocolError(CHANNEL_BINDING_NOT_SUPPORTED, "-PLUS mechanism requires flag p")
        elif gs2.flag == "n":
            if self.plus:
                raise ProtocolError(SERVER_DOES_SUPPORT_CHANNEL_BINDING, "-PLUS mechanism requires flag p")
        else:
            if not self.plus:
                raise ProtocolError(CHANNEL_BINDING_NOT_SUPPORTED, "flag p used with a non-PLUS mechanism")
            if not cb:
                raise ProtocolError(CHANNEL_BINDING_NOT_SUPPORTED, "no channel binding on this connection")
            if gs2.cb_name not in cb:
                raise ProtocolError(UNSUPPORTED_CHANNEL_BINDING_TYPE, "channel-binding type not offered")
            if gs2.cb_name == "tls-exporter" and gs2.cb_name in self._ctx.bindings_used:
                # RFC 9266 §4.1: one authentication per TLS connection with tls-exporter.
                raise ProtocolError(CHANNEL_BINDING_NOT_SUPPORTED, "tls-exporter already used on this connection")

    def _prepare_names(self, first: ClientFirst) -> None:
        """SASLprep username and authzid (RFC 5802 §5.1); a name preparing to "" fails."""
        try:
            prepared = saslprep(first.username)
            authzid = saslprep(first.gs2.authzid) if first.gs2.authzid is not None else None
        except PreparationError:
            raise ProtocolError(INVALID_USERNAME_ENCODING, "username fails SASLprep") from None
        if not prepared:
            raise ProtocolError(INVALID_USERNAME_ENCODING, "empty username")
        self._username = prepared  # for Failure.authcid from here on
        if authzid == "":
            # A non-empty authzid that prepares to "" must fail (RFC 4954 §4).
            raise ProtocolError(INVALID_USERNAME_ENCODING, "empty authzid after SASLprep")
        self._authzid = authzid

    def _cbind_for(self, gs2: GS2Header) -> str:
        """The ``c=`` value the client must send: base64 of header and binding data (RFC 5802 §6)."""
        if gs2 is _NO_BINDING:
            return _NO_BINDING_CBIND
        cbind = gs2.raw.encode("utf-8")
        if gs2.cb_name is not None:
            cbind += self._ctx.channel_bindings[gs2.cb_name]
        return _b64(cbind)

    def _client_first(self, data: bytes) -> ServerStep:
        gs2, bare = parse_gs2_header(decode_message(data, self._ctx.max_message_size))
        if gs2 is not _NO_BINDING or self.plus:  # "n,," on a non-PLUS mechanism needs no check
            self._check_binding(gs2)
        first = parse_client_first_bare(gs2, bare)
        self._prepare_names(first)
        users = self._ctx.users
        record = users.get_user(self._username)
        credential = record.scram_for(self.hash_name) if record is not None else None
        # Computed for every name (known or not), so that no outcome costs less.
        salt, iterations = fake_scram_parameters(
            users, self._ctx.server_secret, self._username, self.hash_name, known=record is not None
        )
        if credential is not None:
            salt, iterations = credential.salt, credential.iterations
        s_nonce = self._ctx.nonce_factory()
        if not _PRINTABLE_RE.fullmatch(s_nonce):
            raise UsageError("nonce_factory must return printable ASCII without ','")
        self._credential = credential
        self._cb_name = gs2.cb_name
        self._gs2 = gs2  # c= is computed at the final step: a binding may supply its data only then (Dovecot's)
        self._client_first_bare = bare
        self._nonce = first.nonce + s_nonce
        self._server_first = f"r={self._nonce},s={_b64(salt)},i={iterations}"  # the same work either way
        self._state = _SENT_SERVER_FIRST
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, data: bytes) -> ServerStep:
        final = parse_client_final(decode_message(data, self._ctx.max_message_size))
        # c= is rebuilt and compared (RFC 5802 §6); channel-binding data is not secret.
        expected_cbind = self._cbind_for(self._gs2)
        if final.cbind_b64 != expected_cbind:
            expected = base64.b64decode(expected_cbind)
            if _b64decode(final.cbind_b64, INVALID_ENCODING) != expected:
                raise ProtocolError(CHANNEL_BINDINGS_DONT_MATCH, "c= does not match")
        if final.nonce != self._nonce:
            raise ProtocolError(OTHER_ERROR, "nonce mismatch")
        proof = decode_proof(final.proof_b64)
        auth_message = f"{self._client_first_bare},{self._server_first},{final.without_proof}".encode()
        credential = self._credential or _dummy_credential(self.hash_name)
        if len(proof) != self._size:
            return self._fail(INVALID_PROOF)
        client_signature = _hmac(credential.stored_key, auth_message, self._algo)
        client_key = _xor(proof, client_signature)
        valid = hmac.compare_digest(self._hash(client_key).digest(), credential.stored_key)
        if not valid or self._credential is None:
            # Unknown users fail here, after the same work, like a wrong password (RFC 5802 §9).
            return self._fail(INVALID_PROOF)
        return self._authorized(credential, auth_message)

    def _authorized(self, credential: ScramCredential, auth_message: bytes) -> ServerStep:
        """The proof held: check the authzid, then answer with ``v=`` (RFC 5802 §5.1)."""
        authzid = self._authzid
        if authzid is not None and authzid != self._username:
            if not self._ctx.authorize(self._username, authzid):
                self._state = _DONE
                return Failure(FailureReason.AUTHORIZATION_FAILED, "not authorized to act as that identity",
                               b"e=" + OTHER_ERROR.encode(), authcid=self._username)
        server_signature = _hmac(credential.server_key, auth_message, self._algo)
        self._state = _DONE
        if self._cb_name is not None:
            self._ctx.bindings_used.add(self._cb_name)
        return Success(
            self._username,
            authzid if authzid != self._username else None,
            b"v=" + binascii.b2a_base64(server_signature, newline=False),
            self.name,
        )


class _ClientState(enum.Enum):
    """Client states (RFC 5802 §5); the client must verify the server's ``v=``."""

    START = "start"
    SENT_FIRST = "client-first sent"
    SENT_FINAL = "client-final sent"
    VERIFIED = "server verified"
    FAILED = "failed"


class ScramClient:
    """Client side of SCRAM (RFC 5802 §5, §7).

    ``start()`` returns client-first; ``step(server_first)`` returns
    client-final; ``step(server_final)`` verifies ``v=`` and returns ``b""``
    (the empty response SMTP/IMAP need, RFC 4422 §5 item 2b); ``finish()``
    raises :class:`AuthenticationFailed` unless the server was verified.
    """

    def __init__(self, mechanism: str, creds: ClientCredentials) -> None:
        self.name = mechanism.upper()
        self.hash_name, self.plus = scram_hash_of(self.name)
        self._algo, self._size = SCRAM_HASHES[self.hash_name]
        self._creds = creds
        if self.plus and creds.channel_binding is None:
            raise UsageError(f"{self.name} needs channel-binding data")
        self._state = _ClientState.START
        self._c_nonce = ""
        self._bare = ""
        self._gs2 = ""
        self._server_signature = b""

    @property
    def verified(self) -> bool:
        """True once the server's ``v=`` matched."""
        return self._state is _ClientState.VERIFIED

    def start(self) -> bytes:
        if self._state is not _ClientState.START:
            raise UsageError("start() called twice")
        creds = self._creds
        try:
            authz = "a=" + encode_saslname(saslprep(creds.authzid)) if creds.authzid else ""
            username = encode_saslname(saslprep(creds.username))
        except PreparationError as exc:
            raise UsageError(f"username or authzid rejected by SASLprep: {exc}") from exc
        if not username:
            raise UsageError("empty username")
        self._gs2 = f"{self._gs2_flag()},{authz},"
        self._c_nonce = creds.nonce_factory()
        if not _PRINTABLE_RE.fullmatch(self._c_nonce):
            raise UsageError("nonce_factory must return printable ASCII without ','")
        self._bare = f"n={username},r={self._c_nonce}"
        self._state = _ClientState.SENT_FIRST
        return (self._gs2 + self._bare).encode("utf-8")

    def _gs2_flag(self) -> str:
        """``p=type`` for -PLUS; ``y`` if we could bind but the server offered no -PLUS (RFC 5802 §6)."""
        creds = self._creds
        if self.plus:
            assert creds.channel_binding is not None
            return "p=" + creds.channel_binding[0]
        if creds.channel_binding is not None and not creds.server_offers_plus:
            return "y"
        return "n"

    def step(self, challenge: bytes) -> bytes:
        try:
            if self._state is _ClientState.SENT_FIRST:
                return self._server_first(challenge)
            if self._state is _ClientState.SENT_FINAL:
                self._server_final(challenge)
                return b""
        except (ProtocolError, AuthenticationFailed):
            self._state = _ClientState.FAILED
            raise
        raise UsageError("unexpected step() in this state")

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data is not None and self._state is _ClientState.SENT_FINAL:
            self.step(additional_data)
        if self._state is not _ClientState.VERIFIED:
            self._state = _ClientState.FAILED
            raise AuthenticationFailed("server-not-verified", "server success without a valid v=")

    def _server_first(self, data: bytes) -> bytes:
        max_iterations = min(self._creds.max_iterations, MAX_ITERATIONS)
        first = parse_server_first(decode_message(data, 8192), self._c_nonce, max_iterations)
        if isinstance(first, ServerError):
            raise AuthenticationFailed(first.reason, f"server error: {first.reason}")
        cbind = self._gs2.encode("utf-8")
        if self.plus:
            assert self._creds.channel_binding is not None
            cbind += self._creds.channel_binding[1]
        without_proof = f"c={_b64(cbind)},r={first.nonce}"
        auth_message = f"{self._bare},{first.text},{without_proof}".encode()
        try:
            salted = salted_password(self.hash_name, self._creds.secret, first.salt, first.iterations)
        except PreparationError as exc:
            raise UsageError(f"password rejected by SASLprep: {exc}") from exc
        client_key, stored_key, server_key = scram_keys(self.hash_name, salted)
        proof = _xor(client_key, hmac.digest(stored_key, auth_message, self._algo))
        self._server_signature = hmac.digest(server_key, auth_message, self._algo)
        self._state = _ClientState.SENT_FINAL
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def _server_final(self, data: bytes) -> None:
        final = parse_server_final(decode_message(data, 8192))
        if isinstance(final, ServerError):
            raise AuthenticationFailed(final.reason, f"server error: {final.reason}")
        if not hmac.compare_digest(final.signature, self._server_signature):
            raise AuthenticationFailed("invalid-server-signature", "server signature does not match")
        self._state = _ClientState.VERIFIED
