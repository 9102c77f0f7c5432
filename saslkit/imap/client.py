"""A blocking IMAP client for interop tests and scripts: AUTHENTICATE, REMEMBERME, UNAUTHENTICATE.

Plain sockets and :mod:`ssl` (``imaplib`` hides the AUTHENTICATE exchange,
cannot pipeline and knows neither UNAUTHENTICATE nor REMEMBERME).  One
:class:`ImapClient` is one connection::

    with ImapClient("mail.example.net", 143, ssl_context=client_tls_context(cafile="ca.pem")) as imap:
        imap.connect("starttls")                       # greeting, STARTTLS, CAPABILITY
        imap.authenticate("SCRAM-SHA-256-PLUS", "alice", "pencil")
        token = imap.remember("RANDOM")                # tag OK [REMEMBERME <base64 token>]
        imap.reauthenticate("REMEMBERME", "alice", token)   # UNAUTHENTICATE + AUTHENTICATE, pipelined
        imap.logout()

What it does, and the choices made (the TLS, channel-binding, secret-masking
and error plumbing is shared with the SMTP client in :mod:`saslkit.net.client`):

* Tagged commands (``a001``, ``a002`` …); responses are read up to the
  command's tagged ``OK``/``NO``/``BAD`` (RFC 9051 §7), collecting the
  untagged ones.  ``* CAPABILITY`` and ``[CAPABILITY …]`` response codes (in
  the greeting or a tagged OK) replace the known capabilities; the ``AUTH=``
  list is remembered from the last one seen before authentication (a server
  lists no mechanisms once authenticated, but may again after UNAUTHENTICATE).
  Literals (``{N}``) in server responses are read and kept inline.  A line
  may be :data:`MAX_IMAP_RESPONSE_LINE` octets, a literal :data:`MAX_IMAP_RESPONSE_LITERAL`, and every
  socket operation times out (30 s by default).
* STARTTLS (RFC 9051 §6.2.1): anything the server sent after its tagged OK
  in clear text is refused (a response-injection attempt), and the
  capabilities learnt before TLS are forgotten: CAPABILITY is sent again.
* AUTHENTICATE (RFC 9051 §6.2.2, RFC 4959): the mechanism must be listed as
  ``AUTH=<mech>``.  The initial response goes on the command line (``=``
  when empty) if the server advertises ``SASL-IR`` (or ``IMAP4rev2``, where
  it is part of the base protocol); otherwise the client waits for the empty
  ``+ `` continuation and sends it then.  Each ``+ <base64>`` continuation is
  answered in base64, an empty line for an empty response; a challenge that
  is not strict base64, or that the mechanism rejects, is answered with
  ``*``.  A tagged OK is a success only if the mechanism accepts it (SCRAM
  ``v=``, HT responder message).  Without a ``[CAPABILITY …]`` code in that
  OK the client asks for CAPABILITY again.  The exchange itself is
  :class:`saslkit.auth.client.ClientAuth`'s; this module frames its lines.
* UNAUTHENTICATE (RFC 8437): :meth:`ImapClient.reauthenticate` sends
  ``UNAUTHENTICATE`` and the next ``AUTHENTICATE`` in one write (§3 allows
  pipelining them when no SASL security layer is active; saslkit's
  mechanisms negotiate none), so with SASL-IR a REMEMBERME or PLAIN
  re-authentication is one round trip.  The client forgets the selected
  mailbox and the ENABLEd extensions on the OK.
  :func:`reauthenticate_showing_reset` also shows that the server forgot them.
* ``REMEMBERME <type>`` needs the capability ``REMEMBERME=<type>``; the
  answer ``tag OK [REMEMBERME <base64 token>] …`` (saslkit's IMAP design, see
  :mod:`saslkit.imap.session`) is decoded to the token string.
* A plaintext mechanism (PLAIN, REMEMBERME) that a server offers without TLS
  is used only with ``allow_plaintext=True``.
* The transcript callback (``log``) sees every line with secrets masked:
  SASL payloads through :func:`saslkit._redact.redact`, the REMEMBERME token
  as ``<token masked>``.

Errors: :class:`ImapConnectionError` (refused, timeout, TLS handshake or
certificate, STARTTLS not offered, BYE, the server breaking the protocol or
closing) and :class:`ImapAuthError` (the mechanism is not offered, the server
refused the credentials, the token request or UNAUTHENTICATE, or did not
prove itself).  Both are :class:`ImapClientError`, and the shared
:class:`~saslkit.net.client.ClientConnectionError` /
:class:`~saslkit.net.client.ClientAuthError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Unpack

from ..auth import client as sasl
from ..errors import UsageError
from ..net import client as net
from ..net.client import ClientAuthError, ClientConnectionError, ClientError, LineClient, TlsMode, client_tls_context

__all__ = [
    "ImapAuthError",
    "ImapAuthResult",
    "ImapClient",
    "ImapClientError",
    "ImapConnectionError",
    "ReauthReport",
    "Response",
    "Status",
    "TlsMode",
    "check_token_type",
    "client_tls_context",
    "reauthenticate_showing_reset",
]

MAX_IMAP_RESPONSE_LINE = 65536  # one response line, CRLF included (IMAP sets no limit; CAPABILITY lines can be long)
MAX_IMAP_RESPONSE_LITERAL = 1 << 20
MAX_LITERALS_PER_LINE = 64
MAX_UNTAGGED = 10000  # untagged responses before one tagged completion

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED = "not-authenticated", "authenticated", "selected"

# tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9)
_TAGGED_RE = re.compile(r"([\x21\x23-\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+) (OK|NO|BAD)(?: (.*))?", re.IGNORECASE)
_UNTAGGED_STATUS_RE = re.compile(r"(OK|NO|BAD|PREAUTH|BYE)(?: (.*))?", re.IGNORECASE)
_LITERAL_RE = re.compile(rb"\{(\d{1,10})\+?\}$")
_TOKEN_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&'+,./:;<=>?@^_`|}~-]+")  # an IMAP atom without "[" / "]"
_MAILBOX_ATOM_RE = re.compile(r"[A-Za-z0-9._/-]+")
_MASK_RE = re.compile(r"\[REMEMBERME [^\]]*\]", re.IGNORECASE)


class ImapClientError(ClientError):
    """Base class of the client's errors."""


class ImapConnectionError(ImapClientError, ClientConnectionError):
    """Connection, TLS or protocol failure (CLI exit 3)."""


class ImapAuthError(ImapClientError, ClientAuthError):
    """Authentication, REMEMBERME or UNAUTHENTICATE refused or not possible (CLI exit 1)."""

    reply: Response | None

    @property
    def response(self) -> Response | None:
        """The server's last response (the tagged completion)."""
        return self.reply


@dataclass(frozen=True)
class Status:
    """A status response: tagged (``a001 OK …``) or untagged (tag ``*``)."""

    tag: str
    status: str  # OK, NO, BAD (PREAUTH, BYE untagged), upper case
    code: str | None  # the response code between [ and ], without them
    text: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def code_name(self) -> str:
        return (self.code or "").split(" ", 1)[0].upper()

    def __str__(self) -> str:
        return f"{self.status} {'[' + self.code + '] ' if self.code is not None else ''}{self.text}".rstrip()


@dataclass(frozen=True)
class Response:
    """A command's tagged completion and the untagged responses (without ``* ``) that came before it."""

    tagged: Status
    untagged: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.tagged.ok

    def __str__(self) -> str:
        return str(self.tagged)


@dataclass(frozen=True)
class ImapAuthResult:
    """A successful AUTHENTICATE: mechanism, identity, channel-binding type (if any), the tagged OK."""

    mechanism: str
    username: str
    channel_binding: str | None
    response: Response
    capabilities: tuple[str, ...] = ()
    #: Sent right behind UNAUTHENTICATE in the same write (RFC 8437 §3).
    pipelined: bool = False


def check_token_type(token_type: str) -> str:
    """A REMEMBERME token type is an IMAP atom; raise :class:`UsageError` if not.  Returns it upper-cased."""
    return net.checked_token_type(_TOKEN_TYPE_RE, token_type)


def _astring(value: str) -> str:
    """``value`` as an IMAP astring: an atom when it is one, else a quoted string."""
    if _MAILBOX_ATOM_RE.fullmatch(value):
        return value
    if any(ch in value for ch in "\r\n\x00"):
        raise UsageError("a mailbox name cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_status(tag: str, status: str, rest: str | None) -> Status:
    rest = rest or ""
    code: str | None = None
    if rest.startswith("["):
        end = rest.find("]")
        if end > 0:
            code, rest = rest[1:end], rest[end + 1 :].lstrip(" ")
    return Status(tag, status.upper(), code, rest)


def _mask(line: str) -> str:
    return _MASK_RE.sub("[REMEMBERME <token masked>]", line)


class ImapClient(LineClient):
    """One blocking IMAP connection (see the module docstring)."""

    protocol = "IMAP"
    max_line = MAX_IMAP_RESPONSE_LINE
    client_error = ImapClientError
    connection_error = ImapConnectionError
    auth_error = ImapAuthError

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tag_prefix: str = "a",
        **options: Unpack[net.ClientOptions],
    ) -> None:
        """``options``: ``ssl_context``, ``timeout``, ``log`` and ``registry``, as :class:`LineClient` takes them."""
        super().__init__(host, port, **options)
        if not re.fullmatch(r"[A-Za-z]{1,8}", tag_prefix):
            raise UsageError("tag_prefix must be 1 to 8 letters")
        self._tag_prefix = tag_prefix
        self._tags = 0
        #: The latest capability list, as the server spelled it.
        self.capabilities: list[str] = []
        #: Mechanisms of the latest ``AUTH=`` list seen before authentication (upper case).
        self.auth_mechanisms: list[str] = []
        self.greeting: Status | None = None
        self.state = NOT_AUTHENTICATED
        self.selected: str | None = None
        self.enabled: set[str] = set()
        self.authenticated: ImapAuthResult | None = None
        self.bye: str | None = None
        self._authenticating = False

    # ------------------------------------------------------------ capabilities

    def has(self, capability: str) -> bool:
        wanted = capability.upper()
        return any(c.upper() == wanted for c in self.capabilities)

    def _set_capabilities(self, words: list[str]) -> None:
        self.capabilities = words
        if self.state == NOT_AUTHENTICATED and not self._authenticating:
            self.auth_mechanisms = [w[5:].upper() for w in words if w.upper().startswith("AUTH=")]

    def _apply_code(self, status: Status) -> None:
        if status.code_name == "CAPABILITY" and status.code is not None:
            self._set_capabilities(status.code.split()[1:])

    # ------------------------------------------------------------ wire

    def _offer_text(self, offered: list[str]) -> str:
        words = [f"AUTH={m}" for m in offered] + (["LOGINDISABLED"] if self.has("LOGINDISABLED") else [])
        return " ".join(words)

    def _closed_message(self) -> str:
        message = f"{self.host}:{self.port} closed the connection"
        return f"{message} ({self.bye})" if self.bye else message

    def _next_tag(self) -> str:
        self._tags += 1
        return f"{self._tag_prefix}{self._tags:03d}"

    def _read_line(self) -> str:
        """One response line, with any literals it announces read and kept inline."""
        parts: list[bytes] = []
        for _ in range(MAX_LITERALS_PER_LINE):
            raw = self._recv_line()
            parts.append(raw)
            m = _LITERAL_RE.search(raw)
            if m is None:
                return b"".join(parts).decode("utf-8", "replace")
            size = int(m.group(1))
            if size > MAX_IMAP_RESPONSE_LITERAL:
                raise self.connection_error(f"literal of {size} octets is larger than {MAX_IMAP_RESPONSE_LITERAL}")
            parts.append(self._recv_exactly(size))
        raise self.connection_error(f"more than {MAX_LITERALS_PER_LINE} literals in one response")

    def _read_response(
        self,
        tag: str,
        *,
        continuation: bool = False,
        shown: Callable[[str], str] | None = None,
    ) -> Response | str:
        """Read up to ``tag``'s completion; with ``continuation`` a ``+`` line is returned as its text."""
        untagged: list[str] = []
        while True:
            line = self._read_line()
            if line.startswith("+"):
                text = line[2:] if line.startswith("+ ") else line[1:]
                self._show("S:", f"+ {shown(text) if shown else text}".rstrip(" "))
                if not continuation:
                    raise self.connection_error("unexpected continuation request from the server")
                return text
            if line.startswith("* "):
                self._show("S:", _mask(line))
                untagged.append(line[2:])
                self._untagged(line[2:])
                if len(untagged) > MAX_UNTAGGED:
                    raise self.connection_error(f"more than {MAX_UNTAGGED} untagged responses")
                continue
            m = _TAGGED_RE.fullmatch(line)
            if m is None:
                self._show("S:", f"<malformed: {line[:80]!r}>")
                raise self.connection_error(f"malformed response from the server: {line[:80]!r}")
            self._show("S:", _mask(line))
            if m.group(1) != tag:
                raise self.connection_error(f"response for tag {m.group(1)!r} while waiting for {tag!r}")
            status = _parse_status(m.group(1), m.group(2), m.group(3))
            self._apply_code(status)
            return Response(status, tuple(untagged))

    def _untagged(self, text: str) -> None:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "CAPABILITY":
            self._set_capabilities(rest.split())
            return
        m = _UNTAGGED_STATUS_RE.fullmatch(text)
        if m is not None:
            status = _parse_status("*", m.group(1), m.group(2))
            self._apply_code(status)
            if status.status == "BYE":
                self.bye = str(status)

    def _expect(self, tag: str) -> Response:
        response = self._read_response(tag)
        assert isinstance(response, Response)
        return response

    def command(self, line: str, shown: str | None = None) -> Response:
        """Send ``<tag> <line>`` and read its responses."""
        tag = self._next_tag()
        self._send(f"{tag} {line}", None if shown is None else f"{tag} {shown}")
        return self._expect(tag)

    # ------------------------------------------------------------ connection

    def connect(self, tls_mode: TlsMode = "starttls") -> list[str]:
        """Connect, read the greeting (and STARTTLS); return the capabilities."""
        self._open(tls_mode)
        line = self._read_line()
        self._show("S:", _mask(line))
        m = _UNTAGGED_STATUS_RE.fullmatch(line[2:]) if line.startswith("* ") else None
        if m is None:
            raise self.connection_error(f"malformed greeting from the server: {line[:80]!r}")
        greeting = _parse_status("*", m.group(1), m.group(2))
        self.greeting = greeting
        if greeting.status == "BYE":
            raise self.connection_error(f"server refused the connection: {greeting}")
        if greeting.status == "PREAUTH":
            raise self.connection_error("the server pre-authenticated the connection (PREAUTH): "
                                        "nothing to authenticate")
        if greeting.status != "OK":
            raise self.connection_error(f"unexpected greeting: {greeting}")
        self._apply_code(greeting)
        if not self.capabilities:
            self.capability()
        if tls_mode == "starttls":
            self.starttls()
        return self.capabilities

    def capability(self) -> list[str]:
        response = self.command("CAPABILITY")
        if not response.ok:
            raise self.connection_error(f"CAPABILITY refused: {response}")
        return self.capabilities

    def starttls(self) -> None:
        """RFC 9051 §6.2.1: STARTTLS, the handshake, then CAPABILITY again."""
        if not self.has("STARTTLS"):
            raise self.connection_error("the server does not offer STARTTLS")
        response = self.command("STARTTLS")
        if not response.ok:
            raise self.connection_error(f"STARTTLS refused: {response}")
        self._start_tls()
        self.capabilities, self.auth_mechanisms = [], []
        self.capability()

    def logout(self) -> None:
        """LOGOUT politely; errors on the way out are ignored."""
        self._sign_off("LOGOUT")

    # ------------------------------------------------------------ AUTHENTICATE

    def authenticate(self, mechanism: str | None, username: str, secret: str, *, authzid: str | None = None,
                     allow_plaintext: bool = False) -> ImapAuthResult:
        """Run one AUTHENTICATE exchange (``mechanism`` ``None``: the best offered one); raise unless it succeeded."""
        if self.state != NOT_AUTHENTICATED:
            raise ImapAuthError("already authenticated (reauthenticate() sends UNAUTHENTICATE first)")
        return self._authenticate(mechanism, username, secret, authzid, allow_plaintext, unauthenticate=False)

    def reauthenticate(self, mechanism: str | None, username: str, secret: str, *, authzid: str | None = None,
                       allow_plaintext: bool = False) -> ImapAuthResult:
        """``UNAUTHENTICATE`` and ``AUTHENTICATE`` pipelined in one write (RFC 8437 §3)."""
        if self.state == NOT_AUTHENTICATED:
            raise ImapAuthError("not authenticated: nothing to UNAUTHENTICATE")
        if not self.has("UNAUTHENTICATE"):
            self.capability()  # RFC 8437 §3: it may be advertised only once authenticated
        if not self.has("UNAUTHENTICATE"):
            raise ImapAuthError("the server does not offer UNAUTHENTICATE (RFC 8437)")
        return self._authenticate(mechanism, username, secret, authzid, allow_plaintext, unauthenticate=True)

    def unauthenticate(self) -> Response:
        """``UNAUTHENTICATE`` alone; the server is then in not-authenticated state."""
        response = self.command("UNAUTHENTICATE")
        if not response.ok:
            raise ImapAuthError(f"UNAUTHENTICATE refused: {response}", response)
        self._reset_session()
        return response

    def _reset_session(self) -> None:
        """What UNAUTHENTICATE resets (RFC 8437 §3, §4.1); TLS and the capabilities stay."""
        self.state = NOT_AUTHENTICATED
        self.selected = None
        self.enabled = set()
        self.authenticated = None

    def _authenticate(
        self,
        mechanism: str | None,
        username: str,
        secret: str,
        authzid: str | None,
        allow_plaintext: bool,
        *,
        unauthenticate: bool,
    ) -> ImapAuthResult:
        framing = sasl.IMAP_SASL_IR_FRAMING if self.has("SASL-IR") or self.has("IMAP4rev2") else sasl.IMAP_FRAMING
        auth = self._client_auth(mechanism, self.auth_mechanisms, username, secret, authzid=authzid,
                                 allow_plaintext=allow_plaintext, framing=framing)
        command = auth.start()
        lines: list[tuple[str, str | None]] = []
        untag = self._next_tag() if unauthenticate else None
        if untag is not None:
            lines.append((f"{untag} UNAUTHENTICATE", None))
        tag = self._next_tag()
        lines.append((f"{tag} AUTHENTICATE {command.arguments}", f"{tag} AUTHENTICATE {command.shown}"))
        self._send_lines(lines)
        if untag is not None:
            done = self._expect(untag)
            if not done.ok:
                self._abandon(tag)
                raise ImapAuthError(f"UNAUTHENTICATE refused: {done}", done)
            self._reset_session()
        final = self._run_exchange(auth, tag)
        if final.tagged.code_name != "CAPABILITY":
            self.capability()  # RFC 9051 §6.2.2: capabilities may change with authentication
        self.authenticated = ImapAuthResult(auth.mechanism, username, auth.channel_binding, final,
                                        tuple(self.capabilities), pipelined=untag is not None)
        return self.authenticated

    def _run_exchange(self, auth: sasl.ClientAuth, tag: str) -> Response:
        """Answer ``tag``'s continuations with ``auth`` up to its completion; raise unless authenticated."""
        responses: list[Response] = []

        def show_challenge(text: str) -> str:
            return net.show_payload(auth.mechanism, text)

        def receive() -> sasl.ServerMessage:
            item = self._read_response(tag, continuation=True, shown=show_challenge)
            if isinstance(item, str):
                return sasl.EncodedChallenge(item)
            responses.append(item)
            if not item.ok:
                return sasl.ServerFailure(str(item))
            self.state = AUTHENTICATED  # the server's view, even if it fails to prove itself
            return sasl.ServerSuccess()

        self._authenticating = True
        try:
            outcome = sasl.drive(auth, receive, lambda step: self._send(step.line, step.shown))
            if not isinstance(outcome, sasl.ClientAuthenticated):
                last = self._abandon(tag) if isinstance(outcome, sasl.Cancel) else responses[-1]
                raise self._auth_failure(outcome, last)
        finally:
            self._authenticating = False
        return responses[-1]

    def _abandon(self, tag: str) -> Response | None:
        """Read ``tag``'s completion, cancelling any continuation it asks for; ``None`` if the server left."""
        try:
            while True:
                item = self._read_response(tag, continuation=True)
                if isinstance(item, Response):
                    return item
                self._send("*")
        except ImapConnectionError:
            return None

    # ------------------------------------------------------------ REMEMBERME

    def check_remember(self, token_type: str) -> None:
        """Raise :class:`ImapAuthError` unless the capabilities offer ``REMEMBERME=<token_type>``."""
        kind = check_token_type(token_type)
        offered = [c[11:].upper() for c in self.capabilities if c.upper().startswith("REMEMBERME=")]
        if not offered:
            raise ImapAuthError("the server does not offer REMEMBERME here")
        if kind not in offered:
            raise ImapAuthError(f"the server does not offer REMEMBERME {kind} "
                                f"({' '.join('REMEMBERME=' + t for t in offered)})")

    def remember(self, token_type: str) -> str:
        """``REMEMBERME <type>`` once authenticated: the new token from ``OK [REMEMBERME <base64>]``."""
        kind = check_token_type(token_type)
        self.check_remember(kind)
        response = self.command(f"REMEMBERME {kind}")
        if not response.ok:
            raise ImapAuthError(f"REMEMBERME refused: {response}", response)
        words = (response.tagged.code or "").split()
        if len(words) != 2 or words[0].upper() != "REMEMBERME":
            raise ImapConnectionError("malformed REMEMBERME response: expected OK [REMEMBERME <base64 token>]")
        return self._decode_token(words[1], "malformed REMEMBERME response")

    # ------------------------------------------------------------ mailbox state

    def enable(self, *extensions: str) -> list[str]:
        """``ENABLE``; the extensions the server says it enabled now (``* ENABLED``), upper case."""
        response = self.command("ENABLE " + " ".join(extensions))
        if not response.ok:
            return []
        enabled: list[str] = []
        for text in response.untagged:
            keyword, _, rest = text.partition(" ")
            if keyword.upper() == "ENABLED":
                enabled += [w.upper() for w in rest.split()]
        self.enabled.update(enabled)
        return enabled

    def select(self, mailbox: str = "INBOX", *, read_only: bool = False) -> Response:
        """``SELECT`` (or ``EXAMINE``); a failed one leaves no mailbox selected (RFC 9051 §6.3.2)."""
        response = self.command(f"{'EXAMINE' if read_only else 'SELECT'} {_astring(mailbox)}")
        if response.ok:
            self.selected, self.state = mailbox, SELECTED
        elif self.state == SELECTED:
            self.selected, self.state = None, AUTHENTICATED
        return response

    def close_mailbox(self) -> Response:
        """``CLOSE``: BAD or NO when no mailbox is selected."""
        response = self.command("CLOSE")
        if response.ok:
            self.selected, self.state = None, AUTHENTICATED
        return response


# ---------------------------------------------------------------- showing RFC 8437's reset


@dataclass
class ReauthReport:
    """What :func:`reauthenticate_showing_reset` saw, and the summary lines it makes of it."""

    first_user: str
    extension: str
    mailbox: str
    enabled_before: list[str]
    select_before: Response
    result: ImapAuthResult
    close_after: Response
    enabled_after: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def selection_shown(self) -> bool:
        """A mailbox was selected before, so CLOSE afterwards tells whether the selection was reset."""
        return self.select_before.ok

    @property
    def selection_reset(self) -> bool:
        return not self.close_after.ok

    @property
    def enable_shown(self) -> bool:
        return self.extension.upper() in self.enabled_before

    @property
    def enable_reset(self) -> bool:
        return self.extension.upper() in self.enabled_after

    @property
    def reset_ok(self) -> bool:
        """Nothing that could be checked survived UNAUTHENTICATE."""
        return (not self.selection_shown or self.selection_reset) and (not self.enable_shown or self.enable_reset)

    def lines(self) -> list[str]:
        ext = self.extension
        before = ", ".join(self.enabled_before) or "nothing"
        out = [
            f"before UNAUTHENTICATE: authenticated as {self.first_user}; ENABLE {ext} -> enabled {before}; "
            f"SELECT {self.mailbox} -> {self.select_before}",
            f"UNAUTHENTICATE + AUTHENTICATE {self.result.mechanism}"
            f"{' (pipelined)' if self.result.pipelined else ''}: authenticated as {self.result.username}",
        ]
        if self.selection_shown:
            verdict = "the selected mailbox was reset" if self.selection_reset else "the selected mailbox was NOT reset"
        else:
            verdict = "nothing was selected before (SELECT failed), so this shows nothing"
        out.append(f"after re-authentication: CLOSE -> {self.close_after}: {verdict}")
        after = ", ".join(self.enabled_after) or "nothing"
        if self.enable_shown:
            verdict = (f"{ext.upper()} enabled again: the ENABLE state was reset" if self.enable_reset
                       else f"{ext.upper()} not enabled again: the ENABLE state was NOT reset")
        else:
            verdict = f"the server did not enable {ext} before, so this shows nothing"
        out.append(f"after re-authentication: ENABLE {ext} -> enabled {after}: {verdict}")
        shown = [what for what, ok in (("selected mailbox", self.selection_shown), ("ENABLE state", self.enable_shown))
                 if ok]
        if not self.reset_ok:
            out.append("reset NOT shown: the server kept state across UNAUTHENTICATE (RFC 8437 §3)")
        elif shown:
            out.append(f"reset shown: {' and '.join(shown)} cleared by UNAUTHENTICATE")
        else:
            out.append("reset not shown: nothing to observe")
        return out + self.notes


def reauthenticate_showing_reset(
    imap: ImapClient,
    mechanism: str,
    username: str,
    secret: str,
    *,
    authzid: str | None = None,
    allow_plaintext: bool = False,
    extension: str = "IMAP4rev2",
    mailbox: str = "INBOX",
) -> ReauthReport:
    """Show RFC 8437's reset on an authenticated connection.

    ``ENABLE <extension>`` and ``SELECT <mailbox>`` as the current user, then
    ``UNAUTHENTICATE`` + ``AUTHENTICATE`` as ``username`` pipelined, then
    ``CLOSE`` (which needs a selected mailbox: BAD/NO once the selection is
    gone) and ``ENABLE <extension>`` again (``* ENABLED`` lists it again once
    the ENABLE state is gone).
    """
    if imap.authenticated is None:
        raise ImapAuthError("authenticate first")
    if not imap.has("UNAUTHENTICATE"):
        imap.capability()
    if not imap.has("UNAUTHENTICATE"):
        raise ImapAuthError("the server does not offer UNAUTHENTICATE (RFC 8437)")
    first_user = imap.authenticated.username
    enabled_before = imap.enable(extension) if imap.has("ENABLE") else []
    select_before = imap.select(mailbox)
    result = imap.reauthenticate(mechanism, username, secret, authzid=authzid, allow_plaintext=allow_plaintext)
    close_after = imap.close_mailbox()
    enabled_after = imap.enable(extension) if imap.has("ENABLE") else []
    return ReauthReport(first_user, extension, mailbox, enabled_before, select_before, result, close_after,
                        enabled_after)
