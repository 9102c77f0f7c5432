"""A sans-IO SMTP/LMTP server session with SASL authentication.

The driver feeds command lines (and DATA lines) to :meth:`SmtpSession.receive_line`
and sends back the lines of the :class:`Reply` it gets, after ``reply.delay``
seconds; it starts TLS when ``reply.starttls`` is set (then calls
:meth:`SmtpSession.tls_started`) and closes when ``reply.close`` is set.
No sockets, clocks or threads in here: blocking work (argon2, stores) happens
inside ``receive_line``, so an asyncio driver runs the lines that
:meth:`SmtpSession.may_block` flags in a worker thread.  Where a connection
is (greeted, in a transaction, in an AUTH exchange, in DATA) is a named
:class:`SmtpState`; each AUTH exchange runs in
:class:`~saslkit.auth.engine.ServerAuth`, and replies carry its typed
``events``.

Covered: RFC 4954 AUTH (§4, §6 codes, §5 ``AUTH=`` on MAIL FROM), RFC 2034
enhanced codes, RFC 5321 line limits (§4.5.3.1), RFC 3207 STARTTLS reset,
RFC 2033 LMTP, draft-melnikov-smtp-rememberme-00 ``REMEMBERME``, and
draft-slusarz-extra-smtp-submission-token-00 ``GENSTOKEN``/``REVSTOKEN``,
``RCPT TO`` ``STOKEN=``/``MYSTOKEN=`` and the 2.1.12/2.1.13 replies.

Choices the texts leave open (documented and tested):

* ``REMEMBERME`` success is ``235 2.7.0 <base64 token>`` (the draft's 2.7.X
  is unassigned); it needs TLS and a non-token login (``534 5.7.9``
  otherwise).
* A registered mechanism refused here by policy (PLAIN without TLS) gets
  ``534 5.7.9``; an unknown or unoffered one ``504 5.5.4``
  (:mod:`saslkit.smtp.replies` holds the table).
* ``SmtpConfig.mechanisms`` is an allow-list in offer order (like Dovecot's
  ``auth_mechanisms``): what it leaves out is neither advertised nor accepted.
* A third-party mechanism whose server speaks first says so with a
  ``server_first = True`` attribute; an initial response to it gets
  ``501 5.7.0`` (RFC 4954 §4).  saslkit's own mechanisms are all client-first.
* ``GENSTOKEN``'s optional local address defaults to the authenticated
  identity (``user@hostname`` if it has no ``@``) and must be that address.

Embedding: a server built on this session passes ``commands``, a hook called with every command the session
does not implement (:class:`SmtpCommand`: upper-case verb and argument) that returns the :class:`Reply` (or
``None``: ``500 5.5.1 Command unrecognized``).  Commands that need authentication when it is required
(``BDAT``, ``EXPN``...) get ``530 5.7.0`` before the hook sees them; the hook reads the session's public
state (``state``, ``authenticated``, ``greeted``) and runs in the driver's thread pool (``may_block``).
``SmtpConfig.extra_keywords`` are the EHLO keywords its commands add.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..auth._attempts import AuthAttempts
from ..auth._session import EngineSession
from ..auth.engine import Abort, Aborted, AuthOutcome, ServerAuth
from ..auth.events import Authenticated, AuthRefused, TokenMinted
from ..auth.framing import encode_challenge
from ..credentials import UserStore
from ..errors import ProtocolError, SaslError, TemporaryFailure, UsageError
from ..mechanism import Challenge, Success
from ..penalty import AuthPenalty
from ..registry import MechanismInfo, Policy, Registry, default_registry, server_policy
from ..reply import Reply
from ..tokens import TOKEN_TYPES, SubmissionTokens, TokenService
from ..tokens.submission import normalize_address
from . import replies

__all__ = [
    "AuthThrottle",
    "Envelope",
    "Reply",
    "SmtpCommand",
    "SmtpCommandHook",
    "SmtpConfig",
    "SmtpSession",
    "SmtpState",
    "add_submission_token_header",
    "xtext_decode",
    "xtext_encode",
]

MAX_SMTP_COMMAND_LINE = 512  # RFC 5321 §4.5.3.1.4, CRLF included
MAX_SMTP_AUTH_LINE = 12288  # RFC 4954 §4
MAX_SMTP_TEXT_LINE = 1000  # RFC 5321 §4.5.3.1.6
_XTEXT_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_XTEXT_HEX_RE = re.compile(r"\+([0-9A-F]{2})")
_PATH_RE = re.compile(r"<([^<>\s]*)>")
#: Control characters (Unicode Cc: C0, DEL, C1).  RFC 5321 §4.1.2 paths have none, and
#: they must never reach a header (CR/LF/NUL would split or truncate it).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def xtext_decode(value: str) -> str:
    """RFC 3461 §4 xtext, as used by ``AUTH=`` (RFC 4954 §5): ``e+3Dmc2`` -> ``e=mc2``.

    ``+XX`` is one octet; the octets are then strict UTF-8 (``caf+C3+A9`` is
    ``café``).  Invalid xtext, invalid UTF-8 and control characters (a mailbox
    has none) raise ``ProtocolError("invalid-xtext")``.
    """
    if not _XTEXT_RE.fullmatch(value):
        raise ProtocolError("invalid-xtext", "invalid xtext")
    octets = _XTEXT_HEX_RE.sub(lambda m: chr(int(m.group(1), 16)), value).encode("latin-1")
    try:
        text = octets.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid-xtext", "xtext is not UTF-8") from None
    if _CONTROL_RE.search(text):
        raise ProtocolError("invalid-xtext", "control character in xtext")
    return text


def xtext_encode(value: str) -> str:
    """RFC 3461 §4: each UTF-8 octet outside ``!``..``~`` (and ``+``, ``=``) as ``+XX``.

    Exactly what :func:`xtext_decode` accepts: text with a control character
    or a lone surrogate is a :class:`UsageError`.
    """
    if _CONTROL_RE.search(value):
        raise UsageError("control character in an xtext value")
    try:
        octets = value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("xtext value is not valid Unicode (lone surrogate)") from None
    return "".join(chr(o) if 0x21 <= o <= 0x7E and o not in b"+=" else f"+{o:02X}" for o in octets)


def add_submission_token_header(message: bytes, token: str) -> bytes:
    """Prepend ``Submission-Token: <token>`` (draft-slusarz §6.2) to an RFC 5322 message."""
    if not token or any(ch in token for ch in "\r\n") or not token.isascii():
        raise UsageError("a submission token is one line of ASCII")
    return f"Submission-Token: {token}\r\n".encode("ascii") + message


@dataclass
class Envelope:
    """One mail transaction, handed to the delivery callback."""

    mail_from: str
    auth_param: str | None  # decoded AUTH= (RFC 4954 §5), None if absent, "" for <>
    recipients: list[str] = field(default_factory=list)
    #: recipient -> the permanent token a remote client offered with MYSTOKEN=
    their_tokens: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    identity: str | None = None


class AuthThrottle(Protocol):
    """Per-IP / per-user throttling hook (RFC 4954 §9 allows dropping after failures)."""

    def allow(self, peer: str) -> bool:
        """May ``peer`` try to authenticate now?"""
        ...

    def record(self, peer: str, identity: str | None, success: bool) -> None:
        """Note the outcome of one attempt."""
        ...


Deliver = Callable[[Envelope], str]  # returns a delivery id; raise to refuse (451 4.3.0)


def _discard(envelope: Envelope) -> str:
    return secrets.token_hex(6)


@dataclass
class SmtpConfig:
    """Server-wide settings shared by every session."""

    hostname: str = "localhost"
    lmtp: bool = False
    tls_available: bool = False  # offer STARTTLS before TLS is up
    auth_required: bool = True
    allow_plaintext_auth: bool = False
    registry: Registry = field(default_factory=default_registry)
    policy: Policy | None = None
    failure_delay: float = 1.0
    max_auth_failures: int = 3  # RFC 4954 §9: allow at least 3
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    remember_types: tuple[str, ...] = TOKEN_TYPES
    #: Allow-list in offer order (None: every registered mechanism, strongest first).
    mechanisms: tuple[str, ...] | None = None
    #: EHLO keywords the embedding server's own commands add (see ``SmtpSession(commands=...)``).
    extra_keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.effective_policy()  # an unknown name in ``mechanisms`` is a UsageError now, not at the first AUTH

    def effective_policy(self) -> Policy:
        return server_policy(self.registry, self.policy, self.allow_plaintext_auth, self.mechanisms)


@dataclass(frozen=True)
class SmtpCommand:
    """A command the session does not implement, handed to the embedding server's hook."""

    #: Upper case (``BDAT``).
    verb: str
    #: The rest of the line after the verb, stripped.
    argument: str


#: ``hook(session, command)``: the reply to a command the session does not implement, or ``None`` for
#: ``500 5.5.1 Command unrecognized``.
SmtpCommandHook = Callable[["SmtpSession", SmtpCommand], "Reply | None"]


class SmtpState(enum.Enum):
    """Where a connection is: what the next line means (RFC 5321 §4.1.4, RFC 4954 §4)."""

    CONNECTED = "connected"  # no EHLO/HELO/LHLO yet
    GREETED = "greeted"  # commands, no mail transaction
    TRANSACTION = "transaction"  # after MAIL FROM
    AUTH_EXCHANGE = "auth exchange"  # the next line answers a 334 challenge
    DATA = "data"  # message lines until "."


#: Commands refused with 530 5.7.0 until AUTH succeeds when authentication is required (RFC 4954 §6).
_NEEDS_AUTH = {"MAIL", "RCPT", "DATA", "VRFY", "EXPN", "BDAT", "GENSTOKEN", "REVSTOKEN"}


class SmtpSession(EngineSession[SmtpConfig]):
    """One SMTP (or LMTP) connection's state machine."""

    def __init__(
        self,
        config: SmtpConfig,
        users: UserStore,
        server_secret: bytes,
        *,
        tokens: TokenService | None = None,
        stokens: SubmissionTokens | None = None,
        peer: str = "",
        tls: bool = False,
        channel_bindings: Mapping[str, bytes] | None = None,
        deliver: Deliver = _discard,
        throttle: AuthThrottle | None = None,
        penalty: AuthPenalty | None = None,
        commands: SmtpCommandHook | None = None,
    ) -> None:
        """``commands``: the embedding server's hook for the commands this session does not implement."""
        super().__init__(config, users, server_secret, tokens=tokens, stokens=stokens, peer=peer, tls=tls,
                         channel_bindings=channel_bindings, penalty=penalty)
        self._commands = commands
        self._deliver = deliver
        self._throttle = throttle
        self._reset_connection_state()

    # ------------------------------------------------------------ state

    def _reset_connection_state(self) -> None:
        self.state = SmtpState.CONNECTED
        self.greeted: str | None = None  # EHLO/HELO/LHLO seen
        self.extended = False
        self.authenticated: Success | None = None
        self._engine: ServerAuth | None = None  # built from the offer, once per capability change
        self._attempts = AuthAttempts(self.peer, self._penalty, self.config.failure_delay,
                                      self.config.max_auth_failures,
                                      self._throttle.record if self._throttle is not None else None)
        self._envelope: Envelope | None = None
        self._stoken_rcpts: dict[str, str] = {}  # recipient -> kind ("TEMP"/"PERM")
        self._data: list[bytes] = []
        self._data_size = 0
        self._data_too_big = False
        self._data_line_too_long = False

    def tls_started(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """The driver finished the STARTTLS handshake: forget everything (RFC 3207 §4.2)."""
        self._tls_up(channel_bindings)
        self._reset_connection_state()

    def greeting(self) -> Reply:
        return Reply([f"220 {self.config.hostname} {'LMTP' if self.config.lmtp else 'ESMTP'} saslkit ready"])

    @property
    def in_auth(self) -> bool:
        return self.state is SmtpState.AUTH_EXCHANGE

    def may_block(self, line: bytes) -> bool:
        """Whether handling ``line`` may block (password hashing, store access)."""
        if self.state is SmtpState.DATA:
            # The final "." delivers (a Maildir write) and may mint submission tokens (store access).
            return line.rstrip(b"\r\n") == b"."
        if self.state is SmtpState.AUTH_EXCHANGE:
            return self.auth_engine.next_step_may_block  # e.g. SCRAM client-final only computes HMACs
        verb = line[:10].split(b" ", 1)[0].upper()
        if verb == b"AUTH":  # parsed as _cmd_auth does: only a step reading the initial response may block
            text = line[:-1] if line.endswith(b"\n") else line
            try:
                arg = (text[:-1] if text.endswith(b"\r") else text).decode("utf-8").partition(" ")[2].strip()
            except UnicodeDecodeError:
                return False  # 500, at once
            parts = arg.split(" ")
            return bool(arg) and len(parts) <= 2 and self.auth_engine.start_may_block(parts[0], len(parts) == 2)
        if verb in (b"REMEMBERME", b"GENSTOKEN", b"REVSTOKEN", b"RCPT"):
            return True
        name = verb.rstrip(b"\r\n").decode("ascii", "replace")
        return self._commands is not None and not (name.isalpha() and hasattr(self, f"_cmd_{name.lower()}"))

    def _serves(self, info: MechanismInfo) -> bool:
        """Token mechanisms need the token service; STOKEN is LMTP only (draft-slusarz §7.3)."""
        if info.name == "STOKEN":
            return self._stokens is not None and self.config.lmtp
        return not (info.token_based and self._tokens is None)

    def _offer_key(self) -> tuple[bool, bool, bool]:
        return (self._tokens is not None, self._stokens is not None, self.config.lmtp)

    # ------------------------------------------------------------ entry point

    def receive_line(self, line: bytes) -> Reply:
        """Handle one line (without or with its CRLF)."""
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.state is SmtpState.DATA:
            return self._data_line(line)
        if self.state is SmtpState.AUTH_EXCHANGE:
            return self._auth_line(line)
        if len(line) + 2 > MAX_SMTP_COMMAND_LINE:
            return self.line_too_long(line[:5])
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._r(500, "5.5.2", "Invalid UTF-8 in command")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if self.config.auth_required and self.authenticated is None and verb in _NEEDS_AUTH:
            return Reply([replies.AUTH_REQUIRED])
        handler = getattr(self, f"_cmd_{verb.lower()}", None) if verb.isalpha() else None
        if handler is None:
            reply = self._commands(self, SmtpCommand(verb, arg.strip())) if self._commands is not None else None
            return reply if reply is not None else self._r(500, "5.5.1", "Command unrecognized")
        result: Reply = handler(arg.strip())
        return result

    # ------------------------------------------------------------ replies

    def _r(self, code: int, status: str | None, text: str, **kw: object) -> Reply:
        return Reply([f"{code} {status} {text}" if status else f"{code} {text}"], **kw)  # type: ignore[arg-type]

    # ------------------------------------------------------------ greeting, TLS, misc

    def _hello(self, verb: str, arg: str) -> Reply:
        lmtp = self.config.lmtp
        if (verb == "LHLO") != lmtp:
            return self._r(500, "5.5.1", f"{verb} not accepted here; use {'LHLO' if lmtp else 'EHLO'}")
        if not arg or " " in arg:
            return self._r(501, "5.5.4", f"Syntax: {verb} hostname")
        self._end_transaction()
        self.state = SmtpState.GREETED
        self.greeted = arg
        self.extended = verb != "HELO"
        if verb == "HELO":
            return self._r(250, None, self.config.hostname)
        lines = [self.config.hostname, "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME",
                 f"SIZE {self.config.max_message_size}"]
        if self.config.tls_available and not self.tls:
            lines.append("STARTTLS")
        mechs = self.offered_mechanisms()
        if mechs:
            lines.append("AUTH " + " ".join(mechs))
        if self.tls and self._tokens is not None and self.config.remember_types:
            lines.append("REMEMBERME " + " ".join(self.config.remember_types))  # rememberme-00 §3: after TLS
        if lmtp and self.tls and self._stokens is not None:
            lines.append("STOKEN")  # draft-slusarz §7.3: LHLO only, TLS only
        lines += [*self.config.extra_keywords, "HELP"]
        return Reply([f"250-{x}" for x in lines[:-1]] + [f"250 {lines[-1]}"])

    def _cmd_ehlo(self, arg: str) -> Reply:
        return self._hello("EHLO", arg)

    def _cmd_helo(self, arg: str) -> Reply:
        return self._hello("HELO", arg)

    def _cmd_lhlo(self, arg: str) -> Reply:
        return self._hello("LHLO", arg)

    def _cmd_starttls(self, arg: str) -> Reply:
        if arg:
            return self._r(501, "5.5.4", "Syntax: STARTTLS")
        if self.tls:
            return self._r(503, "5.5.1", "TLS already active")
        if not self.config.tls_available:
            return self._r(454, "4.7.0", "TLS not available")
        return self._r(220, "2.0.0", "Ready to start TLS", starttls=True)

    def _cmd_noop(self, arg: str) -> Reply:
        return self._r(250, "2.0.0", "OK")

    def _cmd_rset(self, arg: str) -> Reply:
        self._end_transaction()
        return self._r(250, "2.0.0", "OK")

    def _end_transaction(self) -> None:
        self._envelope = None
        self._stoken_rcpts = {}
        if self.state is not SmtpState.CONNECTED:
            self.state = SmtpState.GREETED

    def _cmd_quit(self, arg: str) -> Reply:
        return self._r(221, "2.0.0", "Bye", close=True)

    def _cmd_help(self, arg: str) -> Reply:
        return self._r(214, "2.0.0", "See RFC 5321, RFC 4954 and https://saslkit.invalid/")

    def _cmd_vrfy(self, arg: str) -> Reply:
        return self._r(252, "2.5.0", "Cannot VRFY user, but will accept message")

    # ------------------------------------------------------------ AUTH (RFC 4954 §4)

    def _cmd_auth(self, arg: str) -> Reply:
        if not self.extended:
            return Reply([replies.SEND_EHLO_FIRST])
        if self.authenticated is not None:
            return Reply([replies.ALREADY_AUTHENTICATED])
        if self.state is SmtpState.TRANSACTION:
            return Reply([replies.IN_TRANSACTION])
        parts = arg.split(" ")
        if not arg or len(parts) > 2:
            return Reply([replies.AUTH_SYNTAX])
        if self._throttle is not None and not self._throttle.allow(self.peer):
            return Reply([replies.THROTTLED])
        return self._auth_reply(self.auth_engine.start(parts[0], parts[1] if len(parts) == 2 else None))

    def _auth_line(self, line: bytes) -> Reply:
        if len(line) + 2 > MAX_SMTP_AUTH_LINE:
            return self._auth_reply(self.auth_engine.abort(Abort.LINE_TOO_LONG))
        return self._auth_reply(self.auth_engine.receive(line))

    def _auth_reply(self, outcome: AuthOutcome) -> Reply:
        """One engine outcome as a reply (:mod:`saslkit.smtp.replies`), with its event."""
        reply = Reply([replies.auth_reply(outcome)])
        if isinstance(outcome, Challenge):
            self.state = SmtpState.AUTH_EXCHANGE
            return reply
        self.state = SmtpState.GREETED
        if isinstance(outcome, Aborted):
            return reply  # cancelled or malformed: no attempt to count
        if isinstance(outcome, Authenticated):
            self.authenticated = outcome.success
        if not isinstance(outcome, AuthRefused):
            reply.delay, reply.close = self._attempts.settle(outcome)
        if reply.close:
            reply.lines.append(replies.TOO_MANY_FAILURES)
        reply.events.append(outcome)
        return reply

    # ------------------------------------------------------------ REMEMBERME (draft-melnikov-smtp-rememberme-00)

    def _cmd_rememberme(self, arg: str) -> Reply:
        if self._tokens is None or not self.tls:
            return self._r(502, "5.5.1", "REMEMBERME not available" + ("" if self.tls else " without TLS"))
        if self.authenticated is None:
            return self._r(503, "5.5.1", "Authenticate first")
        if not arg or " " in arg:
            return self._r(501, "5.5.2", "Syntax: REMEMBERME token-type")
        kind = arg.upper()
        if kind not in self.config.remember_types:
            return self._r(504, "5.5.4", f"Unsupported token type; use one of {' '.join(self.config.remember_types)}")
        try:
            token, _ = self._tokens.mint_after(self.authenticated, kind)
        except TemporaryFailure:
            return self._r(454, "4.7.0", "Token store unavailable; try again later")
        except UsageError:
            return self._r(534, "5.7.9", "Log in with a password-based mechanism to get a token")
        reply = self._r(235, "2.7.0", encode_challenge(token.encode("utf-8")))
        reply.events.append(TokenMinted(kind, self.authenticated.identity))
        return reply

    # ------------------------------------------------------------ submission tokens (draft-slusarz §5.4)

    def _local_address(self) -> str:
        assert self.authenticated is not None
        ident = self.authenticated.identity
        return ident if "@" in ident else f"{ident}@{self.config.hostname}"

    def _stoken_args(self, arg: str, with_kind: bool) -> tuple[str, str, str] | Reply:
        if self._stokens is None:
            return self._r(502, "5.5.1", "Submission tokens not available")
        if self.authenticated is None:
            return self._r(530, "5.7.0", "Authentication required")
        words = arg.split()
        kind = ""
        if with_kind:
            if not words or words[0].upper() not in ("PERM", "TEMP"):
                return self._r(501, "5.5.4", "Syntax: GENSTOKEN (PERM|TEMP) remote-address [local-address]")
            kind = words.pop(0).upper()
        if not 1 <= len(words) <= 2:
            return self._r(501, "5.5.4", "Syntax: remote-address [local-address]")
        try:
            remote = normalize_address(words[0])
        except UsageError:
            return self._r(501, "5.1.3", "Bad remote address")
        assert self.authenticated is not None
        if self.authenticated.mechanism == "STOKEN":
            # A remote sender logged in with a submission token has no local address here.
            return self._r(501, "5.1.7", "Submission tokens are managed by local users only")
        own = self._local_address().lower()
        try:
            local = normalize_address(words[1]) if len(words) == 2 else own
        except UsageError:
            return self._r(501, "5.1.7", "Bad local address")
        if local != own:
            return self._r(501, "5.1.7", "Local address is not yours")
        return kind, remote, local

    def _cmd_genstoken(self, arg: str) -> Reply:
        parsed = self._stoken_args(arg, True)
        if isinstance(parsed, Reply):
            return parsed
        kind, remote, local = parsed
        assert self._stokens is not None
        try:
            token, _ = self._stokens.generate(kind, remote, local)
        except (TemporaryFailure, SaslError):
            return self._r(451, "4.5.0", "Could not generate a token for this address pair")
        reply = self._r(250, "2.1.11", f"{token} Submission Token Successfully Created")
        reply.events.append(TokenMinted(f"STOKEN-{kind}", local))
        return reply

    def _cmd_revstoken(self, arg: str) -> Reply:
        parsed = self._stoken_args(arg, False)
        if isinstance(parsed, Reply):
            return parsed
        _, remote, local = parsed
        assert self._stokens is not None
        try:
            self._stokens.revoke(remote, local)
        except (TemporaryFailure, SaslError):
            return self._r(451, "4.5.0", "Could not revoke tokens for this address pair")
        return self._r(250, "2.1.0", "Submission tokens revoked")

    # ------------------------------------------------------------ transaction

    def _cmd_mail(self, arg: str) -> Reply:
        if not self.greeted:
            return self._r(503, "5.5.1", "Send EHLO first")
        if self._envelope is not None:
            return self._r(503, "5.5.1", "Nested MAIL command")
        if not arg.upper().startswith("FROM:"):
            return self._r(501, "5.5.4", "Syntax: MAIL FROM:<address>")
        m = _PATH_RE.match(arg[5:].lstrip())
        if m is None or _CONTROL_RE.search(m.group(1)):  # RFC 5321 §4.1.2: no controls in a path
            return self._r(501, "5.1.7", "Bad sender address syntax")
        auth_param: str | None = None
        for param in arg[5:].lstrip()[m.end():].split():
            if _CONTROL_RE.search(param):
                return self._r(501, "5.5.4", "Control character in a parameter")
            key, _, value = param.partition("=")
            key = key.upper()
            if key == "AUTH" and self.extended:
                try:
                    auth_param = "" if value == "<>" else xtext_decode(value)
                except ProtocolError:
                    return self._r(501, "5.5.4", "Invalid AUTH= parameter")
                if self.authenticated is None:
                    auth_param = ""  # RFC 4954 §5: an unauthenticated client's AUTH= is not trusted
            elif key == "SIZE" and value.isdigit():
                if int(value) > self.config.max_message_size:
                    return self._r(552, "5.3.4", "Message size exceeds fixed limit")
            elif key == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
                pass
            else:
                return self._r(555, "5.5.4", f"Unsupported parameter {key}")
        self._envelope = Envelope(m.group(1), auth_param,
                                  identity=self.authenticated.identity if self.authenticated else None)
        self.state = SmtpState.TRANSACTION
        return self._r(250, "2.1.0", "Sender OK")

    def _cmd_rcpt(self, arg: str) -> Reply:
        if self._envelope is None:
            return self._r(503, "5.5.1", "Need MAIL before RCPT")
        if not arg.upper().startswith("TO:"):
            return self._r(501, "5.5.4", "Syntax: RCPT TO:<address>")
        m = _PATH_RE.match(arg[3:].lstrip())
        if m is None or not m.group(1) or _CONTROL_RE.search(m.group(1)):  # RFC 5321 §4.1.2
            return self._r(501, "5.1.3", "Bad recipient address syntax")
        rcpt = m.group(1)
        if len(self._envelope.recipients) >= self.config.max_recipients:
            return self._r(452, "4.5.3", "Too many recipients")
        params: dict[str, str] = {}
        for param in arg[3:].lstrip()[m.end():].split():
            if _CONTROL_RE.search(param):
                return self._r(501, "5.5.4", "Control character in a parameter")
            key, _, value = param.partition("=")
            params[key.upper()] = value
        unknown = set(params) - {"STOKEN", "MYSTOKEN"}
        if unknown or (params and not (self.config.lmtp and self._stokens is not None)):
            return self._r(555, "5.5.4", f"Unsupported parameter {sorted(unknown or params)[0]}")
        via_stoken = self.authenticated is not None and self.authenticated.mechanism == "STOKEN"
        if via_stoken or "STOKEN" in params:
            assert self._stokens is not None or not via_stoken
            if "STOKEN" not in params or self._stokens is None:
                return self._r(550, "5.7.1", "A submission token is required for this recipient")
            try:
                verified = self._stokens.verify(rcpt, params["STOKEN"])
            except TemporaryFailure:
                return self._r(451, "4.5.0", "Token store unavailable")
            except SaslError:
                return self._r(550, "5.7.1", "Submission token not valid for this recipient")
            if self.authenticated is not None and via_stoken and verified.remote != self.authenticated.authcid:
                return self._r(550, "5.7.1", "Submission token belongs to another sender")
            self._stoken_rcpts[rcpt] = verified.kind
        if "MYSTOKEN" in params:
            self._envelope.their_tokens[rcpt] = params["MYSTOKEN"]
        self._envelope.recipients.append(rcpt)
        return self._r(250, "2.1.5", "Recipient OK")

    def _cmd_data(self, arg: str) -> Reply:
        if self._envelope is None:
            return self._r(503, "5.5.1", "Need MAIL before DATA")
        if not self._envelope.recipients:
            return self._r(503, "5.5.1", "Need RCPT before DATA")
        self.state = SmtpState.DATA
        self._data, self._data_size, self._data_too_big, self._data_line_too_long = [], 0, False, False
        return Reply(["354 End data with <CR><LF>.<CR><LF>"])

    def line_too_long(self, head: bytes) -> Reply:
        """The driver read a line longer than it buffers; ``head`` is its start.

        In DATA the message is refused at its end (``554 5.6.0``); an AUTH
        exchange line gets ``500 5.5.6`` (RFC 4954 §4), a command ``500 5.5.2``.
        """
        if self.state is SmtpState.DATA:
            self._data_line_too_long = True
            self._data = []
            return Reply()
        if self.state is SmtpState.AUTH_EXCHANGE:
            return self._auth_reply(self.auth_engine.abort(Abort.LINE_TOO_LONG))
        return Reply([replies.AUTH_LINE_TOO_LONG if head[:5].upper() in (b"AUTH ", b"AUTH")
                      else "500 5.5.2 Line too long"])

    def _data_line(self, line: bytes) -> Reply:
        if line == b".":
            return self._finish_data()
        if line.startswith(b"."):
            line = line[1:]  # RFC 5321 §4.5.2 dot-stuffing
        self._data_size += len(line) + 2
        if self._data_size > self.config.max_message_size:
            self._data_too_big = True
            self._data = []
        elif not self._data_too_big:
            self._data.append(line)
        return Reply()

    def _finish_data(self) -> Reply:
        envelope, stoken_rcpts = self._envelope, self._stoken_rcpts
        assert envelope is not None
        self._end_transaction()
        count = len(envelope.recipients) if self.config.lmtp else 1
        if self._data_too_big:
            return Reply(["552 5.3.4 Message size exceeds fixed limit"] * count)
        if self._data_line_too_long:
            return Reply([f"554 5.6.0 Message has a line longer than {MAX_SMTP_AUTH_LINE} octets"] * count)
        envelope.data = b"\r\n".join(self._data) + (b"\r\n" if self._data else b"")
        try:
            delivery_id = self._deliver(envelope)
        except Exception:  # a delivery callback failing must not kill the session
            return Reply(["451 4.3.0 Local error in processing"] * count)
        if not self.config.lmtp:
            return self._r(250, "2.0.0", f"OK queued as {delivery_id}")
        lines = []
        for rcpt in envelope.recipients:
            kind = stoken_rcpts.get(rcpt)
            if kind == "TEMP" and self._stokens is not None and self.authenticated is not None:
                # draft-slusarz §7.4.1.2: a temporary token is replaced by a permanent one.
                try:
                    perm, _ = self._stokens.generate("PERM", self.authenticated.authcid, rcpt)
                    lines.append(f"250 2.1.13 <{rcpt}> {perm} {delivery_id} Saved")
                    continue
                except SaslError:
                    pass
            lines.append(f"250 2.1.12 <{rcpt}> {delivery_id} Saved")
        return Reply(lines)
