"""A sans-IO IMAP server session with SASL authentication.

The driver feeds lines to :meth:`ImapSession.receive_line` and sends the lines
of the :class:`ImapReply` it gets.  When a line ends with a literal
(``{N}`` or ``{N+}``), the reply's ``literal`` says how many octets to read
raw and hand to :meth:`ImapSession.receive_literal`; the command then goes on
with the next line.  ``starttls``/``close`` ask the driver to act.

Covered: CAPABILITY (``AUTH=``, ``SASL-IR``, ``LOGINDISABLED``, ``STARTTLS``,
``UNAUTHENTICATE``, ``REMEMBERME=<type>``), AUTHENTICATE with and without
SASL-IR (RFC 4959, RFC 3501/9051 §6.2.2), LOGIN with quoted strings and
literals, UNAUTHENTICATE (RFC 8437), RFC 5530 response codes, and just
enough mailbox state to make UNAUTHENTICATE observable (SELECT/EXAMINE INBOX,
ENABLE, ID, NOOP, CLOSE, UNSELECT, LOGOUT).

Choices (no IMAP REMEMBERME draft was available; designed by analogy with
draft-melnikov-smtp-rememberme-00 and documented here):

* capability ``REMEMBERME=<type>`` per token type (like ``AUTH=``), after TLS;
* ``tag REMEMBERME <type>`` in authenticated/selected state answers
  ``tag OK [REMEMBERME <base64 token>] Token created``; an unknown type or a
  token-based login gets ``NO [CANNOT]``, a store failure ``NO [UNAVAILABLE]``,
  a bad argument ``BAD``;
* a registered mechanism refused here by policy (PLAIN without TLS) gets
  ``NO [PRIVACYREQUIRED]``, an unknown one ``NO [CANNOT]``
  (:mod:`saslkit.imap.replies` holds the table);
* ``LOGIN`` is PLAIN through the same offer: refused (and ``LOGINDISABLED``
  advertised) whenever PLAIN is, by TLS, policy or ``ImapConfig.mechanisms``.

Embedding: an IMAP server built on this session passes ``commands``, a hook called with every command the
session does not implement (:class:`ImapCommand`: tag, upper-case name, tokenized arguments, raw text) that
returns the :class:`ImapReply` (or ``None``: ``BAD Unknown command``).  The hook reads the session's public
state (``state``, ``authenticated``, ``selected``) and may change it; it runs in the driver's thread pool
(``may_block``).  ``ImapConfig.protocol_capabilities`` says which protocol the server speaks
(``IMAP4rev1``, ``IMAP4rev2``: imaplib refuses a server without ``IMAP4rev1``) and
``ImapConfig.extra_capabilities`` what its commands add; the session advertises those and its own.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..auth._attempts import AuthAttempts
from ..auth._session import EngineSession
from ..auth.engine import Abort, Aborted, AuthOutcome
from ..auth.events import Authenticated, AuthFailed, AuthRefused, TokenMinted
from ..auth.framing import encode_challenge
from ..credentials import UserStore
from ..errors import TemporaryFailure, UsageError
from ..mechanism import Challenge, Success
from ..penalty import AuthPenalty
from ..registry import MechanismInfo, Policy, Registry, default_registry, server_policy
from ..reply import Reply
from ..tokens import TOKEN_TYPES, TokenService
from . import replies

__all__ = ["ImapCommand", "ImapCommandHook", "ImapConfig", "ImapReply", "ImapSession", "ImapState", "Mailbox"]

MAX_IMAP_COMMAND_LINE = 16384  # one command line the server reads, CRLF excluded
MAX_IMAP_COMMAND_LITERAL = 16384  # one literal in a command
#: One command's lines and literals together (LOGIN takes two).
MAX_IMAP_COMMAND = MAX_IMAP_COMMAND_LINE + 2 * MAX_IMAP_COMMAND_LITERAL
_TAG_RE = re.compile(r"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+")  # ASTRING-CHAR minus "+" (RFC 9051 §9)
_LITERAL_RE = re.compile(rb"\{(\d{1,9})(\+?)\}$")



class ImapState(enum.StrEnum):
    """The connection states of RFC 9051 §3 (values are their names, for logs and old callers)."""

    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = (
    ImapState.NOT_AUTHENTICATED, ImapState.AUTHENTICATED, ImapState.SELECTED, ImapState.LOGOUT)


@dataclass
class ImapReply(Reply):
    """A :class:`~saslkit.reply.Reply`; ``literal`` says how many raw octets to read next and hand to
    :meth:`ImapSession.receive_literal`."""

    literal: int | None = None


@dataclass
class Mailbox:
    """What SELECT shows: a count of messages (an empty INBOX, or a Maildir's)."""

    exists: int = 0
    uidvalidity: int = 1


@dataclass
class ImapConfig:
    hostname: str = "localhost"
    tls_available: bool = False
    allow_plaintext_auth: bool = False
    #: "always", "after-auth" (RFC 8437 §3 allows advertising it only once authenticated) or "off" (§8)
    unauthenticate: str = "always"
    registry: Registry = field(default_factory=default_registry)
    policy: Policy | None = None
    remember_types: tuple[str, ...] = TOKEN_TYPES
    failure_delay: float = 1.0
    max_auth_failures: int = 3
    enableable: tuple[str, ...] = ("IMAP4REV2", "UTF8=ACCEPT")
    #: Allow-list in offer order (None: every registered mechanism, strongest first); LOGIN counts as PLAIN.
    mechanisms: tuple[str, ...] | None = None
    #: The protocol the server speaks, first in CAPABILITY (RFC 9051 §7.2.2; clients require IMAP4rev1).
    protocol_capabilities: tuple[str, ...] = ("IMAP4rev1", "IMAP4rev2")
    #: What the embedding server's own commands add (see ``ImapSession(commands=...)``), last in CAPABILITY.
    extra_capabilities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.effective_policy()  # an unknown name in ``mechanisms`` is a UsageError now, not at the first login

    def effective_policy(self) -> Policy:
        return server_policy(self.registry, self.policy, self.allow_plaintext_auth, self.mechanisms)


@dataclass(frozen=True)
class ImapCommand:
    """A command the session does not implement, handed to the embedding server's hook."""

    tag: str
    #: Upper case (``LIST``).
    name: str
    #: Atoms, quoted strings (unquoted) and literals (decoded as UTF-8), in order; parentheses stay in atoms.
    arguments: list[str]
    #: The rest of the command's first line after the name, as sent (without literals).
    text: str


#: ``hook(session, command)``: the reply to a command the session does not implement, or ``None`` for
#: ``BAD Unknown command``.
ImapCommandHook = Callable[["ImapSession", ImapCommand], "ImapReply | None"]


class _Syntax(Exception):
    pass


def _tokenize(parts: list[str | bytes]) -> list[str]:
    """Split command arguments: atoms, quoted strings, and literals already read."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, bytes):
            try:
                out.append(part.decode("utf-8"))
            except UnicodeDecodeError:
                raise _Syntax("literal is not UTF-8") from None
            continue
        i = 0
        while i < len(part):
            ch = part[i]
            if ch == " ":
                i += 1
            elif ch == '"':
                j, buf = i + 1, []
                while j < len(part) and part[j] != '"':
                    if part[j] == "\\":
                        j += 1
                        if j >= len(part) or part[j] not in '"\\':
                            raise _Syntax("bad quoted string")
                    buf.append(part[j])
                    j += 1
                if j >= len(part):
                    raise _Syntax("unterminated quoted string")
                out.append("".join(buf))
                i = j + 1
            else:
                j = i
                while j < len(part) and part[j] != " ":
                    j += 1
                out.append(part[i:j])
                i = j
    return out


class ImapSession(EngineSession[ImapConfig]):
    """One IMAP connection's state machine (RFC 9051 §3 states)."""

    def __init__(
        self,
        config: ImapConfig,
        users: UserStore,
        server_secret: bytes,
        *,
        tokens: TokenService | None = None,
        peer: str = "",
        tls: bool = False,
        channel_bindings: Mapping[str, bytes] | None = None,
        mailbox: Callable[[str], Mailbox] | None = None,
        penalty: AuthPenalty | None = None,
        commands: ImapCommandHook | None = None,
    ) -> None:
        """``commands``: the embedding server's hook for the commands this session does not implement."""
        super().__init__(config, users, server_secret, tokens=tokens, stokens=None, peer=peer, tls=tls,
                         channel_bindings=channel_bindings, penalty=penalty)  # bindings used survive UNAUTHENTICATE
        self._commands = commands
        self._mailbox = mailbox or (lambda user: Mailbox())
        self._attempts = AuthAttempts(peer, penalty, config.failure_delay, config.max_auth_failures)
        self._pending: list[str | bytes] = []
        self._reset_state()

    def _reset_state(self) -> None:
        """Everything but TLS (RFC 8437 §3)."""
        self.state = NOT_AUTHENTICATED
        self.authenticated: Success | None = None
        self.selected: str | None = None
        self.read_only = False
        self.enabled: set[str] = set()
        self._auth_tag = ""  # the tag of the AUTHENTICATE under way, "" when none is

    def tls_started(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        self._tls_up(channel_bindings)

    # ------------------------------------------------------------ capabilities

    def _serves(self, info: MechanismInfo) -> bool:
        """No STOKEN (an LMTP mechanism); token mechanisms need the token service."""
        return info.name != "STOKEN" and not (info.token_based and self._tokens is None)

    def _offer_key(self) -> tuple[bool]:
        return (self._tokens is not None,)

    @property
    def login_disabled(self) -> bool:
        """LOGIN is PLAIN: disabled whenever PLAIN is not offered (RFC 9051 §6.2.3 LOGINDISABLED)."""
        return "PLAIN" not in self.offer

    def capabilities(self) -> list[str]:
        caps = [*self.config.protocol_capabilities, "LITERAL+", "ENABLE", "ID", "SASL-IR"]
        if self.state == NOT_AUTHENTICATED:
            if self.config.tls_available and not self.tls:
                caps.append("STARTTLS")
            if self.login_disabled:
                caps.append("LOGINDISABLED")
            caps += [f"AUTH={m}" for m in self.offered_mechanisms()]
        mode = self.config.unauthenticate
        if mode == "always" or (mode == "after-auth" and self.state != NOT_AUTHENTICATED):
            caps.append("UNAUTHENTICATE")
        if self.tls and self._tokens is not None:
            caps += [f"REMEMBERME={t}" for t in self.config.remember_types]
        return caps + list(self.config.extra_capabilities)

    def greeting(self) -> ImapReply:
        return ImapReply([f"* OK [CAPABILITY {' '.join(self.capabilities())}] {self.config.hostname} saslkit IMAP"])

    @property
    def in_auth(self) -> bool:
        return self._engine is not None and self._engine.active

    def may_block(self, line: bytes) -> bool:
        """Whether handling ``line`` may block (password hashing, store access).

        Decided on the line that completes the command: a line ending in a literal only
        announces more, and the last line of ``a LOGIN {5}`` ... names no command, so the
        command's first line (pending since its literals) decides.
        """
        if self.in_auth:
            return self.auth_engine.next_step_may_block  # e.g. SCRAM client-final only computes HMACs
        if _LITERAL_RE.search(line.rstrip(b"\r\n")) is not None:
            return False  # the command goes on after the literal (refusing one never blocks)
        first = self._pending[0] if self._pending else line
        head = first[:64].encode("utf-8") if isinstance(first, str) else first[:64]
        words = head.split(b" ", 2)
        command = words[1].upper().rstrip(b"\r\n") if len(words) > 1 else b""
        if command == b"AUTHENTICATE" and not self._pending:
            return self._authenticate_may_block(line)
        if command in (b"AUTHENTICATE", b"LOGIN", b"REMEMBERME", b"SELECT", b"EXAMINE"):  # LOGIN is PLAIN
            return True
        return self._commands is not None and not self._owns(command.decode("ascii", "replace"))

    def _owns(self, name: str) -> bool:
        """Whether this session implements command ``name`` itself."""
        return name.isalpha() and hasattr(self, f"_cmd_{name.lower()}")

    def _authenticate_may_block(self, line: bytes) -> bool:
        """``tag AUTHENTICATE mech [ir]`` parsed as :meth:`_cmd_authenticate` does (RFC 4959 §3)."""
        text = line[:-1] if line.endswith(b"\n") else line
        try:
            rest = (text[:-1] if text.endswith(b"\r") else text).decode("utf-8").partition(" ")[2]
        except UnicodeDecodeError:
            return False  # BAD, at once
        words = rest.partition(" ")[2].split(" ")
        return 1 <= len(words) <= 2 and bool(words[0]) and self.auth_engine.start_may_block(
            words[0], len(words) == 2)

    # ------------------------------------------------------------ input

    def receive_line(self, line: bytes) -> ImapReply:
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.in_auth:
            return self._auth_line(line)
        if len(line) > MAX_IMAP_COMMAND_LINE:
            self._pending = []
            return ImapReply(["* BAD Line too long"])
        m = _LITERAL_RE.search(line)
        if m is not None:
            size = int(m.group(1))
            sync = not m.group(2)
            if size > MAX_IMAP_COMMAND_LITERAL or sum(map(len, self._pending)) + len(line) + size > MAX_IMAP_COMMAND:
                return self._refuse_literal(line, sync, "Literal too large")
            try:
                self._pending.append(line[: m.start()].decode("utf-8"))
            except UnicodeDecodeError:
                return self._refuse_literal(line, sync, "Invalid UTF-8")
            return ImapReply(["+ Ready for literal data"] if sync else [], literal=size)
        try:
            self._pending.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            self._pending = []
            return ImapReply(["* BAD Invalid UTF-8"])
        parts, self._pending = self._pending, []
        return self._command(parts)

    def _refuse_literal(self, line: bytes, sync: bool, text: str) -> ImapReply:
        """Refuse a command at its literal: tagged BAD so the client sends no more of it (RFC 9051 §2.2.2).

        A non-synchronizing (LITERAL+) literal's octets are already on their way and would otherwise
        be read as commands, so that connection is closed with BYE instead.
        """
        first = self._pending[0] if self._pending else line.decode("utf-8", "replace")
        self._pending = []
        if not sync:
            return ImapReply([f"* BYE {text}"], close=True)
        tag = str(first).split(" ", 1)[0]
        return ImapReply([f"{tag if _TAG_RE.fullmatch(tag) else '*'} BAD {text}"])

    def line_too_long(self, head: bytes) -> ImapReply:
        """The driver read a line longer than it buffers (``head`` is its start)."""
        self._pending = []
        if self.in_auth:
            return self._auth_reply(self.auth_engine.abort(Abort.LINE_TOO_LONG))
        return ImapReply(["* BAD Line too long"])

    def receive_literal(self, data: bytes) -> ImapReply:
        self._pending.append(data)
        return ImapReply()

    def _command(self, parts: list[str | bytes]) -> ImapReply:
        first = parts[0]
        assert isinstance(first, str)
        tag, _, rest = first.partition(" ")
        if not _TAG_RE.fullmatch(tag):
            return ImapReply(["* BAD Missing or invalid tag"])
        name, _, args_text = rest.partition(" ")
        name = name.upper()
        handler = getattr(self, f"_cmd_{name.lower()}", None) if name.isalpha() else None
        if handler is None and self._commands is None:
            return self._bad(tag, "Unknown command")
        try:
            args = _tokenize([args_text, *parts[1:]])
        except _Syntax as exc:
            return self._bad(tag, f"Syntax error: {exc}")
        if handler is None:
            assert self._commands is not None
            reply = self._commands(self, ImapCommand(tag, name, args, args_text))
            return reply if reply is not None else self._bad(tag, "Unknown command")
        result: ImapReply = handler(tag, args, args_text)
        return result

    def _ok(self, tag: str, text: str, code: str = "") -> ImapReply:
        return ImapReply([f"{tag} OK {'[' + code + '] ' if code else ''}{text}"])

    def _no(self, tag: str, text: str, code: str = "", **kw: object) -> ImapReply:
        return ImapReply([f"{tag} NO {'[' + code + '] ' if code else ''}{text}"], **kw)  # type: ignore[arg-type]

    def _bad(self, tag: str, text: str) -> ImapReply:
        return ImapReply([f"{tag} BAD {text}"])

    # ------------------------------------------------------------ any state

    def _cmd_capability(self, tag: str, args: list[str], raw: str) -> ImapReply:
        return ImapReply([f"* CAPABILITY {' '.join(self.capabilities())}", f"{tag} OK CAPABILITY completed"])

    def _cmd_noop(self, tag: str, args: list[str], raw: str) -> ImapReply:
        return self._ok(tag, "NOOP completed")

    def _cmd_logout(self, tag: str, args: list[str], raw: str) -> ImapReply:
        self.state = LOGOUT
        return ImapReply(["* BYE Logging out", f"{tag} OK LOGOUT completed"], close=True)

    def _cmd_id(self, tag: str, args: list[str], raw: str) -> ImapReply:
        return ImapReply(['* ID ("name" "saslkit")', f"{tag} OK ID completed"])

    # ------------------------------------------------------------ not authenticated

    def _cmd_starttls(self, tag: str, args: list[str], raw: str) -> ImapReply:
        if self.state != NOT_AUTHENTICATED or self.tls or not self.config.tls_available or args:
            return self._bad(tag, "STARTTLS not possible now")
        return ImapReply([f"{tag} OK Begin TLS negotiation now"], starttls=True)

    def _cmd_login(self, tag: str, args: list[str], raw: str) -> ImapReply:
        if self.state != NOT_AUTHENTICATED:
            return self._bad(tag, "Already authenticated")
        if len(args) != 2:
            return self._bad(tag, "Syntax: LOGIN user password")
        refusal = self.offer.refusal("PLAIN")
        self._auth_tag = tag
        if refusal is not None:
            return self._auth_reply(AuthRefused(refusal, "PLAIN"), login=True)
        if any("\x00" in a for a in args):
            self._auth_tag = ""
            return self._bad(tag, "NUL in LOGIN arguments")
        message = b"\x00" + args[0].encode() + b"\x00" + args[1].encode()  # RFC 4616 §2, no authzid
        return self._auth_reply(self.auth_engine.start("PLAIN", message, encoded=False), login=True)

    def _cmd_authenticate(self, tag: str, args: list[str], raw: str) -> ImapReply:
        if self.state != NOT_AUTHENTICATED:
            return self._bad(tag, "Already authenticated")
        words = raw.split(" ")
        if not 1 <= len(words) <= 2 or not words[0]:
            return self._bad(tag, "Syntax: AUTHENTICATE mechanism [initial-response]")
        self._auth_tag = tag
        return self._auth_reply(self.auth_engine.start(words[0], words[1] if len(words) == 2 else None))

    def _auth_line(self, line: bytes) -> ImapReply:
        if len(line) > MAX_IMAP_COMMAND_LINE:
            return self._auth_reply(self.auth_engine.abort(Abort.LINE_TOO_LONG))
        return self._auth_reply(self.auth_engine.receive(line))

    def _auth_reply(self, outcome: AuthOutcome, *, login: bool = False) -> ImapReply:
        """One engine outcome as a reply (:mod:`saslkit.imap.replies`), with its event."""
        if isinstance(outcome, Challenge):
            return ImapReply([replies.auth_reply(self._auth_tag, outcome, [])])
        tag, self._auth_tag = self._auth_tag, ""
        reply = ImapReply()
        if isinstance(outcome, Authenticated):
            self.authenticated, self.state = outcome.success, AUTHENTICATED
        if isinstance(outcome, (Authenticated, AuthFailed)):
            reply.delay, reply.close = self._attempts.settle(outcome)
        reply.lines = [replies.auth_reply(tag, outcome, self.capabilities(), login=login)]
        if reply.close:
            reply.lines.append(replies.TOO_MANY_FAILURES)
        if not isinstance(outcome, Aborted):
            reply.events.append(outcome)
        return reply

    # ------------------------------------------------------------ authenticated

    def _need_auth(self, tag: str) -> ImapReply | None:
        if self.state not in (AUTHENTICATED, SELECTED):
            return self._bad(tag, "Authenticate first")
        return None

    def _cmd_unauthenticate(self, tag: str, args: list[str], raw: str) -> ImapReply:
        if self.config.unauthenticate == "off":
            return self._bad(tag, "Unknown command")
        if self.state not in (AUTHENTICATED, SELECTED) or args:
            return self._bad(tag, "UNAUTHENTICATE is valid only when authenticated")  # RFC 8437 §3: never NO
        self._reset_state()  # mailbox closed without expunge, ENABLE and identity gone; TLS kept
        return self._ok(tag, "Unauthenticated")

    def _cmd_enable(self, tag: str, args: list[str], raw: str) -> ImapReply:
        if self.state != AUTHENTICATED or not args:
            return self._bad(tag, "ENABLE is valid in authenticated state with arguments")
        newly = [a for a in (x.upper() for x in args) if a in self.config.enableable and a not in self.enabled]
        self.enabled.update(newly)
        return ImapReply([f"* ENABLED {' '.join(newly)}".rstrip(), f"{tag} OK ENABLE completed"])

    def _select(self, tag: str, args: list[str], read_only: bool) -> ImapReply:
        denied = self._need_auth(tag)
        if denied is not None:
            return denied
        if len(args) != 1:
            return self._bad(tag, "Syntax: SELECT mailbox")
        self.selected = None
        self.state = AUTHENTICATED
        if args[0].upper() != "INBOX":
            return self._no(tag, "No such mailbox", "NONEXISTENT")
        assert self.authenticated is not None
        box = self._mailbox(self.authenticated.identity)
        self.selected, self.read_only = "INBOX", read_only
        self.state = SELECTED
        lines = [f"* {box.exists} EXISTS", "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
                 "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)] Flags permitted",
                 f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid",
                 f"* OK [UIDNEXT {box.exists + 1}] Predicted next UID",
                 '* LIST () "/" INBOX']
        if "IMAP4REV2" not in self.enabled:
            lines.insert(1, "* 0 RECENT")
        lines.append(f"{tag} OK [{'READ-ONLY' if read_only else 'READ-WRITE'}] "
                     f"{'EXAMINE' if read_only else 'SELECT'} completed")
        return ImapReply(lines)

    def _cmd_select(self, tag: str, args: list[str], raw: str) -> ImapReply:
        return self._select(tag, args, False)

    def _cmd_examine(self, tag: str, args: list[str], raw: str) -> ImapReply:
        return self._select(tag, args, True)

    def _cmd_close(self, tag: str, args: list[str], raw: str) -> ImapReply:
        if self.state != SELECTED:
            return self._bad(tag, "No mailbox selected")
        self.selected, self.state = None, AUTHENTICATED
        return self._ok(tag, "CLOSE completed")

    _cmd_unselect = _cmd_close

    def _cmd_rememberme(self, tag: str, args: list[str], raw: str) -> ImapReply:
        denied = self._need_auth(tag)
        if denied is not None:
            return denied
        if len(args) != 1 or not re.fullmatch(r"[A-Za-z0-9_-]+", args[0]):
            return self._bad(tag, "Syntax: REMEMBERME token-type")
        if self._tokens is None or not self.tls:
            return self._no(tag, "Tokens are not available on this connection", "CANNOT")
        kind = args[0].upper()
        if kind not in self.config.remember_types:
            return self._no(tag, f"Unsupported token type; use one of {' '.join(self.config.remember_types)}",
                            "CANNOT")
        assert self.authenticated is not None
        try:
            token, _ = self._tokens.mint_after(self.authenticated, kind)
        except TemporaryFailure:
            return self._no(tag, "Token store unavailable", "UNAVAILABLE")
        except UsageError:
            return self._no(tag, "Log in with a password-based mechanism to get a token", "CANNOT")
        reply = self._ok(tag, "Token created", f"REMEMBERME {encode_challenge(token.encode('utf-8'))}")
        reply.events.append(TokenMinted(kind, self.authenticated.identity))
        return reply

