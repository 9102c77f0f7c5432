"""HT (Hashed Token) mechanisms in two wire families: ``HT-*`` and ``HT2-*``.

* ``HT-<HASH>-<CB>``: draft-schmaus-kitten-sasl-ht-09, the format XEP-0484
  (FAST), Prosody and ejabberd deploy (docs/protocol-notes.md §6.2, §6.4)::

      initiator-msg = authcid NUL HMAC(token, "Initiator" || cb-data)
      responder-msg = HMAC(token, "Responder" || cb-data)   ; additional data with success

* ``HT2-<HASH>-<CB>``: draft-ietf-kitten-sasl-ht-01 (§3.1, §3.3), the format
  Openfire advertises as ``HT2-*`` (docs/protocol-notes.md §6.1, §6.3)::

      initiator-msg = authcid NUL extra-initiator-values NUL
                      HMAC(token, "Initiator" || cb-data || extra-initiator-values)
      responder-msg = NUL extra-responder-values NUL
                      HMAC(token, "Responder" || cb-data || extra-responder-values)
                    / %x01 failure-description

``HASH`` is ``SHA-256``, ``SHA-512`` or ``SHA3-512``; ``CB`` is ``NONE``
(empty cb-data), ``UNIQ`` (tls-unique), ``ENDP`` (tls-server-end-point) or
``EXPR`` (tls-exporter), HT-09 §2.  HMAC is RFC 2104 with that hash.

Decisions (where the drafts leave room):

* The HMAC key is the UTF-8 octets of the token string exactly as given,
  never base64-decoded (HT-09 §3.1, ietf-01 §3.1; docs/protocol-notes.md §0 item 2).
* The initiator message is split at the *first* NUL (the HMAC may contain
  0x00); for HT2 the next NUL ends the extra values and the rest is the HMAC.
  The HMAC must be exactly the hash size, else the message is malformed
  (``invalid-encoding``).  Bounds: authcid 1..1024 octets of UTF-8 without
  NUL (HT-09 requires accepting 255), extra values at most 1024 octets of
  ietf-01 §3.1 ``key-value-pairs`` (``k=v`` joined by ``,``; ``k`` and ``v``
  are 1* of ``ALPHA DIGIT / + - _``).  Anything else is ``invalid-encoding``.
* HMACs are compared with :func:`hmac.compare_digest`.  The work does not
  depend on who asks: exactly ``max_tokens_per_user`` (the verifier's cap on
  live tokens per user, default 20) candidate HMACs are computed, padded with
  dummy tokens, so an unknown user, a user with one token and a user at the
  cap cost the same (the verifier's ``secrets_for`` serves that many slots at
  one cost too: all derived on a name's first attempt, all cached after).  The user is then looked up in ``ctx.users``
  whether a token matched or not: a matching token of a deleted user, or one
  minted before the user's last credential change
  (:func:`~saslkit.tokens.records.token_user_current`), fails exactly like a
  wrong token.  :attr:`Failure.authcid` is the prepared authcid.
* Unknown user and wrong token give the *same* :class:`Failure`
  (``authentication-failed``, HT2 data ``%x01 "invalid-token"``), per the
  RFC 4422 §3.6 advice and ietf-01 §3.3.2; an authcid that fails SASLprep
  (prepared as a query string, RFC 4013) is treated the same way.  Only a
  :class:`~saslkit.errors.TokenRejected` raised by the verifier with another
  reason (``revoked``, ``expired``, ``wrong-mechanism``) is passed on, as the
  HT2 failure-description (a ietf-01 ``failure-description-ext``) and as the
  message, which the verifier keeps safe to show.  Malformed messages, missing
  channel binding and temporary failures say ``other-error`` in HT2.
* The server's ``Failure.data`` carries the HT2 failure-response; HT-09 has
  none (``None``).  Most bindings cannot carry it (RFC 4422 §3.6,
  docs/protocol-notes.md §6.5 item 2); a client that receives it as a challenge raises
  :class:`AuthenticationFailed` with the description (unknown ones become
  ``other-error``, ietf-01 §3.3.2).
* Channel binding: a ``-UNIQ/-ENDP/-EXPR`` server needs that type in
  ``ctx.channel_bindings`` (else ``channel-binding-not-supported``).  A
  tls-exporter binding already used for an authentication on this connection
  (``ctx.bindings_used``) is refused (``channel-binding-already-used``,
  RFC 9266 §4.1); every channel-binding type that authenticates is added to
  ``ctx.bindings_used``.  The client's ``channel_binding`` type must equal the
  mechanism's, else :class:`UsageError`; ``-NONE`` ignores it.
* Pinning (HT-09 §5): the verifier's ``secrets_for`` already filters tokens
  pinned to another mechanism; the server skips such records again.
* No authzid (HT-09 §1.2): a client given one raises :class:`UsageError`.
  The client sends the authcid as given; the server SASLprep-s it for the
  lookup and reports the prepared form in :class:`Success`.
* Client-first: a server stepped with ``None`` answers ``Challenge(b"")``
  once (RFC 4422 §3).  On success the server returns the responder-msg as
  additional data; the binding sends it as a final challenge where it cannot
  carry additional data (RFC 4422 §5 item 2b).
* Extra values: the HT2 client takes ``extra_values`` (its
  extra-initiator-values), the HT2 server ``extra_values`` (its
  extra-responder-values).  The server reports the client's values in
  ``Success.details["extra_values"]`` (and ``HTServer.peer_extra_values``);
  the client exposes the server's as ``HTClient.peer_extra_values``.  Values
  are validated but not interpreted.
* The ``HT-*`` and ``HT2-*`` families are separate mechanisms; the HT-10 /
  ietf-00 status-octet format is not implemented (docs/protocol-notes.md §6.5 item 1).
"""

from __future__ import annotations

import enum
import hmac
import re
from dataclasses import dataclass

from ..context import ClientCredentials, ServerContext
from ..credentials import UserRecord
from ..errors import (
    AuthenticationFailed,
    PreparationError,
    ProtocolError,
    StoreError,
    TemporaryFailure,
    TokenRejected,
    UsageError,
)
from ..mechanism import Challenge, Failure, FailureReason, OneMessageState, ServerStep, Success
from ..saslprep import saslprep
from ..tokens.reauth import DEFAULT_MAX_TOKENS_PER_USER
from ..tokens.records import TokenRecord, TokenVerifier, token_user_current

__all__ = [
    "CB_SUFFIXES",
    "HT_HASHES",
    "HT_MECHANISMS",
    "MAX_AUTHCID",
    "MAX_EXTRA_VALUES",
    "HTClient",
    "HTServer",
    "HTSpec",
    "ht_mechanism_names",
    "ht_spec_of",
    "initiator_message",
    "parse_initiator_message",
    "parse_key_values",
    "parse_responder_message",
    "responder_message",
]

#: hash name (HT-09 §2, IANA Named Information) -> (hashlib name, digest size)
HT_HASHES: dict[str, tuple[str, int]] = {
    "SHA-256": ("sha256", 32),
    "SHA-512": ("sha512", 64),
    "SHA3-512": ("sha3_512", 64),
}
#: cb-type suffix -> channel-binding type (HT-09 §2 Table 1); NONE has no cb-data.
CB_SUFFIXES: dict[str, str | None] = {
    "NONE": None,
    "UNIQ": "tls-unique",
    "ENDP": "tls-server-end-point",
    "EXPR": "tls-exporter",
}
FAMILIES = ("HT", "HT2")

MAX_AUTHCID = 1024
MAX_EXTRA_VALUES = 1024
#: Upper bound of any responder message a client accepts.
MAX_RESPONDER = MAX_EXTRA_VALUES + 2 + 64

INITIATOR_LABEL = b"Initiator"
RESPONDER_LABEL = b"Responder"
#: HMAC key of the padding candidates: shaped like a RANDOM token (same length, same HMAC work).
_DUMMY_TOKEN = b"sk1." + b"A" * 43 + b"." + b"A" * 43

# ietf-01 §3.3.2 failure-description values
UNKNOWN_USER = "unknown-user"
INVALID_TOKEN = "invalid-token"  # noqa: S105 - a reason, not a secret
OTHER_ERROR = "other-error"
FAILURE_DESCRIPTIONS = frozenset({UNKNOWN_USER, INVALID_TOKEN, OTHER_ERROR})

# Failure reasons of this module (besides FailureReason values)
CHANNEL_BINDING_NOT_SUPPORTED = "channel-binding-not-supported"
CHANNEL_BINDING_ALREADY_USED = "channel-binding-already-used"
# Client-side AuthenticationFailed reasons
INVALID_RESPONDER_TOKEN = "invalid-responder-token"  # noqa: S105 - a reason, not a secret
SERVER_NOT_VERIFIED = "server-not-verified"

# ietf-01 §3.1: key-value-char = ALPHA / DIGIT / "/" / "+" / "-" / "_"
_KV_CHARS = r"[A-Za-z0-9/+_\-]+"
_KV_PAIR = rf"{_KV_CHARS}={_KV_CHARS}"
_KV_PAIRS_RE = re.compile(rf"(?:{_KV_PAIR}(?:,{_KV_PAIR})*)?")


@dataclass(frozen=True)
class HTSpec:
    """What one HT mechanism name stands for."""

    name: str
    family: str  # "HT" (HT-09 format) or "HT2" (ietf-01 format)
    hash_name: str
    algo: str
    size: int
    cb_suffix: str
    cb_type: str | None

    @property
    def extended(self) -> bool:
        """True for the ietf-01 format (extra values, status octet)."""
        return self.family == "HT2"


HT_MECHANISMS: dict[str, HTSpec] = {}
for _family in FAMILIES:
    for _hash, (_algo, _size) in HT_HASHES.items():
        for _suffix, _cb in CB_SUFFIXES.items():
            _name = f"{_family}-{_hash}-{_suffix}"
            HT_MECHANISMS[_name] = HTSpec(_name, _family, _hash, _algo, _size, _suffix, _cb)


def ht_mechanism_names() -> list[str]:
    """All 24 names: HT-* then HT2-*, each by hash then NONE, UNIQ, ENDP, EXPR."""
    return list(HT_MECHANISMS)


def ht_spec_of(mechanism: str) -> HTSpec:
    """``"HT-SHA-256-NONE"`` -> its :class:`HTSpec`; raises :class:`UsageError` otherwise."""
    try:
        return HT_MECHANISMS[mechanism.upper()]
    except (KeyError, AttributeError):
        raise UsageError(f"not an HT mechanism: {mechanism!r}") from None


# ---------------------------------------------------------------- wire format


def parse_key_values(text: str) -> list[tuple[str, str]]:
    """Parse ietf-01 §3.1 ``key-value-pairs``; raises ProtocolError (invalid-encoding)."""
    if len(text) > MAX_EXTRA_VALUES or not _KV_PAIRS_RE.fullmatch(text):
        raise ProtocolError(FailureReason.INVALID_ENCODING, "malformed extra key/value pairs")
    if not text:
        return []
    return [(k, v) for k, _, v in (pair.partition("=") for pair in text.split(","))]


def _check_extra_values(values: str, spec: HTSpec) -> bytes:
    """Validate the caller's own extra values (UsageError, not ProtocolError)."""
    if not isinstance(values, str):
        raise UsageError("extra_values must be a string")
    if values and not spec.extended:
        raise UsageError(f"{spec.name} cannot carry extra values (use an HT2-* mechanism)")
    try:
        parse_key_values(values)
    except ProtocolError:
        raise UsageError("extra_values must be k=v pairs joined by ',' (ALPHA DIGIT / + - _), "
                         f"at most {MAX_EXTRA_VALUES} octets") from None
    return values.encode("ascii")


def _hmac(spec: HTSpec, token: bytes, label: bytes, cb_data: bytes, extra: bytes) -> bytes:
    return hmac.digest(token, label + cb_data + extra, spec.algo)


def initiator_message(mechanism: str, authcid: str, token: str, cb_data: bytes = b"", extra_values: str = "") -> bytes:
    """The initiator-msg of ``mechanism`` (HT-09 §3.1 / ietf-01 §3.1)."""
    spec = ht_spec_of(mechanism)
    extra = _check_extra_values(extra_values, spec)
    name = authcid.encode("utf-8")
    if not name or b"\x00" in name or len(name) > MAX_AUTHCID:
        raise UsageError(f"authcid must be 1 to {MAX_AUTHCID} octets of UTF-8 without NUL")
    digest = _hmac(spec, token.encode("utf-8"), INITIATOR_LABEL, cb_data, extra)
    if spec.extended:
        return name + b"\x00" + extra + b"\x00" + digest
    return name + b"\x00" + digest


def responder_message(mechanism: str, token: str, cb_data: bytes = b"", extra_values: str = "") -> bytes:
    """The success responder-msg of ``mechanism`` (HT-09 §3.3 / ietf-01 §3.3.1)."""
    spec = ht_spec_of(mechanism)
    extra = _check_extra_values(extra_values, spec)
    digest = _hmac(spec, token.encode("utf-8"), RESPONDER_LABEL, cb_data, extra)
    if spec.extended:
        return b"\x00" + extra + b"\x00" + digest
    return digest


def parse_initiator_message(mechanism: str, message: bytes) -> tuple[str, str, bytes]:
    """Split an initiator-msg into ``(authcid, extra_values, hmac)`` (extra is "" for HT-*).

    Raises :class:`ProtocolError` (``invalid-encoding``) for a malformed message.
    """
    spec = ht_spec_of(mechanism)
    if len(message) > MAX_AUTHCID + MAX_EXTRA_VALUES + 2 + spec.size:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "initiator message too long")
    name, nul, rest = message.partition(b"\x00")  # first NUL only: the HMAC may contain 0x00
    if not nul:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "no NUL after the authcid")
    if not name or len(name) > MAX_AUTHCID:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "bad authcid length")
    try:
        authcid = name.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "authcid is not UTF-8") from None
    extra = ""
    if spec.extended:
        raw_extra, nul, rest = rest.partition(b"\x00")
        if not nul:
            raise ProtocolError(FailureReason.INVALID_ENCODING, "no NUL after the extra values")
        if len(raw_extra) > MAX_EXTRA_VALUES or not raw_extra.isascii():
            raise ProtocolError(FailureReason.INVALID_ENCODING, "malformed extra key/value pairs")
        extra = raw_extra.decode("ascii")
        parse_key_values(extra)
    if len(rest) != spec.size:
        raise ProtocolError(FailureReason.INVALID_ENCODING, f"hashed token must be {spec.size} octets")
    return authcid, extra, rest


def parse_responder_message(mechanism: str, message: bytes) -> tuple[str, bytes]:
    """Split a success responder-msg into ``(extra_values, hmac)``.

    HT-*: the whole message is the HMAC.  HT2-*: ``NUL extra NUL hmac``; a
    failure-response (``%x01 …``) raises :class:`AuthenticationFailed` with its
    description (unknown ones as ``other-error``).  Malformed messages raise
    :class:`ProtocolError`.
    """
    spec = ht_spec_of(mechanism)
    if len(message) > MAX_RESPONDER:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "responder message too long")
    if not spec.extended:
        return "", message
    if message[:1] == b"\x01":
        text = message[1:].decode("utf-8", "replace")[:200]
        reason = text if text in FAILURE_DESCRIPTIONS else OTHER_ERROR
        raise AuthenticationFailed(reason, f"server failure: {text!r}")
    if message[:1] != b"\x00":
        raise ProtocolError(FailureReason.INVALID_ENCODING, "responder message must start with 0x00 or 0x01")
    raw_extra, nul, digest = message[1:].partition(b"\x00")
    if not nul:
        raise ProtocolError(FailureReason.INVALID_ENCODING, "no NUL after the extra values")
    if len(raw_extra) > MAX_EXTRA_VALUES or not raw_extra.isascii():
        raise ProtocolError(FailureReason.INVALID_ENCODING, "malformed extra key/value pairs")
    extra = raw_extra.decode("ascii")
    parse_key_values(extra)
    return extra, digest


# ---------------------------------------------------------------- server


class HTServer:
    """Server (responder) side of ``HT-*`` / ``HT2-*``.

    One step: the initiator-msg gives :class:`Success` (responder-msg as
    additional data, ``details["token_id"]``) or :class:`Failure`.
    ``extra_values`` are the HT2 extra-responder-values to send on success.
    """

    def __init__(self, mechanism: str, ctx: ServerContext, *, extra_values: str = "") -> None:
        self.spec = ht_spec_of(mechanism)
        self.name = self.spec.name
        self._extra = _check_extra_values(extra_values, self.spec)
        self._ctx = ctx
        self._state = OneMessageState.START
        #: The client's extra-initiator-values once verified (HT2), else "".
        self.peer_extra_values = ""
        self._authcid: str | None = None  # the prepared authcid, for Failure.authcid

    @property
    def done(self) -> bool:
        return self._state is OneMessageState.DONE

    def step(self, response: bytes | None) -> ServerStep:
        if self._state is OneMessageState.DONE:
            raise UsageError(f"{self.name} exchange already finished")
        if response is None:
            if self._state is OneMessageState.START:
                # Client-first mechanism without an initial response: empty challenge (RFC 4422 §3).
                self._state = OneMessageState.EMPTY_CHALLENGE_SENT
                return Challenge(b"")
            response = b""
        self._state = OneMessageState.DONE
        try:
            return self._initiator(response)
        except ProtocolError as exc:
            return self._fail(FailureReason.INVALID_ENCODING, str(exc))

    def _fail(self, reason: str, message: str, description: str = OTHER_ERROR) -> Failure:
        data = b"\x01" + description.encode("utf-8") if self.spec.extended else None
        return Failure(reason, message, data, authcid=self._authcid)

    def _auth_failed(self) -> Failure:
        return self._fail(FailureReason.AUTHENTICATION_FAILED, "authentication failed", INVALID_TOKEN)

    def _rejected(self, exc: TokenRejected) -> Failure:
        if exc.reason in (UNKNOWN_USER, INVALID_TOKEN):
            return self._auth_failed()
        description = exc.reason if exc.reason and "\x00" not in exc.reason else OTHER_ERROR
        return self._fail(FailureReason.AUTHENTICATION_FAILED, str(exc), description)

    def _initiator(self, data: bytes) -> ServerStep:
        """Verify the initiator-msg against the user's tokens (HT-09 §3.2 / ietf-01 §3.2)."""
        tokens = self._ctx.tokens
        if tokens is None:
            return self._fail(FailureReason.AUTHENTICATION_FAILED, "token authentication is not available here")
        refusal = self._binding_refusal()
        if refusal is not None:
            return refusal
        if len(data) > self._ctx.max_message_size:
            raise ProtocolError(FailureReason.INVALID_ENCODING, "initiator message too long")
        authcid, extra, received = parse_initiator_message(self.name, data)
        user = self._prepare(authcid)
        try:
            candidates, user_record = self._lookup(tokens, user)
        except TemporaryFailure:
            return self._fail(FailureReason.TEMPORARY_FAILURE, "token store temporarily unavailable")
        except TokenRejected as exc:
            return self._rejected(exc)
        cap = int(getattr(tokens, "max_tokens_per_user", DEFAULT_MAX_TOKENS_PER_USER))
        match = self._match(candidates, received, extra.encode("ascii"), cap)
        if match is None or not token_user_current(match[0], user_record):
            return self._auth_failed()
        return self._success(tokens, match, user, extra)

    def _binding_data(self) -> bytes:
        """The channel-binding data the HMACs cover ("" for mechanisms without binding)."""
        cb_type = self.spec.cb_type
        return self._ctx.channel_bindings[cb_type] if cb_type is not None else b""

    def _binding_refusal(self) -> Failure | None:
        """A failure if this connection cannot serve the mechanism's binding (ietf-01 §4, RFC 9266 §4.1)."""
        cb_type, ctx = self.spec.cb_type, self._ctx
        if cb_type is None:
            return None
        if cb_type not in ctx.channel_bindings:
            return self._fail(CHANNEL_BINDING_NOT_SUPPORTED, f"no {cb_type} channel binding on this connection")
        if cb_type == "tls-exporter" and "tls-exporter" in ctx.bindings_used:
            return self._fail(CHANNEL_BINDING_ALREADY_USED,
                              "tls-exporter already served an authentication on this connection")
        return None

    def _prepare(self, authcid: str) -> str:
        """SASLprep the authcid ("" if it cannot be prepared) and remember it for Failure.authcid."""
        try:
            user = saslprep(authcid)
        except PreparationError:
            user = ""
        self._authcid = user or None
        return user

    def _lookup(self, tokens: TokenVerifier, user: str) -> tuple[list[tuple[TokenRecord, str]], UserRecord | None]:
        """The user's token candidates and user record; nothing is asked for an empty name."""
        if not user:
            return [], None
        candidates = list(tokens.secrets_for(user, mechanism=self.name))
        return candidates, self._ctx.users.get_user(user)  # asked whatever matches: same work for every name

    def _match(self, candidates: list[tuple[TokenRecord, str]], received: bytes, extra: bytes,
               cap: int) -> tuple[TokenRecord, str] | None:
        """The candidate whose initiator HMAC is ``received``, after exactly ``max(cap, candidates)`` HMACs.

        The same number of HMACs whatever the user has (RFC 4422 §3.6 advice); a
        token pinned to another mechanism never matches (HT-09 §5).
        """
        spec, cb_data = self.spec, self._binding_data()
        match: tuple[TokenRecord, str] | None = None
        for i in range(max(cap, len(candidates))):
            if i >= len(candidates):
                _hmac(spec, _DUMMY_TOKEN, INITIATOR_LABEL, cb_data, extra)
                continue
            record, token = candidates[i]
            expected = _hmac(spec, token.encode("utf-8"), INITIATOR_LABEL, cb_data, extra)
            pinned_elsewhere = record.mechanism is not None and record.mechanism.upper() != self.name
            if hmac.compare_digest(expected, received) and match is None and not pinned_elsewhere:
                match = (record, token)
        return match

    def _success(self, tokens: TokenVerifier, match: tuple[TokenRecord, str], user: str, extra: str) -> Success:
        """Mark the token used and answer with the responder-msg (HT-09 §3.3 / ietf-01 §3.3.1)."""
        record, token = match
        try:
            tokens.mark_used(record)  # best effort (TokenVerifier.mark_used): never fails the login
        except StoreError:
            pass
        if self.spec.cb_type is not None:
            self._ctx.bindings_used.add(self.spec.cb_type)
        digest = _hmac(self.spec, token.encode("utf-8"), RESPONDER_LABEL, self._binding_data(), self._extra)
        details = {"token_id": record.id}
        if not self.spec.extended:
            return Success(user, None, digest, self.name, details=details)
        self.peer_extra_values = extra
        details["extra_values"] = extra
        return Success(user, None, b"\x00" + self._extra + b"\x00" + digest, self.name, details=details)


# ---------------------------------------------------------------- client


class _ClientState(enum.Enum):
    """Initiator states (HT-09 §3.3: the initiator must verify the responder-msg)."""

    START = "start"
    SENT_INITIATOR = "initiator-msg sent"
    VERIFIED = "responder verified"
    FAILED = "failed"


class HTClient:
    """Client (initiator) side of ``HT-*`` / ``HT2-*``.

    ``creds.username`` is the authcid, ``creds.secret`` the token string,
    ``creds.channel_binding`` ``(type, data)`` for ``-UNIQ/-ENDP/-EXPR``.
    ``start()`` returns the initiator-msg; ``step(responder_msg)`` verifies it
    and returns ``b""``; ``finish()`` raises :class:`AuthenticationFailed`
    unless the responder was verified (HT-09 §3.3: the initiator MUST verify).
    ``extra_values`` are the HT2 extra-initiator-values.
    """

    def __init__(self, mechanism: str, creds: ClientCredentials, *, extra_values: str = "") -> None:
        self.spec = ht_spec_of(mechanism)
        self.name = self.spec.name
        self._extra_str = extra_values
        self._extra = _check_extra_values(extra_values, self.spec)
        if creds.authzid:
            raise UsageError("HT mechanisms cannot carry an authorization identity (HT-09 §1.2)")
        if not isinstance(creds.secret, str) or not creds.secret:
            raise UsageError("HT needs the token string as the secret")
        self._cb_data = b""
        if self.spec.cb_type is not None:
            if creds.channel_binding is None:
                raise UsageError(f"{self.name} needs {self.spec.cb_type} channel-binding data")
            cb_type, cb_data = creds.channel_binding
            if cb_type != self.spec.cb_type:
                raise UsageError(f"{self.name} binds to {self.spec.cb_type}, not {cb_type}")
            self._cb_data = bytes(cb_data)
        self._creds = creds
        self._token = creds.secret.encode("utf-8")
        self._state = _ClientState.START
        #: The server's extra-responder-values once verified (HT2), else "".
        self.peer_extra_values = ""

    @property
    def verified(self) -> bool:
        """True once the responder-msg matched."""
        return self._state is _ClientState.VERIFIED

    def start(self) -> bytes:
        if self._state is not _ClientState.START:
            raise UsageError("start() called twice")
        message = initiator_message(self.name, self._creds.username, self._creds.secret, self._cb_data,
                                    self._extra_str)
        self._state = _ClientState.SENT_INITIATOR
        return message

    def step(self, challenge: bytes) -> bytes:
        if self._state is not _ClientState.SENT_INITIATOR:
            raise UsageError("unexpected step() in this state")
        try:
            extra, digest = parse_responder_message(self.name, challenge)
            expected = _hmac(self.spec, self._token, RESPONDER_LABEL, self._cb_data, extra.encode("ascii"))
            if not hmac.compare_digest(expected, digest):
                raise AuthenticationFailed(INVALID_RESPONDER_TOKEN, "responder message does not match")
        except (ProtocolError, AuthenticationFailed):
            self._state = _ClientState.FAILED
            raise
        self.peer_extra_values = extra
        self._state = _ClientState.VERIFIED
        return b""

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data is not None and self._state is _ClientState.SENT_INITIATOR:
            self.step(additional_data)
        if self._state is not _ClientState.VERIFIED:
            self._state = _ClientState.FAILED
            raise AuthenticationFailed(SERVER_NOT_VERIFIED, "server success without a valid responder message")
