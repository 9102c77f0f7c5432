"""The sans-IO IMAP session (``saslkit.imap.session``): every response rule, no sockets.

The heart is ``TABLE``: one row per rule of docs/protocol-notes.md §9 (RFC 3501/9051
§6.2.2, RFC 4959, RFC 5530, RFC 8437), each a short script of command lines
(and literal octets) with the exact completion expected after each: a tagged
``OK``/``NO``/``BAD`` with its response code, an untagged ``* BAD``, a
``+`` continuation (``"+ "`` with its space when empty) or nothing at all (a
non-synchronizing literal).  Around it: the CAPABILITY table per state, SCRAM
additional data as a ``+`` challenge answered by an empty line, LOGIN with
quoted strings and literals, UNAUTHENTICATE and its reset, pipelined
re-authentication, the RFC 9266 §4.1 tls-exporter rule, REMEMBERME, tags,
IMAP4rev1 vs IMAP4rev2 behaviour, the failure cap, the imap-auth.json
transcripts and a hypothesis test that arbitrary lines and literals never raise.

Every reply that passes through :class:`Conn` is checked for form: no CR/LF
inside a line, each line untagged (``*``), a continuation (``+ ``) or
``tag OK|NO|BAD``, response codes from RFC 5530 / RFC 9051 §7.1 (plus ours,
``REMEMBERME``), and never ``NO`` to UNAUTHENTICATE (RFC 8437 §3).

Users are SCRAM-only records (no argon2 hash), so PLAIN/LOGIN cost one PBKDF2
run at 4096 iterations and the suite stays fast.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import servers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import SEEN, DownTokenStore, DownUserStore, named_registry

from saslkit import ClientCredentials, Policy, Registry, default_registry
from saslkit.credentials import MemoryUserStore, make_user
from saslkit.imap.session import (
    AUTHENTICATED,
    MAX_IMAP_COMMAND,
    MAX_IMAP_COMMAND_LINE,
    MAX_IMAP_COMMAND_LITERAL,
    NOT_AUTHENTICATED,
    SELECTED,
    ImapConfig,
    ImapReply,
    ImapSession,
    Mailbox,
)
from saslkit.keys import KeyRing
from saslkit.mechanisms.ht import HTClient
from saslkit.penalty import AuthPenalty, MemoryPenaltyStore
from saslkit.stores.sqlite import SQLiteTokenStore
from saslkit.tokens import TokenService

SECRET = b"imap-session-test-server-secret-0123"
HOST = "imap.example.net"
PASSWORD = "pencil"
CAROL_PASSWORD = 'pen"ci\\l'  # needs both quoted-specials escaped in a quoted string


def b64(data: bytes | str | None) -> str:
    assert data is not None
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def plain(user: str = "alice", password: str = PASSWORD, authzid: str = "") -> str:
    return b64(f"{authzid}\0{user}\0{password}")


PLAIN_OK = "AUTHENTICATE PLAIN " + plain()
PLAIN_BAD = "AUTHENTICATE PLAIN " + plain(password="wrong")
SCRAM_FIRST = b64("n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")

USERS = MemoryUserStore(
    [make_user(name, PASSWORD, iterations=4096, argon2_hash=False) for name in ("alice", "bob")]
    + [make_user("test", "test", iterations=4096, argon2_hash=False)]  # RFC 4959 §4 example
    + [make_user("carol", CAROL_PASSWORD, iterations=4096, argon2_hash=False)]
)


# --------------------------------------------------------------------------- toy mechanisms


def toy_registry() -> Registry:
    """ECHO and X-SFIRST on top of the default registry; X-SFIRST's challenge names ``HOST``."""
    return servers.toy_registry(HOST)


# --------------------------------------------------------------------------- reply form

#: RFC 5530 codes, the RFC 9051 §7.1 codes we use, and ours (REMEMBERME, session.py docstring).
KNOWN_CODES = {"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED", "PRIVACYREQUIRED", "CONTACTADMIN",
               "UNAVAILABLE", "CANNOT", "CAPABILITY", "REMEMBERME", "READ-ONLY", "READ-WRITE", "NONEXISTENT",
               "PERMANENTFLAGS", "UIDVALIDITY", "UIDNEXT"}
_TAGGED = re.compile(r"(?P<tag>\S+) (?P<status>OK|NO|BAD) (?:\[(?P<code>[A-Z0-9-]+)(?: [^\]]*)?\] )?\S")
_UNTAGGED = re.compile(r"\* \S")


def check_form(lines: list[str]) -> None:
    for line in lines:
        assert "\r" not in line and "\n" not in line, line
        if line.startswith("+ ") or line == "+ ":
            continue
        if _UNTAGGED.match(line):
            m = re.match(r"\* (OK|NO|BAD|BYE) \[([A-Z0-9-]+)", line)
            assert m is None or m.group(2) in KNOWN_CODES, line
            continue
        m = _TAGGED.match(line)
        assert m, f"not an IMAP response line: {line!r}"
        assert m.group("code") is None or m.group("code") in KNOWN_CODES, line


def outcome(lines: list[str]) -> str:
    """The line that completes a command: the tagged one or the continuation; else the last untagged."""
    for line in lines:
        if not line.startswith("* "):
            return line
    return lines[-1]


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class Lit:
    """Literal octets, handed to ``receive_literal`` after a ``{N}``/``{N+}`` line."""

    data: bytes


EMPTY = "+ "  # the empty continuation: exactly "+" SP (RFC 4959 §4, RFC 9051 §9 continue-req)
CONT = "+"  # any non-empty continuation ("+ " then text or base64)


class Conn:
    """Drives one session like a server would and checks the form of every reply."""

    def __init__(self, session: ImapSession) -> None:
        self.session = session
        greeting = session.greeting().lines
        check_form(greeting)
        assert len(greeting) == 1 and greeting[0].startswith("* OK [CAPABILITY ")

    def send(self, line: str | bytes | Lit) -> ImapReply:
        if isinstance(line, Lit):
            reply = self.session.receive_literal(line.data)
        else:
            raw = line.encode("utf-8") if isinstance(line, str) else line
            reply = self.session.receive_line(raw + b"\r\n")
        assert isinstance(reply, ImapReply)
        check_form(reply.lines)
        if isinstance(line, str) and re.match(r"\S+ UNAUTHENTICATE\b", line, re.IGNORECASE):
            assert " NO " not in outcome(reply.lines), "RFC 8437 §3: a NO response is not permitted"
        return reply

    def lines(self, line: str | bytes | Lit) -> list[str]:
        return self.send(line).lines

    def expect(self, line: str | bytes | Lit, want: str | None) -> list[str]:
        """``want``: EMPTY, CONT, None (no reply at all) or the start of the completing line."""
        lines = self.lines(line)
        if want is None:
            assert lines == [], f"{line!r} -> {lines}"
            return lines
        assert lines, f"no reply to {line!r}"
        got = outcome(lines)
        if want == EMPTY:
            assert got == EMPTY, f"{line!r} -> {lines}"
        elif want == CONT:
            assert got.startswith("+ ") and len(got) > 2, f"{line!r} -> {lines}"
        else:
            assert got.startswith(want), f"{line!r} -> {lines}"
        return lines

    def capabilities(self) -> list[str]:
        lines = self.expect("cap CAPABILITY", "cap OK")
        (untagged,) = [x for x in lines if x.startswith("* CAPABILITY ")]
        return untagged.split()[2:]

    def login(self, user: str = "alice", tag: str = "L1") -> list[str]:
        return self.expect(f"{tag} AUTHENTICATE PLAIN " + plain(user), f"{tag} OK [CAPABILITY ")


class CountingMailbox:
    """SELECT's mailbox source: fixed counts, and who asked."""

    def __init__(self, exists: int = 0) -> None:
        self.exists = exists
        self.asked: list[str] = []

    def __call__(self, user: str) -> Mailbox:
        self.asked.append(user)
        return Mailbox(self.exists, uidvalidity=7)


@dataclass
class Env:
    ring: KeyRing
    store: SQLiteTokenStore
    tokens: TokenService
    mailbox: CountingMailbox = field(default_factory=CountingMailbox)

    def session(
        self,
        *,
        tls: bool = True,
        users: Any = USERS,
        tokens: TokenService | bool | None = True,
        channel_bindings: dict[str, bytes] | None = None,
        **config: Any,
    ) -> ImapSession:
        config.setdefault("hostname", HOST)
        config.setdefault("failure_delay", 0)
        config.setdefault("tls_available", True)
        return ImapSession(
            ImapConfig(**config), users, SECRET,
            tokens=self.tokens if tokens is True else (tokens or None),
            tls=tls, channel_bindings=channel_bindings, mailbox=self.mailbox, peer="192.0.2.1",
        )

    def conn(self, **kw: Any) -> Conn:
        return Conn(self.session(**kw))


def make_env(directory: Path) -> Env:
    ring = KeyRing.open(directory / "k.keys", quiet=True)
    store = SQLiteTokenStore(directory / "t.db")
    return Env(ring, store, TokenService(store, ring))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path)
    yield e
    e.store.close()


# --------------------------------------------------------------------------- the response-rule table

Step = tuple[str | bytes | Lit, str | None]
LOGIN: Step = ("L1 " + PLAIN_OK, "L1 OK [CAPABILITY ")
SELECT: Step = ("S1 SELECT INBOX", "S1 OK [READ-WRITE]")


@dataclass
class Row:
    """One scripted conversation: each step is (line or literal, expected completion)."""

    id: str
    steps: list[Step]
    options: dict[str, Any] = field(default_factory=dict)


BAD_B64_IR = ["=AAA", "AAA=BBB", "!!!!", "QQ", "QR==", "==", "QUFB*", "QUFB\u00e9"]
BAD_B64_CONTINUATION: list[str | bytes] = ["=AAA", "AAA=BBB", "!!!!", "QQ", "QR==", "=", "QUFB QUFB", " QUFB",
                                           b"\xff\xfe\xfd\xfc"]

TABLE: list[Row] = [
    # ---- AUTHENTICATE with and without SASL-IR (RFC 4959 §3, RFC 9051 §6.2.2)
    Row("sasl-ir", [("a " + PLAIN_OK, "a OK [CAPABILITY ")]),
    Row("sasl-ir-case-insensitive", [("a authenticate plain " + plain(), "a OK [CAPABILITY ")]),
    Row("no-ir-empty-continuation", [("a AUTHENTICATE PLAIN", EMPTY), (plain(), "a OK [CAPABILITY ")]),
    Row("empty-ir-equals-plain", [("a AUTHENTICATE PLAIN =", "a NO [AUTHENTICATIONFAILED]")]),
    Row("empty-ir-equals-toy", [("a AUTHENTICATE ECHO =", "a OK [CAPABILITY ")], {"registry": "toy"}),
    Row("empty-continuation-toy", [("a AUTHENTICATE ECHO", EMPTY), ("", "a OK [CAPABILITY ")],
        {"registry": "toy"}),
    Row("scram-no-ir", [("a AUTHENTICATE SCRAM-SHA-256", EMPTY), (SCRAM_FIRST, CONT)]),
    Row("scram-ir", [("a AUTHENTICATE SCRAM-SHA-256 " + SCRAM_FIRST, CONT)]),
    Row("server-first-ir", [("a AUTHENTICATE X-SFIRST " + b64("hello"), "a BAD")], {"registry": "toy"}),
    Row("server-first-empty-ir", [("a AUTHENTICATE X-SFIRST =", "a BAD")], {"registry": "toy"}),
    Row("server-first-no-ir", [("a AUTHENTICATE X-SFIRST", CONT), (b64("digest"), "a OK [CAPABILITY ")],
        {"registry": "toy"}),
    Row("large-ir", [("a AUTHENTICATE ECHO " + b64(b"x" * 12000), "a OK")], {"registry": "toy"}),  # RFC 4959 §6
    # ---- "*" cancels: tagged BAD (RFC 9051 §6.2.2)
    Row("cancel-no-ir", [("a AUTHENTICATE PLAIN", EMPTY), ("*", "a BAD"), ("b " + PLAIN_OK, "b OK")]),
    Row("cancel-mid-scram", [("a AUTHENTICATE SCRAM-SHA-256 " + SCRAM_FIRST, CONT), ("*", "a BAD"),
                             ("b " + PLAIN_OK, "b OK [CAPABILITY ")]),
    Row("star-as-ir-is-bad-base64", [("a AUTHENTICATE PLAIN *", "a BAD")]),
    # ---- bad base64: tagged BAD, initial response and continuation alike
    *[Row(f"bad-base64-ir-{i}", [("a AUTHENTICATE PLAIN " + bad, "a BAD"), ("b " + PLAIN_OK, "b OK")])
      for i, bad in enumerate(BAD_B64_IR)],
    *[Row(f"bad-base64-continuation-{i}", [("a AUTHENTICATE PLAIN", EMPTY), (bad, "a BAD"), ("b NOOP", "b OK")])
      for i, bad in enumerate(BAD_B64_CONTINUATION)],
    # ---- credentials rejected: NO [AUTHENTICATIONFAILED] (RFC 5530)
    Row("wrong-password", [("a " + PLAIN_BAD, "a NO [AUTHENTICATIONFAILED]")]),
    Row("wrong-password-no-ir", [("a AUTHENTICATE PLAIN", EMPTY),
                                 (plain(password="x"), "a NO [AUTHENTICATIONFAILED]")]),
    Row("unknown-user", [("a AUTHENTICATE PLAIN " + plain("mallory"), "a NO [AUTHENTICATIONFAILED]")]),
    Row("failure-then-success", [("a " + PLAIN_BAD, "a NO [AUTHENTICATIONFAILED]"), ("b " + PLAIN_OK, "b OK")]),
    Row("toy-failure", [("a AUTHENTICATE ECHO " + b64("fail"), "a NO [AUTHENTICATIONFAILED]")], {"registry": "toy"}),
    # ---- store failure: NO [UNAVAILABLE] (RFC 5530: temporary)
    Row("store-down-plain", [("a " + PLAIN_OK, "a NO [UNAVAILABLE]")], {"users": "down"}),
    Row("store-down-scram", [("a AUTHENTICATE SCRAM-SHA-256 " + SCRAM_FIRST, "a NO [UNAVAILABLE]")],
        {"users": "down"}),
    Row("store-down-login", [("a LOGIN alice pencil", "a NO [UNAVAILABLE]")], {"users": "down"}),
    # ---- authzid refused: NO [AUTHORIZATIONFAILED] (RFC 5530); authzid = authcid is fine
    Row("authzid-refused", [("a AUTHENTICATE PLAIN " + plain(authzid="bob"), "a NO [AUTHORIZATIONFAILED]")]),
    Row("authzid-self", [("a AUTHENTICATE PLAIN " + plain(authzid="alice"), "a OK [CAPABILITY ")]),
    # ---- mechanism unknown: NO [CANNOT]; refused here by policy: NO [PRIVACYREQUIRED] (session.py docstring)
    Row("unknown-mechanism", [("a AUTHENTICATE X-UNKNOWN", "a NO [CANNOT]")]),
    Row("unknown-mechanism-ir", [("a AUTHENTICATE CRAM-MD5 =", "a NO [CANNOT]")]),
    Row("invalid-mechanism-name", [("a AUTHENTICATE PL@IN", "a NO [CANNOT]")]),
    Row("external-not-implemented", [("a AUTHENTICATE EXTERNAL =", "a NO [CANNOT]")]),
    Row("stoken-not-offered-in-imap", [("a AUTHENTICATE STOKEN " + b64("alice@x\0y"), "a NO [CANNOT]")]),
    Row("plain-without-tls", [("a " + PLAIN_OK, "a NO [PRIVACYREQUIRED]"), ("b AUTHENTICATE PLAIN",
                                                                            "b NO [PRIVACYREQUIRED]")],
        {"tls": False}),
    Row("token-mech-without-tls", [("a AUTHENTICATE REMEMBERME " + b64("sk1.x.y"), "a NO [PRIVACYREQUIRED]")],
        {"tls": False}),
    Row("plain-without-tls-allowed", [("a " + PLAIN_OK, "a OK [CAPABILITY ")],
        {"tls": False, "allow_plaintext_auth": True}),
    Row("scram-without-tls", [("a AUTHENTICATE SCRAM-SHA-256 " + SCRAM_FIRST, CONT)], {"tls": False}),
    # ---- AUTHENTICATE syntax and state
    Row("authenticate-no-mechanism", [("a AUTHENTICATE", "a BAD")]),
    Row("authenticate-two-arguments", [("a AUTHENTICATE PLAIN " + plain() + " x", "a BAD")]),
    Row("authenticate-after-auth", [LOGIN, ("b " + PLAIN_OK, "b BAD"), ("c AUTHENTICATE SCRAM-SHA-256", "c BAD"),
                                    ("d LOGIN alice pencil", "d BAD")]),
    Row("authenticate-in-selected", [LOGIN, SELECT, ("b " + PLAIN_OK, "b BAD")]),
    Row("continuation-too-long", [("a AUTHENTICATE PLAIN", EMPTY), ("A" * (MAX_IMAP_COMMAND_LINE + 4), "a BAD"),
                                  ("b NOOP", "b OK")]),
    # ---- LOGIN: atoms, quoted strings (with escapes), literals (RFC 9051 §4.3), LITERAL+ (RFC 7888)
    Row("login-atoms", [("a LOGIN alice pencil", "a OK [CAPABILITY ")]),
    Row("login-quoted", [('a LOGIN "alice" "pencil"', "a OK [CAPABILITY ")]),
    Row("login-quoted-escapes", [('a LOGIN carol "pen\\"ci\\\\l"', "a OK [CAPABILITY ")]),
    Row("login-quoted-bad-escape", [('a LOGIN alice "pen\\cil"', "a BAD")]),
    Row("login-quoted-unterminated", [('a LOGIN alice "pencil', "a BAD")]),
    Row("login-sync-literal", [("a LOGIN {5}", CONT), (Lit(b"alice"), None), (" pencil", "a OK [CAPABILITY ")]),
    Row("login-sync-literal-password", [("a LOGIN alice {6}", CONT), (Lit(b"pencil"), None),
                                        ("", "a OK [CAPABILITY ")]),
    Row("login-two-sync-literals", [("a LOGIN {5}", CONT), (Lit(b"carol"), None), (" {8}", CONT),
                                    (Lit(CAROL_PASSWORD.encode()), None), ("", "a OK [CAPABILITY ")]),
    Row("login-literal-plus", [("a LOGIN {5+}", None), (Lit(b"alice"), None), (" {6+}", None),
                               (Lit(b"pencil"), None), ("", "a OK [CAPABILITY ")]),
    Row("login-literal-wrong-password", [("a LOGIN {5+}", None), (Lit(b"alice"), None),
                                         (' "nope"', "a NO [AUTHENTICATIONFAILED]")]),
    Row("login-literal-not-utf8", [("a LOGIN {2}", CONT), (Lit(b"\xff\xfe"), None), (" pencil", "a BAD")]),
    Row("login-literal-nul", [("a LOGIN {3}", CONT), (Lit(b"a\0b"), None), (" pencil", "a BAD")]),
    # a refused synchronizing literal gets a BAD tagged like its command, so the client sends no more of it
    # (RFC 9051 §2.2.2); a refused non-synchronizing one is already on its way: BYE, not commands from its octets
    Row("login-literal-too-large", [(f"a LOGIN {{{MAX_IMAP_COMMAND_LITERAL + 1}}}", "a BAD"), ("b NOOP", "b OK")]),
    Row("login-second-literal-too-large", [("a LOGIN {5}", CONT), (Lit(b"alice"), None),
                                           (f" {{{MAX_IMAP_COMMAND_LITERAL + 1}}}", "a BAD"), ("b NOOP", "b OK")]),
    Row("literal-too-large-bad-tag", [(f"a% LOGIN {{{MAX_IMAP_COMMAND_LITERAL + 1}}}", "* BAD"), ("b NOOP", "b OK")]),
    Row("literal-before-invalid-utf8", [(b"a LOGIN \xff {5}", "a BAD"), ("b NOOP", "b OK")]),
    Row("literal-plus-too-large", [(f"a LOGIN {{{MAX_IMAP_COMMAND_LITERAL + 1}+}}", "* BYE")]),
    Row("literal-max-size", [(f"a LOGIN {{{MAX_IMAP_COMMAND_LITERAL}+}}", None),
                             (Lit(b"a" * MAX_IMAP_COMMAND_LITERAL), None), (" pencil", "a NO [AUTHENTICATIONFAILED]")]),
    Row("login-wrong-password", [("a LOGIN alice nope", "a NO [AUTHENTICATIONFAILED]")]),
    Row("login-unknown-user-rfc9051", [('b LOGIN "fred" "foo"', "b NO [AUTHENTICATIONFAILED]")]),
    Row("login-syntax-one-argument", [("a LOGIN alice", "a BAD")]),
    Row("login-syntax-three-arguments", [("a LOGIN alice pencil x", "a BAD")]),
    Row("login-disabled-without-tls", [("a LOGIN alice pencil", "a NO [PRIVACYREQUIRED]"),
                                       ("b LOGIN {5+}", None), (Lit(b"alice"), None),
                                       (" pencil", "b NO [PRIVACYREQUIRED]")], {"tls": False}),
    Row("login-allowed-without-tls-when-configured", [("a LOGIN alice pencil", "a OK")],
        {"tls": False, "allow_plaintext_auth": True}),
    # ---- UNAUTHENTICATE: OK or BAD, never NO (RFC 8437 §3; Conn checks "never NO" on every row)
    Row("unauthenticate-before-auth", [("a UNAUTHENTICATE", "a BAD")]),
    Row("unauthenticate-after-auth", [LOGIN, ("b UNAUTHENTICATE", "b OK"), ("c SELECT INBOX", "c BAD"),
                                      ("d LOGIN bob pencil", "d OK [CAPABILITY ")]),
    Row("unauthenticate-from-selected", [LOGIN, SELECT, ("b UNAUTHENTICATE", "b OK"), ("c CLOSE", "c BAD"),
                                         ("d " + PLAIN_OK, "d OK")]),
    Row("unauthenticate-twice", [LOGIN, ("b UNAUTHENTICATE", "b OK"), ("c UNAUTHENTICATE", "c BAD")]),
    Row("unauthenticate-with-argument", [LOGIN, ("b UNAUTHENTICATE now", "b BAD"), ("c NOOP", "c OK")]),
    Row("unauthenticate-lowercase", [LOGIN, ("b unauthenticate", "b OK")]),
    Row("unauthenticate-off", [("a UNAUTHENTICATE", "a BAD"), LOGIN, ("b UNAUTHENTICATE", "b BAD"),
                               ("c SELECT INBOX", "c OK")], {"unauthenticate": "off"}),
    Row("unauthenticate-after-auth-mode", [("a UNAUTHENTICATE", "a BAD"), LOGIN, ("b UNAUTHENTICATE", "b OK")],
        {"unauthenticate": "after-auth"}),
    Row("unauthenticate-then-wrong-password", [LOGIN, ("b UNAUTHENTICATE", "b OK"),
                                               ("c " + PLAIN_BAD, "c NO [AUTHENTICATIONFAILED]"),
                                               ("d SELECT INBOX", "d BAD")]),
    # ---- REMEMBERME (ours, by analogy with draft-melnikov-smtp-rememberme-00; session.py docstring)
    Row("rememberme-before-auth", [("a REMEMBERME RANDOM", "a BAD")]),
    Row("rememberme-random", [LOGIN, ("b REMEMBERME RANDOM", "b OK [REMEMBERME ")]),
    Row("rememberme-jwt-lowercase", [LOGIN, ("b REMEMBERME jwt", "b OK [REMEMBERME ")]),
    Row("rememberme-in-selected", [LOGIN, SELECT, ("b REMEMBERME RANDOM", "b OK [REMEMBERME ")]),
    Row("rememberme-unknown-type", [LOGIN, ("b REMEMBERME FOO", "b NO [CANNOT]"),
                                    ("c REMEMBERME OAUTH", "c NO [CANNOT]")]),
    Row("rememberme-syntax", [LOGIN, ("b REMEMBERME", "b BAD"), ("c REMEMBERME RANDOM JWT", "c BAD"),
                              ("d REMEMBERME RANDOM=1", "d BAD")]),
    Row("rememberme-store-down", [LOGIN, ("b REMEMBERME RANDOM", "b NO [UNAVAILABLE]"),
                                  ("c REMEMBERME JWT", "c NO [UNAVAILABLE]")], {"tokens": "down"}),
    Row("rememberme-without-tls", [LOGIN, ("b REMEMBERME RANDOM", "b NO [CANNOT]")],
        {"tls": False, "allow_plaintext_auth": True}),
    Row("rememberme-without-token-service", [LOGIN, ("b REMEMBERME RANDOM", "b NO [CANNOT]")], {"tokens": False}),
    # ---- tags (RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">): a line without one gets "* BAD"
    Row("tag-missing-empty-line", [("", "* BAD"), ("a NOOP", "a OK")]),
    Row("tag-missing-leading-space", [(" NOOP", "* BAD")]),
    *[Row(f"tag-invalid-{i}", [(f"{tag} NOOP", "* BAD"), ("a NOOP", "a OK")])
      for i, tag in enumerate(["+", "a+b", "a%", "a*", "(a", "a)", "a{", '"a"', "a\\b", "\u00e9t\u00e9", "\x01"])],
    Row("tag-invalid-utf8", [(b"\xff\xfe NOOP", "* BAD")]),
    *[Row(f"tag-valid-{i}", [(f"{tag} NOOP", f"{tag} OK")])
      for i, tag in enumerate(["a}", "A]1", "~!#$&'", "a.b-c_d", "000"])],
    Row("tag-only", [("a", "a BAD")]),
    Row("unknown-command", [("a FOO", "a BAD"), ("b SEARCH ALL", "b BAD"), ("c NO-OP", "c BAD")]),
    Row("line-too-long", [("a NOOP " + "x" * MAX_IMAP_COMMAND_LINE, "* BAD"), ("b NOOP", "b OK")]),
    # ---- any state / simple commands
    Row("noop-id-capability", [("a NOOP", "a OK"), ('b ID ("name" "test")', "b OK"), ("c CAPABILITY", "c OK")]),
    Row("select-before-auth", [("a SELECT INBOX", "a BAD"), ("b EXAMINE INBOX", "b BAD"), ("c ENABLE X", "c BAD")]),
    Row("select-examine-close", [LOGIN, SELECT, ("b EXAMINE inbox", "b OK [READ-ONLY]"), ("c CLOSE", "c OK"),
                                 ("d CLOSE", "d BAD"), ("e SELECT INBOX", "e OK"), ("f UNSELECT", "f OK")]),
    Row("select-nonexistent", [LOGIN, ("b SELECT Trash", "b NO [NONEXISTENT]"), ("c CLOSE", "c BAD")]),
    Row("enable-in-selected-is-bad", [LOGIN, SELECT, ("b ENABLE IMAP4rev2", "b BAD")]),
    Row("starttls-after-tls", [("a STARTTLS", "a BAD")]),
    Row("starttls-unavailable", [("a STARTTLS", "a BAD")], {"tls": False, "tls_available": False}),
    Row("starttls-after-auth", [("a LOGIN alice pencil", "a OK"), ("b STARTTLS", "b BAD")],
        {"tls": False, "allow_plaintext_auth": True}),
]


def conn_for(env: Env, options: dict[str, Any]) -> Conn:
    opts = dict(options)
    users = {"down": DownUserStore()}.get(opts.pop("users", ""), USERS)
    if opts.pop("registry", None) == "toy":
        opts["registry"] = toy_registry()
    if opts.get("tokens") == "down":
        opts["tokens"] = TokenService(DownTokenStore(), env.ring)
    return env.conn(users=users, **opts)


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in TABLE])
def test_response_rule_table(env: Env, row: Row) -> None:
    conn = conn_for(env, row.options)
    for line, want in row.steps:
        conn.expect(line, want)


def test_table_covers_every_response_rule() -> None:
    """Each completion docs/protocol-notes.md §9 names appears in the table at least once."""
    wants = {want for row in TABLE for _, want in row.steps if want}
    required = ["a OK [CAPABILITY ", "a BAD", "* BAD", EMPTY, CONT, "a NO [AUTHENTICATIONFAILED]",
                "a NO [AUTHORIZATIONFAILED]", "a NO [UNAVAILABLE]", "a NO [CANNOT]", "a NO [PRIVACYREQUIRED]",
                "b OK [REMEMBERME ", "b NO [CANNOT]", "b NO [UNAVAILABLE]", "b OK"]
    assert set(required) <= wants
    assert any(want is None for row in TABLE for _, want in row.steps)  # LITERAL+ and literal octets


# --------------------------------------------------------------------------- CAPABILITY per state

EXPORTER = {"tls-exporter": b"\x21" * 32}
ENDPOINT = {"tls-server-end-point": b"\x11" * 32}


@dataclass
class CapCase:
    id: str
    options: dict[str, Any]
    present: set[str]
    absent: set[str]
    authenticate: bool = False


CAP_CASES = [
    CapCase("cleartext-before-starttls", {"tls": False},
            {"IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ENABLE", "ID", "STARTTLS", "LOGINDISABLED",
             "AUTH=SCRAM-SHA-256", "AUTH=SCRAM-SHA-1", "AUTH=SCRAM-SHA-512", "UNAUTHENTICATE"},
            {"AUTH=PLAIN", "AUTH=SCRAM-SHA-256-PLUS", "AUTH=REMEMBERME", "AUTH=HT2-SHA-256-NONE", "AUTH=STOKEN",
             "REMEMBERME=RANDOM", "REMEMBERME=JWT"}),
    CapCase("cleartext-no-starttls", {"tls": False, "tls_available": False},
            {"LOGINDISABLED", "SASL-IR"}, {"STARTTLS", "AUTH=PLAIN"}),
    CapCase("cleartext-plaintext-allowed", {"tls": False, "allow_plaintext_auth": True},
            {"AUTH=PLAIN", "STARTTLS"}, {"LOGINDISABLED", "REMEMBERME=RANDOM", "REMEMBERME=JWT"}),
    CapCase("tls", {},
            {"SASL-IR", "AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "AUTH=REMEMBERME", "AUTH=HT2-SHA-256-NONE",
             "AUTH=HT-SHA-256-NONE", "UNAUTHENTICATE", "REMEMBERME=RANDOM", "REMEMBERME=JWT"},
            {"STARTTLS", "LOGINDISABLED", "AUTH=SCRAM-SHA-256-PLUS", "AUTH=STOKEN", "AUTH=HT2-SHA-256-ENDP"}),
    # Only tls-server-end-point verifiable (the stdlib's TLS 1.3): SCRAM-*-PLUS only if opted into (issue 11).
    CapCase("tls-end-point-binding", {"channel_bindings": ENDPOINT},
            {"AUTH=HT2-SHA-256-ENDP", "AUTH=SCRAM-SHA-256"},
            {"AUTH=SCRAM-SHA-256-PLUS", "AUTH=SCRAM-SHA-1-PLUS", "AUTH=HT2-SHA-256-EXPR", "AUTH=HT-SHA-256-UNIQ"}),
    CapCase("tls-end-point-binding-plus-opted-in",
            {"channel_bindings": ENDPOINT, "policy": Policy(plus_with_end_point=True)},
            {"AUTH=SCRAM-SHA-256-PLUS", "AUTH=SCRAM-SHA-1-PLUS", "AUTH=HT2-SHA-256-ENDP"},
            {"AUTH=HT2-SHA-256-EXPR", "AUTH=HT-SHA-256-UNIQ"}),
    CapCase("tls-exporter-and-end-point-binding", {"channel_bindings": {**EXPORTER, **ENDPOINT}},
            {"AUTH=SCRAM-SHA-256-PLUS", "AUTH=SCRAM-SHA-1-PLUS", "AUTH=HT2-SHA-256-ENDP", "AUTH=HT2-SHA-256-EXPR"},
            {"AUTH=HT-SHA-256-UNIQ"}),
    CapCase("tls-exporter-binding", {"channel_bindings": EXPORTER},
            {"AUTH=SCRAM-SHA-256-PLUS", "AUTH=HT2-SHA-256-EXPR"}, {"AUTH=HT2-SHA-256-ENDP"}),
    CapCase("tls-without-token-service", {"tokens": False},
            {"AUTH=PLAIN", "AUTH=SCRAM-SHA-256"},
            {"REMEMBERME=RANDOM", "REMEMBERME=JWT", "AUTH=REMEMBERME", "AUTH=HT2-SHA-256-NONE"}),
    CapCase("tls-one-token-type", {"remember_types": ("RANDOM",)}, {"REMEMBERME=RANDOM"}, {"REMEMBERME=JWT"}),
    CapCase("policy-denies", {"policy": Policy(denied=frozenset({"SCRAM-SHA-1", "plain"}))},
            {"AUTH=SCRAM-SHA-256"}, {"AUTH=SCRAM-SHA-1", "AUTH=PLAIN"}),
    CapCase("unauthenticate-after-auth-mode-before", {"unauthenticate": "after-auth"}, set(), {"UNAUTHENTICATE"}),
    CapCase("unauthenticate-after-auth-mode-after", {"unauthenticate": "after-auth"}, {"UNAUTHENTICATE"}, set(),
            authenticate=True),
    CapCase("unauthenticate-off-before", {"unauthenticate": "off"}, set(), {"UNAUTHENTICATE"}),
    CapCase("unauthenticate-off-after", {"unauthenticate": "off"}, set(), {"UNAUTHENTICATE"}, authenticate=True),
    CapCase("authenticated", {},
            {"IMAP4rev1", "IMAP4rev2", "SASL-IR", "UNAUTHENTICATE", "REMEMBERME=RANDOM", "REMEMBERME=JWT"},
            {"STARTTLS", "LOGINDISABLED", "AUTH=PLAIN", "AUTH=SCRAM-SHA-256"}, authenticate=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CAP_CASES])
def test_capabilities_per_state(env: Env, case: CapCase) -> None:
    conn = env.conn(**case.options)
    if case.authenticate:
        (first,) = conn.login()  # the tagged OK's [CAPABILITY ...]
    else:
        (first,) = conn.session.greeting().lines  # the greeting's [CAPABILITY ...]
    m = re.match(r"\S+ OK \[CAPABILITY ([^\]]*)\]", first)
    assert m, first
    seen = [m.group(1).split()]
    seen.append(conn.capabilities())
    for caps in seen:
        assert len(caps) == len(set(caps)), caps
        assert case.present <= set(caps), case.present - set(caps)
        assert not case.absent & set(caps), case.absent & set(caps)


def test_capability_order_and_exact_list_after_tls(env: Env) -> None:
    caps = env.conn(remember_types=("RANDOM", "JWT")).capabilities()
    assert caps[:6] == ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "ENABLE", "ID", "SASL-IR"]
    auth = [c[5:] for c in caps if c.startswith("AUTH=")]
    assert auth == [m for m in default_registry().offered(tls=True) if m != "STOKEN"]  # strongest first
    assert caps[-3:] == ["UNAUTHENTICATE", "REMEMBERME=RANDOM", "REMEMBERME=JWT"]


def test_starttls_changes_capabilities(env: Env) -> None:
    conn = env.conn(tls=False)
    assert "STARTTLS" in conn.capabilities()
    reply = conn.send("a STARTTLS")
    assert reply.lines == ["a OK Begin TLS negotiation now"] and reply.starttls
    conn.session.tls_started({**EXPORTER, **ENDPOINT})
    caps = conn.capabilities()
    assert {"AUTH=PLAIN", "AUTH=SCRAM-SHA-256-PLUS", "REMEMBERME=RANDOM"} <= set(caps)
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    conn.login()


# --------------------------------------------------------------------------- exact wire forms


def test_empty_continuation_is_plus_space(env: Env) -> None:
    conn = env.conn()
    reply = conn.send("a AUTHENTICATE PLAIN")
    assert reply.lines == ["+ "] and reply.wire() == b"+ \r\n"  # RFC 4959 §4: "+" SP


def test_equals_sign_is_an_empty_initial_response(env: Env) -> None:
    conn = env.conn(registry=toy_registry())
    SEEN.clear()
    conn.expect("a AUTHENTICATE ECHO =", "a OK")
    assert SEEN == [b""]  # "=" is a zero-length response, not "no response" (RFC 4959 §3)
    SEEN.clear()
    conn = env.conn(registry=toy_registry())
    conn.expect("a AUTHENTICATE ECHO", EMPTY)
    conn.expect("", "a OK")
    assert SEEN == [None, b""]


def test_tagged_ok_carries_the_new_capabilities(env: Env) -> None:
    conn = env.conn()
    (ok,) = conn.login()
    caps = re.fullmatch(r"L1 OK \[CAPABILITY ([^\]]*)\] .+", ok).group(1).split()  # type: ignore[union-attr]
    assert caps == conn.capabilities()
    assert "UNAUTHENTICATE" in caps and not any(c.startswith("AUTH=") for c in caps)


def test_login_ok_carries_capabilities_too(env: Env) -> None:
    conn = env.conn()
    conn.expect('a LOGIN "alice" {6+}', None)
    conn.expect(Lit(b"pencil"), None)
    (ok,) = conn.expect("", "a OK [CAPABILITY IMAP4rev1 ")
    assert "UNAUTHENTICATE" in ok and "AUTH=" not in ok
    assert conn.session.authenticated is not None and conn.session.authenticated.identity == "alice"


def test_literal_reply_fields(env: Env) -> None:
    conn = env.conn()
    reply = conn.send("a LOGIN {5}")
    assert reply.literal == 5 and reply.lines == ["+ Ready for literal data"]
    assert conn.send(Lit(b"alice")).lines == []
    assert conn.send(" pencil").literal is None
    reply = conn.send("b NOOP {3+}")
    assert reply.literal == 3 and reply.lines == []  # LITERAL+ (RFC 7888): no continuation


def test_login_literal_keeps_spaces_and_quotes(env: Env) -> None:
    """A literal is taken verbatim: no unquoting, spaces kept."""
    users = MemoryUserStore([make_user("d e", 'p "q" r', iterations=4096, argon2_hash=False)])
    conn = env.conn(users=users)
    conn.expect("a LOGIN {3}", CONT)
    conn.expect(Lit(b"d e"), None)
    conn.expect(" {7}", CONT)
    conn.expect(Lit(b'p "q" r'), None)
    conn.expect("", "a OK [CAPABILITY ")
    assert conn.session.authenticated is not None and conn.session.authenticated.identity == "d e"


# --------------------------------------------------------------------------- SCRAM, additional data, authzid


def scram_exchange(
    conn: Conn, mech: str = "SCRAM-SHA-256", password: str = PASSWORD, *, tag: str = "a",
    authzid: str | None = None, channel_binding: tuple[str, bytes] | None = None,
) -> tuple[Any, list[str]]:
    """AUTHENTICATE with SASL-IR, answer server-first; returns the client and the reply to client-final."""
    creds = ClientCredentials("alice", password, authzid=authzid, channel_binding=channel_binding,
                              server_offers_plus=True)
    client = default_registry().client(mech, creds)
    lines = conn.expect(f"{tag} AUTHENTICATE {mech} " + b64(client.start()), CONT)
    lines = conn.lines(b64(client.step(base64.b64decode(lines[0][2:]))))
    return client, lines


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_additional_data_as_continuation_then_empty_line(env: Env, mech: str) -> None:
    conn = env.conn()
    client, lines = scram_exchange(conn, mech)
    (line,) = lines  # RFC 9051 §6.2.2: no additional data with success; v= comes as "+ <base64>"
    assert line.startswith("+ ")
    verifier = base64.b64decode(line[2:], validate=True)
    assert verifier.startswith(b"v=")
    client.finish(verifier)  # the server proved itself
    assert conn.session.authenticated is None and conn.session.state == NOT_AUTHENTICATED
    conn.expect("", "a OK [CAPABILITY ")  # answered by an empty line
    assert conn.session.authenticated is not None and conn.session.authenticated.identity == "alice"
    assert conn.session.authenticated.mechanism == mech and conn.session.state == AUTHENTICATED


def test_scram_additional_data_non_empty_answer_fails(env: Env) -> None:
    conn = env.conn()
    scram_exchange(conn)
    conn.expect(b64("not empty"), "a NO [AUTHENTICATIONFAILED]")
    assert conn.session.authenticated is None


def test_scram_additional_data_cancel_and_bad_base64(env: Env) -> None:
    conn = env.conn()
    scram_exchange(conn)
    conn.expect("*", "a BAD")
    assert conn.session.authenticated is None
    scram_exchange(conn, tag="b")
    conn.expect("!!", "b BAD")
    assert conn.session.authenticated is None
    conn.login()


def test_scram_wrong_password(env: Env) -> None:
    conn = env.conn()
    _, lines = scram_exchange(conn, password="wrong")
    assert outcome(lines).startswith("a NO [AUTHENTICATIONFAILED]")


def test_scram_authzid_refused(env: Env) -> None:
    conn = env.conn()
    _, lines = scram_exchange(conn, authzid="bob")
    assert outcome(lines).startswith("a NO [AUTHORIZATIONFAILED]")


def test_scram_plus_with_tls_server_end_point(env: Env) -> None:
    conn = env.conn(channel_bindings={**EXPORTER, **ENDPOINT})  # advertised for tls-exporter, bound to either
    client, lines = scram_exchange(conn, "SCRAM-SHA-256-PLUS",
                                   channel_binding=("tls-server-end-point", ENDPOINT["tls-server-end-point"]))
    client.finish(base64.b64decode(lines[0][2:]))
    conn.expect("", "a OK [CAPABILITY ")


# --------------------------------------------------------------------------- UNAUTHENTICATE (RFC 8437)


def test_unauthenticate_resets_everything_but_tls(env: Env) -> None:
    env.mailbox.exists = 3
    conn = env.conn(channel_bindings={**EXPORTER, **ENDPOINT})
    session = conn.session
    conn.login("alice")
    lines = conn.expect("b ENABLE IMAP4rev2 UTF8=ACCEPT", "b OK")
    assert lines[0] == "* ENABLED IMAP4REV2 UTF8=ACCEPT"
    lines = conn.expect("c SELECT INBOX", "c OK [READ-WRITE]")
    assert "* 3 EXISTS" in lines and "* 0 RECENT" not in lines
    assert (session.state, session.selected, session.enabled) == (SELECTED, "INBOX", {"IMAP4REV2", "UTF8=ACCEPT"})
    reply = conn.send("d UNAUTHENTICATE")
    # RFC 8437 §3: no expunge event, no untagged data at all; just the tagged OK.
    assert len(reply.lines) == 1 and reply.lines[0].startswith("d OK ")
    assert not reply.close and not reply.starttls
    assert session.state == NOT_AUTHENTICATED  # transition 7 (§5)
    assert session.selected is None and session.enabled == set() and session.authenticated is None
    assert session.tls  # the TLS layer is kept
    caps = conn.capabilities()
    assert {"AUTH=PLAIN", "AUTH=SCRAM-SHA-256-PLUS", "UNAUTHENTICATE"} <= set(caps)  # not-authenticated again
    conn.expect("e SELECT INBOX", "e BAD")
    conn.expect("f REMEMBERME RANDOM", "f BAD")
    conn.login("bob", tag="g")
    assert session.authenticated is not None and session.authenticated.identity == "bob"
    lines = conn.expect("h SELECT INBOX", "h OK")
    assert "* 0 RECENT" in lines  # IMAP4rev2 is no longer enabled (RFC 8437 §4.1)
    assert env.mailbox.asked == ["alice", "bob"]


def test_unauthenticate_keeps_id_and_failure_count(env: Env) -> None:
    """ID may be kept (RFC 8437 §3); the failure count survives, so UNAUTHENTICATE cannot reset the cap."""
    conn = env.conn(max_auth_failures=2)
    conn.expect('a ID ("name" "c")', "a OK")
    conn.expect("b " + PLAIN_BAD, "b NO [AUTHENTICATIONFAILED]")
    conn.login()
    conn.expect("c UNAUTHENTICATE", "c OK")
    reply = conn.send("d " + PLAIN_BAD)
    assert reply.lines[0].startswith("d NO [AUTHENTICATIONFAILED]") and reply.lines[-1].startswith("* BYE ")
    assert reply.close


@pytest.mark.parametrize("mode", ["always", "after-auth", "off"])
def test_unauthenticate_never_no(env: Env, mode: str) -> None:
    """In every state and mode the answer is OK or BAD (RFC 8437 §3)."""
    conn = env.conn(unauthenticate=mode)
    results = [outcome(conn.lines("u1 UNAUTHENTICATE")).split()[1]]
    conn.login()
    results.append(outcome(conn.lines("u2 UNAUTHENTICATE")).split()[1])
    if results[-1] != "OK":
        conn.expect("s SELECT INBOX", "s OK")
        results.append(outcome(conn.lines("u3 UNAUTHENTICATE")).split()[1])
    assert set(results) <= {"OK", "BAD"}
    assert results[0] == "BAD"
    assert ("OK" in results) == (mode != "off")


def test_pipelined_unauthenticate_and_authenticate_with_ir(env: Env) -> None:
    """RFC 8437 §3: UNAUTHENTICATE + AUTHENTICATE <IR> in one go re-authenticate in one round trip."""
    session = env.session()
    conn = Conn(session)
    conn.login("alice")
    conn.expect("s SELECT INBOX", "s OK")
    batch = b"u UNAUTHENTICATE\r\nr AUTHENTICATE PLAIN " + plain("bob").encode() + b"\r\n"
    replies = [session.receive_line(line + b"\n") for line in batch.split(b"\n")[:-1]]  # both in before reading
    for reply in replies:
        check_form(reply.lines)
    assert [outcome(r.lines).split(" ", 2)[:2] for r in replies] == [["u", "OK"], ["r", "OK"]]
    assert replies[1].lines[0].startswith("r OK [CAPABILITY ")
    assert session.authenticated is not None and session.authenticated.identity == "bob"
    assert session.state == AUTHENTICATED and session.selected is None


def test_pipelined_reauthentication_failure_leaves_not_authenticated(env: Env) -> None:
    session = env.session()
    conn = Conn(session)
    conn.login("alice")
    first = session.receive_line(b"u UNAUTHENTICATE\r\n")
    second = session.receive_line(b"r AUTHENTICATE PLAIN " + plain("bob", "nope").encode() + b"\r\n")
    assert first.lines[0].startswith("u OK") and second.lines[0].startswith("r NO [AUTHENTICATIONFAILED]")
    assert session.state == NOT_AUTHENTICATED and session.authenticated is None


def test_pipelined_unauthenticate_then_scram_ir(env: Env) -> None:
    session = env.session()
    conn = Conn(session)
    conn.login("alice")
    client = default_registry().client("SCRAM-SHA-256", ClientCredentials("bob", PASSWORD))
    first = session.receive_line(b"u UNAUTHENTICATE\r\n")
    second = session.receive_line(b"r AUTHENTICATE SCRAM-SHA-256 " + b64(client.start()).encode() + b"\r\n")
    assert first.lines[0].startswith("u OK") and second.lines[0].startswith("+ ")
    (line,) = conn.lines(b64(client.step(base64.b64decode(second.lines[0][2:]))))
    client.finish(base64.b64decode(line[2:]))
    conn.expect("", "r OK [CAPABILITY ")
    assert session.authenticated is not None and session.authenticated.identity == "bob"


# --------------------------------------------------------------------------- RFC 9266 §4.1: tls-exporter once


def test_tls_exporter_refused_after_unauthenticate(env: Env) -> None:
    bindings = {**EXPORTER, **ENDPOINT}
    conn = env.conn(channel_bindings=bindings)
    exporter = ("tls-exporter", EXPORTER["tls-exporter"])
    client, lines = scram_exchange(conn, "SCRAM-SHA-256-PLUS", channel_binding=exporter)
    client.finish(base64.b64decode(lines[0][2:]))
    conn.expect("", "a OK [CAPABILITY ")
    conn.expect("u UNAUTHENTICATE", "u OK")
    # Second authentication over the same TLS connection with tls-exporter: refused (RFC 9266 §4.1).
    client = default_registry().client("SCRAM-SHA-256-PLUS", ClientCredentials("alice", PASSWORD,
                                                                                channel_binding=exporter))
    conn.expect("b AUTHENTICATE SCRAM-SHA-256-PLUS " + b64(client.start()), "b NO [AUTHENTICATIONFAILED]")
    assert conn.session.authenticated is None
    # ... while tls-server-end-point is fine.
    client, lines = scram_exchange(conn, "SCRAM-SHA-256-PLUS", tag="c",
                                   channel_binding=("tls-server-end-point", ENDPOINT["tls-server-end-point"]))
    client.finish(base64.b64decode(lines[0][2:]))
    conn.expect("", "c OK [CAPABILITY ")
    assert conn.session.authenticated is not None


def test_tls_exporter_usable_on_a_new_tls_connection(env: Env) -> None:
    """The rule is per TLS connection: a fresh session (or a new TLS layer) may use tls-exporter again."""
    exporter = ("tls-exporter", EXPORTER["tls-exporter"])
    for _ in range(2):
        conn = env.conn(channel_bindings=dict(EXPORTER))
        client, lines = scram_exchange(conn, "SCRAM-SHA-256-PLUS", channel_binding=exporter)
        client.finish(base64.b64decode(lines[0][2:]))
        conn.expect("", "a OK")


def test_tls_exporter_failed_attempt_does_not_use_it_up(env: Env) -> None:
    exporter = ("tls-exporter", EXPORTER["tls-exporter"])
    conn = env.conn(channel_bindings=dict(EXPORTER))
    _, lines = scram_exchange(conn, "SCRAM-SHA-256-PLUS", password="wrong", channel_binding=exporter)
    assert outcome(lines).startswith("a NO [AUTHENTICATIONFAILED]")
    client, lines = scram_exchange(conn, "SCRAM-SHA-256-PLUS", tag="b", channel_binding=exporter)
    client.finish(base64.b64decode(lines[0][2:]))
    conn.expect("", "b OK")


def test_ht_expr_refused_after_unauthenticate(env: Env) -> None:
    token, _ = env.tokens.mint("alice")
    conn = env.conn(channel_bindings={**EXPORTER, **ENDPOINT})
    exporter = ("tls-exporter", EXPORTER["tls-exporter"])
    client = HTClient("HT2-SHA-256-EXPR", ClientCredentials("alice", token, channel_binding=exporter))
    (line,) = conn.expect("a AUTHENTICATE HT2-SHA-256-EXPR " + b64(client.start()), CONT)
    client.finish(base64.b64decode(line[2:]))
    conn.expect("", "a OK")
    conn.expect("u UNAUTHENTICATE", "u OK")
    client = HTClient("HT2-SHA-256-EXPR", ClientCredentials("alice", token, channel_binding=exporter))
    conn.expect("b AUTHENTICATE HT2-SHA-256-EXPR " + b64(client.start()), "b NO [AUTHENTICATIONFAILED]")
    client = HTClient("HT2-SHA-256-ENDP", ClientCredentials(
        "alice", token, channel_binding=("tls-server-end-point", ENDPOINT["tls-server-end-point"])))
    (line,) = conn.expect("c AUTHENTICATE HT2-SHA-256-ENDP " + b64(client.start()), CONT)
    client.finish(base64.b64decode(line[2:]))
    conn.expect("", "c OK")


# --------------------------------------------------------------------------- REMEMBERME


def remember(conn: Conn, kind: str = "RANDOM", tag: str = "r") -> str:
    (line,) = conn.expect(f"{tag} REMEMBERME {kind}", f"{tag} OK [REMEMBERME ")
    m = re.fullmatch(rf"{tag} OK \[REMEMBERME ([A-Za-z0-9+/=]+)\] .+", line)
    assert m, line
    return base64.b64decode(m.group(1), validate=True).decode("ascii")


@pytest.mark.parametrize("kind", ["RANDOM", "JWT"])
def test_rememberme_token_works_in_a_fresh_session(env: Env, kind: str) -> None:
    conn = env.conn()
    conn.login()
    token = remember(conn, kind)
    assert token.startswith("sk1.") if kind == "RANDOM" else token.count(".") == 2
    record = env.tokens.verify(token, mechanism="REMEMBERME")
    assert record.user == "alice" and record.type == kind
    assert remember(conn, kind, "r2") != token  # one command, one new token

    fresh = env.conn()
    fresh.expect("a AUTHENTICATE REMEMBERME " + b64(token), "a OK [CAPABILITY ")
    assert fresh.session.authenticated is not None and fresh.session.authenticated.identity == "alice"
    assert fresh.session.authenticated.mechanism == "REMEMBERME"
    # no token from a token login: a stolen token cannot renew itself
    fresh.expect("b REMEMBERME RANDOM", "b NO [CANNOT]")
    fresh.expect("c REMEMBERME JWT", "c NO [CANNOT]")

    ht = env.conn()
    client = HTClient("HT2-SHA-256-NONE", ClientCredentials("alice", token))
    (line,) = ht.expect("a AUTHENTICATE HT2-SHA-256-NONE " + b64(client.start()), CONT)
    client.finish(base64.b64decode(line[2:], validate=True))  # responder-msg as a "+" challenge
    assert client.verified and ht.session.authenticated is None
    ht.expect("", "a OK [CAPABILITY ")
    assert ht.session.authenticated is not None and ht.session.authenticated.mechanism == "HT2-SHA-256-NONE"
    ht.expect("b REMEMBERME RANDOM", "b NO [CANNOT]")


def test_rememberme_after_scram_and_login(env: Env) -> None:
    conn = env.conn()
    client, lines = scram_exchange(conn)
    client.finish(base64.b64decode(lines[0][2:]))
    conn.expect("", "a OK")
    remember(conn)
    conn = env.conn()
    conn.expect("a LOGIN alice pencil", "a OK")
    token = remember(conn)
    env.conn().expect("a AUTHENTICATE REMEMBERME " + b64(token), "a OK")


def test_rememberme_revoked_or_bogus_token_fails(env: Env) -> None:
    conn = env.conn()
    conn.login()
    token = remember(conn)
    env.tokens.revoke(env.tokens.verify(token, mechanism="REMEMBERME").id)
    fresh = env.conn()
    fresh.expect("a AUTHENTICATE REMEMBERME " + b64(token), "a NO [AUTHENTICATIONFAILED]")
    fresh.expect("b AUTHENTICATE REMEMBERME " + b64("sk1.bogus.token"), "b NO [AUTHENTICATIONFAILED]")


def test_rememberme_token_store_down_at_login(env: Env) -> None:
    conn = env.conn(tokens=TokenService(DownTokenStore(), env.ring))
    conn.expect("a AUTHENTICATE REMEMBERME " + b64("sk1." + "A" * 43 + ".x"), "a NO [UNAVAILABLE]")


# --------------------------------------------------------------------------- IMAP4rev1 vs IMAP4rev2


def test_select_imap4rev1_shows_recent(env: Env) -> None:
    env.mailbox.exists = 2
    conn = env.conn()
    conn.login()
    lines = conn.expect("a SELECT INBOX", "a OK [READ-WRITE] SELECT completed")
    assert lines[:2] == ["* 2 EXISTS", "* 0 RECENT"]  # RFC 3501 §6.3.1: RECENT is required
    assert "* OK [UIDVALIDITY 7] UIDs valid" in lines and "* OK [UIDNEXT 3] Predicted next UID" in lines
    lines = conn.expect("b EXAMINE INBOX", "b OK [READ-ONLY] EXAMINE completed")
    assert "* 0 RECENT" in lines and conn.session.read_only


def test_select_imap4rev2_after_enable(env: Env) -> None:
    conn = env.conn()
    conn.login()
    lines = conn.expect("a ENABLE IMAP4rev2", "a OK")
    assert lines[0] == "* ENABLED IMAP4REV2"
    assert conn.lines("b ENABLE IMAP4rev2")[0] == "* ENABLED"  # already enabled: not listed again
    assert conn.lines("c ENABLE CONDSTORE")[0] == "* ENABLED"  # unknown extensions are ignored (RFC 5161)
    lines = conn.expect("d SELECT INBOX", "d OK [READ-WRITE]")
    assert "* 0 RECENT" not in lines and not any("RECENT" in x for x in lines)  # RFC 9051: RECENT removed
    assert '* LIST () "/" INBOX' in lines  # RFC 9051 §6.3.2: SELECT returns the LIST response


def test_both_revisions_advertised_and_initial_response_accepted(env: Env) -> None:
    conn = env.conn()
    caps = conn.capabilities()
    assert {"IMAP4rev1", "IMAP4rev2", "SASL-IR"} <= set(caps)  # RFC 9051 Appendix A
    conn.expect("a ENABLE IMAP4rev2", "a BAD")  # ENABLE only once authenticated (RFC 5161 §3.1)


def test_logout_and_id(env: Env) -> None:
    conn = env.conn()
    assert conn.lines('a ID ("name" "x")') == ['* ID ("name" "saslkit")', "a OK ID completed"]
    reply = conn.send("b LOGOUT")
    assert reply.lines == ["* BYE Logging out", "b OK LOGOUT completed"] and reply.close


# --------------------------------------------------------------------------- the failure cap and delay


def test_failure_cap_closes_with_bye_on_the_third_failure(env: Env) -> None:
    conn = env.conn()
    r1 = conn.send("a " + PLAIN_BAD)
    r2 = conn.send("b LOGIN alice wrong")
    assert not r1.close and not r2.close and not any(x.startswith("* BYE") for x in r1.lines + r2.lines)
    _, lines = scram_exchange(conn, password="wrong", tag="c")
    assert lines[0].startswith("c NO [AUTHENTICATIONFAILED]") and lines[-1].startswith("* BYE ")


def test_failure_cap_reply_is_close(env: Env) -> None:
    conn = env.conn(max_auth_failures=1)
    reply = conn.send("a " + PLAIN_BAD)
    assert reply.close and reply.lines[0].startswith("a NO [AUTHENTICATIONFAILED]")
    assert reply.lines[1] == "* BYE Too many failed authentication attempts"


def test_authorization_failures_count_temporary_ones_do_not(env: Env) -> None:
    conn = env.conn(users=DownUserStore(), max_auth_failures=2)
    for tag in "abcde":
        reply = conn.send(f"{tag} " + PLAIN_OK)
        assert reply.lines == [f"{tag} NO [UNAVAILABLE] Authentication temporarily unavailable"]
        assert not reply.close and reply.delay == 0
    conn = env.conn(max_auth_failures=2)
    conn.expect("a AUTHENTICATE PLAIN " + plain(authzid="bob"), "a NO [AUTHORIZATIONFAILED]")
    assert conn.send("b " + PLAIN_BAD).close


def test_cancel_and_bad_do_not_count(env: Env) -> None:
    conn = env.conn(max_auth_failures=1)
    for tag in "abc":
        conn.expect(f"{tag} AUTHENTICATE PLAIN", EMPTY)
        assert not conn.send("*").close
        assert not conn.send(f"{tag}{tag} AUTHENTICATE PLAIN =AAA").close
    conn.login()


def test_failure_delay_is_reported_to_the_driver(env: Env) -> None:
    conn = env.conn(failure_delay=2.5)
    assert conn.send("a " + PLAIN_BAD).delay == 2.5
    assert conn.send("b AUTHENTICATE PLAIN =AAA").delay == 0  # BAD: no delay
    assert conn.send("c " + PLAIN_OK).delay == 0


# --------------------------------------------------------------------------- driver hints and limits


def test_may_block_flags_store_work(env: Env) -> None:
    session = env.session()
    for line in (b"a AUTHENTICATE PLAIN x\r\n", b"a LOGIN a b\r\n", b"a REMEMBERME RANDOM\r\n",
                 b"a SELECT INBOX\r\n", b"a examine INBOX\r\n"):
        assert session.may_block(line), line
    for line in (b"a NOOP\r\n", b"a CAPABILITY\r\n", b"a UNAUTHENTICATE\r\n", b"\r\n", b"x"):
        assert not session.may_block(line), line
    session.receive_line(b"a AUTHENTICATE PLAIN\r\n")
    assert session.in_auth and session.may_block(b"anything\r\n")


@pytest.mark.parametrize(("line", "waiting_store", "blocks"), [
    (b"a AUTHENTICATE SCRAM-SHA-256 biwsbj1hbGljZSxyPXh5eg==\r\n", False, False),  # memory store: inline
    (b"a AUTHENTICATE SCRAM-SHA-256 biwsbj1hbGljZSxyPXh5eg==\r\n", True, True),  # the lookup may wait
    (b"a authenticate scram-sha-256 biwsbj1hbGljZSxyPXh5eg==\r\n", True, True),
    (b"a AUTHENTICATE SCRAM-SHA-256\r\n", True, False),  # no initial response: "+ " only
    (b"a AUTHENTICATE PLAIN AGFsaWNlAHBlbmNpbA==\r\n", False, True),  # argon2
    (b"a AUTHENTICATE PLAIN\r\n", False, False),
    (b"a LOGIN alice pencil\r\n", False, True),  # LOGIN is PLAIN
    (b"a AUTHENTICATE NOSUCH x\r\n", True, False),  # NO at once
    (b"a AUTHENTICATE SCRAM-SHA-256 x y\r\n", True, False),  # BAD at once
    (b"a AUTHENTICATE \xff x\r\n", True, False),  # BAD at once
])
def test_may_block_on_the_authenticate_line_follows_the_mechanism_and_store(
        line: bytes, waiting_store: bool, blocks: bool) -> None:
    users = DownUserStore() if waiting_store else USERS  # a third-party store: reads_may_block unknown
    session = ImapSession(ImapConfig(hostname=HOST, allow_plaintext_auth=True), users, SECRET)  # type: ignore[arg-type]
    assert session.may_block(line) is blocks


def test_line_too_long_from_the_driver(env: Env) -> None:
    session = env.session()
    assert session.line_too_long(b"a NOOP xxxx").lines == ["* BAD Line too long"]
    session.receive_line(b"a AUTHENTICATE PLAIN\r\n")
    reply = session.line_too_long(b"AAAA")
    assert reply.lines[0].startswith("a BAD ") and not session.in_auth
    assert session.receive_line(b"b NOOP\r\n").lines == ["b OK NOOP completed"]


def test_literals_are_bounded_per_command(env: Env) -> None:
    """A command cannot pile up literals without end (MAX_IMAP_COMMAND octets in all)."""
    conn = env.conn()
    chunk = b"x" * MAX_IMAP_COMMAND_LITERAL
    conn.expect(f"a LOGIN {{{MAX_IMAP_COMMAND_LITERAL}+}}", None)
    for _ in range(MAX_IMAP_COMMAND // MAX_IMAP_COMMAND_LITERAL + 1):
        reply = conn.send(f" {{{MAX_IMAP_COMMAND_LITERAL}+}}")
        if reply.close:
            break
        assert reply.lines == [] and reply.literal == MAX_IMAP_COMMAND_LITERAL
        conn.send(Lit(chunk))
    assert reply.close and reply.lines == ["* BYE Literal too large"]
    conn = env.conn()
    conn.expect(f"a LOGIN {{{MAX_IMAP_COMMAND_LITERAL}}}", CONT)
    conn.send(Lit(chunk))
    reply = conn.send(f" {{{MAX_IMAP_COMMAND_LITERAL}}}")
    if reply.literal is not None:  # two fit; the third does not
        conn.send(Lit(chunk))
        reply = conn.send(f" {{{MAX_IMAP_COMMAND_LITERAL}}}")
    assert reply.lines == ["a BAD Literal too large"] and not reply.close
    conn.expect("b NOOP", "b OK")


def test_line_too_long_drops_a_pending_literal_command(env: Env) -> None:
    conn = env.conn()
    conn.expect("a LOGIN {5+}", None)
    conn.expect(Lit(b"alice"), None)
    assert conn.session.line_too_long(b" xxx").lines == ["* BAD Line too long"]
    conn.expect("b NOOP", "b OK")  # not glued to the dropped LOGIN


# --------------------------------------------------------------------------- imap-auth.json transcripts


#: RFC examples as reference data (tests/reference/README.md).
REFERENCE = Path(__file__).resolve().parent / "reference"


def _imap_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REFERENCE / "imap-auth.json").read_text(encoding="utf-8"))
    return data


VECTORS = _imap_vectors()
needs_vectors = pytest.mark.skipif(VECTORS is None, reason="imap-auth.json not found")


def _status(line: str) -> tuple[str, ...]:
    """``(tag, status, code)`` of a tagged line, or ``("+",)`` for a continuation."""
    if line.startswith("+"):
        return ("+",)
    m = re.match(r"(\S+) (OK|NO|BAD)(?: \[([A-Z-]+))?", line)
    assert m, line
    return m.group(1), m.group(2), m.group(3) or ""


@needs_vectors
@pytest.mark.parametrize("tid", ["rfc4959-plain-ir", "rfc4959-plain-no-ir", "rfc9051-authfailed"])
def test_imap_auth_transcripts(env: Env, tid: str) -> None:
    assert VECTORS is not None
    transcript = next(t for t in VECTORS["transcripts"] if t["id"] == tid)
    conn = env.conn()
    pending: list[str] = []
    for entry in transcript["lines"]:
        who, text = entry[:2], entry[3:]
        if who == "C:":
            pending = conn.lines(text)
            continue
        got = outcome(pending)
        want = _status(text)
        if want[1:2] == ("OK",):
            assert _status(got)[:2] == want[:2] and got.startswith(f"{want[0]} OK [CAPABILITY ")
        else:
            assert _status(got) == want, (got, text)
        if text.startswith("+"):
            assert got == text  # "+ " with its space


@needs_vectors
def test_imap_auth_vector_result_mapping(env: Env) -> None:
    """NO for rejected credentials or an unsupported mechanism, BAD for cancel, bad base64, server-first IR."""
    assert VECTORS is not None
    assert set(VECTORS["response_codes_rfc5530"]) <= KNOWN_CODES
    conn = env.conn(registry=toy_registry())
    conn.expect("a AUTHENTICATE EXTERNAL", "a NO")  # EXTERNAL is not implemented (rfc4959-external-*)
    conn.expect("b " + PLAIN_BAD, "b NO")
    conn.expect("c AUTHENTICATE PLAIN", EMPTY)
    conn.expect("*", "c BAD")
    conn.expect("d AUTHENTICATE PLAIN =AAA", "d BAD")
    conn.expect("e AUTHENTICATE X-SFIRST =", "e BAD")


# --------------------------------------------------------------------------- fuzz: nothing ever raises

INTERESTING = [
    b"a CAPABILITY", b"a NOOP", b"a AUTHENTICATE PLAIN", ("a " + PLAIN_OK).encode(), ("a " + PLAIN_BAD).encode(),
    b"a AUTHENTICATE SCRAM-SHA-256 " + SCRAM_FIRST.encode(), b"a AUTHENTICATE SCRAM-SHA-256", b"a AUTHENTICATE",
    b"a AUTHENTICATE STOKEN", b"a AUTHENTICATE REMEMBERME =", b"a AUTHENTICATE X-SFIRST",
    b"a AUTHENTICATE HT2-SHA-256-NONE " + b64("alice\0\0" + "A" * 32).encode(), b"*", b"", b"=", b"=AAA",
    b"a LOGIN alice pencil", b'a LOGIN "alice" "pen\\"cil"', b'a LOGIN "unterminated', b"a LOGIN {5}",
    b"a LOGIN {5+}", b"a LOGIN alice {6}", b" {6+}", b" pencil", b"{0}", b"a {99999999}", b"a LOGIN {16384+}",
    b"a UNAUTHENTICATE", b"a UNAUTHENTICATE x", b"a SELECT INBOX", b"a EXAMINE INBOX", b"a SELECT", b"a CLOSE",
    b"a UNSELECT", b"a ENABLE IMAP4rev2", b"a ENABLE", b"a REMEMBERME RANDOM", b"a REMEMBERME JWT",
    b"a REMEMBERME", b"a STARTTLS", b"a LOGOUT", b'a ID ("a" "b")', b"+ NOOP", b"a% NOOP", b"\xff\xfe\x00",
    b"A" * 600, b"a AUTHENTICATE " + b"A" * 17000, b"A" * 17000, b"\r", b"\n", b"a _cmd_noop", b"a __init__",
    b"a CAPABILITY\r\nb NOOP", b"a \x00", b"\x00 NOOP",
]
LINES = st.one_of(st.sampled_from(INTERESTING), st.binary(max_size=200),
                  st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")))
LITERAL_SEEDS = st.one_of(st.just(b"alice"), st.just(b"pencil"), st.binary(min_size=1, max_size=32))
STATES = ["fresh", "in-auth", "mid-scram", "scram-final", "authenticated", "selected", "plaintext", "in-literal",
          "after-auth-mode", "unauth-off"]


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = make_env(tmp_path_factory.mktemp("imap-fuzz"))
    yield e
    e.store.close()


def session_in(env: Env, state: str) -> tuple[ImapSession, int | None]:
    mode = {"after-auth-mode": "after-auth", "unauth-off": "off"}.get(state, "always")
    session = env.session(tls=state != "plaintext", max_auth_failures=50, unauthenticate=mode,
                          channel_bindings=dict(ENDPOINT), registry=toy_registry())
    literal: int | None = None
    if state == "in-auth":
        session.receive_line(b"a AUTHENTICATE PLAIN\r\n")
    elif state in ("mid-scram", "scram-final"):
        client = default_registry().client("SCRAM-SHA-256", ClientCredentials("alice", PASSWORD))
        reply = session.receive_line(f"a AUTHENTICATE SCRAM-SHA-256 {b64(client.start())}\r\n".encode())
        if state == "scram-final":
            session.receive_line(b64(client.step(base64.b64decode(reply.lines[0][2:]))).encode() + b"\r\n")
    elif state in ("authenticated", "selected", "after-auth-mode", "unauth-off"):
        session.receive_line(("a " + PLAIN_OK + "\r\n").encode())
        if state == "selected":
            session.receive_line(b"b SELECT INBOX\r\n")
    elif state == "in-literal":
        literal = session.receive_line(b"a LOGIN {5}\r\n").literal
    return session, literal


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.sampled_from(STATES), lines=st.lists(LINES, max_size=12), seeds=st.lists(LITERAL_SEEDS, max_size=12))
def test_arbitrary_lines_and_literals_never_raise(fuzz_env: Env, state: str, lines: list[bytes],
                                                  seeds: list[bytes]) -> None:
    session, literal = session_in(fuzz_env, state)
    seed_iter = iter(seeds)
    for line in lines:
        if literal is not None:
            seed = next(seed_iter, b"x")
            data = (seed * (literal // len(seed) + 1))[:literal]
            reply = session.receive_literal(data)
            assert isinstance(reply, ImapReply)
            check_form(reply.lines)
            literal = None
        reply = session.receive_line(line)
        assert isinstance(reply, ImapReply)
        check_form(reply.lines)
        assert isinstance(reply.wire(), bytes)
        assert reply.literal is None or 0 <= reply.literal <= MAX_IMAP_COMMAND_LITERAL
        literal = reply.literal
        if reply.starttls:
            session.tls_started(dict(ENDPOINT))
        if reply.close:
            break


# ------------------------------------------------------------- argon2 off the loop, auth penalty (issue 8)


def test_may_block_decided_on_the_line_that_completes_a_literal_login() -> None:
    """``a LOGIN {5}`` / ``{6}`` / final line: the final line runs the password check (argon2), so the
    driver must run it in its pool, although that line names no command."""
    session = ImapSession(ImapConfig(hostname=HOST, allow_plaintext_auth=True, failure_delay=0), USERS, SECRET)
    flags = []
    for line, literal in ((b"a LOGIN {5}\r\n", b"alice"), (b" {6}\r\n", PASSWORD.encode()), (b"\r\n", None)):
        flags.append(session.may_block(line))
        reply = session.receive_line(line)
        if literal is not None:
            assert reply.literal == len(literal)
            session.receive_literal(literal)
    assert reply.lines[-1].startswith("a OK [CAPABILITY ")
    assert flags == [False, False, True]  # announcing a literal never blocks; completing the LOGIN does
    session = ImapSession(ImapConfig(hostname=HOST, allow_plaintext_auth=True), USERS, SECRET)
    session.receive_line(b"b LOGIN {5+}\r\n")
    session.receive_literal(b"alice")
    assert session.may_block(b' "pencil"\r\n')


def test_may_block_on_literal_authenticate_and_not_on_other_literal_commands() -> None:
    session = ImapSession(ImapConfig(hostname=HOST, allow_plaintext_auth=True), USERS, SECRET)
    session.receive_line(b"a AUTHENTICATE {5}\r\n")
    session.receive_literal(b"PLAIN")
    assert session.may_block(b"\r\n")
    session = ImapSession(ImapConfig(hostname=HOST, allow_plaintext_auth=True), USERS, SECRET)
    session.receive_line(b"a ID {4}\r\n")
    session.receive_literal(b"name")
    assert not session.may_block(b" NIL)\r\n")
    assert not session.may_block(b"a NOOP\r\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def imap_attempt(penalty: AuthPenalty, peer: str, line: str) -> ImapReply:
    session = ImapSession(ImapConfig(hostname=HOST, allow_plaintext_auth=True, failure_delay=0.25,
                                     registry=named_registry()),
                          USERS, SECRET, peer=peer, tls=True, penalty=penalty)
    return session.receive_line(line.encode())


def test_auth_penalty_delays_login_and_authenticate_replies_across_connections() -> None:
    penalty = AuthPenalty(2.0, 15.0, MemoryPenaltyStore(clock=FakeClock()))
    delays = [imap_attempt(penalty, "192.0.2.5", f"a{i} LOGIN alice wrong{i}").delay for i in range(3)]
    assert delays == [0.25, 2.25, 4.25]
    ok = imap_attempt(penalty, "192.0.2.5", "b LOGIN alice pencil")
    assert ok.lines[-1].startswith("b OK [CAPABILITY ") and ok.delay == 8.0  # success waits too
    assert imap_attempt(penalty, "192.0.2.5", "c LOGIN alice wrong").delay == 0.25  # reset
    for i in range(2):
        imap_attempt(penalty, f"198.51.100.{i}", "d AUTHENTICATE X-NAMED " + b64("bob:guess"))
    reply = imap_attempt(penalty, "203.0.113.7", "e AUTHENTICATE X-NAMED " + b64("bob:guess"))
    assert reply.lines == ["e NO [AUTHENTICATIONFAILED] Authentication failed"] and reply.delay == 4.25
