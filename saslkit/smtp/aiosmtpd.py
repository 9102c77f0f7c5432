"""aiosmtpd adapter: every saslkit mechanism, ``REMEMBERME`` and ``STOKEN`` in any aiosmtpd server.

Usage (a submission server on port 587 with STARTTLS)::

    import ssl
    from saslkit.smtp.aiosmtpd import saslkit_controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            print("message from", session.auth_data.identity)  # a saslkit Success
            return "250 2.0.0 OK"

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain("cert.pem", "key.pem")
    controller = saslkit_controller(   # users, ring, tokens: see docs/server-authors.md
        Handler(), users=users, server_secret=ring.server_secret, tokens=tokens,
        certificate="cert.pem",  # for tls-server-end-point (SCRAM-*-PLUS, HT-*-ENDP)
        hostname="0.0.0.0", port=587,  # aiosmtpd: hostname= is the address to bind
        server_hostname="mail.example.net",  # the name in the greeting
        tls_context=tls, require_starttls=True,
    )
    controller.start()

:class:`SaslkitSMTP` / :class:`SaslkitLMTP` subclass aiosmtpd's ``SMTP`` /
``LMTP``; each connection keeps a :class:`~saslkit.smtp.session.SmtpSession`
beside aiosmtpd's state and hands it the ``AUTH``, ``REMEMBERME``,
``GENSTOKEN`` and ``REVSTOKEN`` lines, so reply codes, base64 framing,
failure limits and token rules are the session's own.  ``AUTH``,
``REMEMBERME`` and ``STOKEN`` in the EHLO/LHLO reply come from it too, and
replace aiosmtpd's own ``AUTH`` list.  On success ``session.authenticated``
is ``True`` and ``session.auth_data`` the :class:`~saslkit.mechanism.Success`.

* ``auth_required`` defaults to **True** (aiosmtpd issue #374: with it off,
  a server that offers AUTH still accepts mail from anyone).
* Lines that may block (argon2, a store whose reads may wait, token
  minting: :meth:`~saslkit.smtp.session.SmtpSession.may_block`) run in a thread pool of
  ``workers`` threads behind an ``asyncio.Semaphore``, so a slow login never
  stalls other connections; the others (SCRAM against a memory or SQLite
  store) run on the loop.  Reads go into one buffer per thread
  (:class:`asyncio.BufferedProtocol`) and each reply is one write.
* ``MAIL FROM`` accepts ``AUTH=`` (RFC 4954 §5), kept decoded in
  ``envelope.auth_param`` (``""`` unless the client authenticated).
* After ``AUTH STOKEN`` (LMTP), ``RCPT TO`` is limited to the local address
  the token was issued for (``550 5.7.1`` otherwise).  ``RCPT``
  ``STOKEN=``/``MYSTOKEN=`` and the per-recipient ``2.1.12``/``2.1.13``
  replies are not handled here (use :mod:`saslkit.smtp.server`).
* The auth penalty (:mod:`saslkit.penalty`, ``auth_penalty``, on by
  default; None turns it off) delays authentication replies after failures
  from the same address or for the same user, across connections.
* An unexpected exception never reaches the client as text (aiosmtpd's
  default ``500 Error: (Type) text``): it is logged and the client gets
  ``421 4.3.0 Internal error; closing``; a handler's own
  ``handle_exception`` still decides when it has one.
* aiosmtpd's ``authenticator``, ``auth_callback``, ``auth_exclude_mechanism``,
  ``auth_require_tls`` and handler ``auth_*`` methods do not apply: saslkit's
  registry and :class:`~saslkit.registry.Policy` decide (``allow_plaintext_auth``
  lifts the TLS requirement of PLAIN and REMEMBERME; ``mechanisms`` is an
  allow-list in offer order, like Dovecot's ``auth_mechanisms``).
* ``tls_context`` may be a :class:`saslkit.net.tls.OpenSSLServerContext`
  (the ``tls`` extra): STARTTLS then runs on pyOpenSSL and -PLUS mechanisms
  bind to tls-exporter (RFC 9266); with an ``ssl.SSLContext`` aiosmtpd's own
  STARTTLS (the stdlib's, no tls-exporter) runs.  Implicit TLS
  (``ssl_context``) is the stdlib's.
* Outcomes are logged from the session's typed events
  (:func:`saslkit.auth.events.log_line`), never from reply text.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import ssl
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, AnyStr, TypeVar

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP, Envelope, TLSSetupException, syntax
except ImportError as exc:  # the optional extra
    from .._extras import MissingExtra

    raise MissingExtra("saslkit.smtp.aiosmtpd", "aiosmtpd", "aiosmtpd") from exc

from ..auth.events import reply_logger
from ..channel_binding import channel_bindings_from_ssl, tls_server_end_point
from ..credentials import UserStore
from ..errors import ProtocolError, SaslError, UsageError
from ..mechanism import Success
from ..net.server import yield_to_event_loop
from ..net.tls import OpenSSLServerContext, start_tls, transport_bindings
from ..penalty import AuthPenalty
from ..registry import Policy, Registry, default_registry
from ..tokens import TOKEN_TYPES, SubmissionTokens, TokenService
from ..tokens.submission import normalize_address
from . import replies
from .session import MAX_SMTP_AUTH_LINE, AuthThrottle, Reply, SmtpConfig, SmtpSession, xtext_decode

__all__ = ["SaslkitAuth", "SaslkitController", "SaslkitEnvelope", "SaslkitLMTP", "SaslkitSMTP", "saslkit_controller"]

log = logging.getLogger("saslkit.smtp.aiosmtpd")
_log_events = reply_logger(log)
T = TypeVar("T")

_KEYWORDS = ("AUTH", "REMEMBERME", "STOKEN")  # EHLO keywords saslkit decides
_NOT_APPLICABLE = ("authenticator", "auth_callback", "auth_exclude_mechanism", "auth_require_tls")
_AUTH_PARAM_RE = re.compile(r"\s+AUTH=(\S*)", re.IGNORECASE)


@dataclass(eq=False)
class SaslkitAuth:
    """Server-wide settings, shared by every connection (and thread-safe).

    ``certificate`` is our TLS certificate (DER/PEM bytes, or a file path),
    needed for ``tls-server-end-point``, the only channel binding aiosmtpd's
    TLS (the stdlib's) can verify: HT-*-ENDP use it, SCRAM-*-PLUS only with
    ``policy=Policy(plus_with_end_point=True)`` (its clients bind to
    tls-exporter or tls-unique by default; tls-unique is not used, since the
    stdlib cannot say whether the extended master secret was negotiated).  A ``throttle`` and the
    ``auth_penalty`` (None: off) are called from worker threads.  :meth:`close` stops the worker threads (new ones start
    if the object is used again).
    """

    users: UserStore
    server_secret: bytes = field(repr=False)
    tokens: TokenService | None = None
    stokens: SubmissionTokens | None = None
    certificate: bytes | str | os.PathLike[str] | None = field(default=None, repr=False)
    registry: Registry = field(default_factory=default_registry)
    policy: Policy | None = None
    allow_plaintext_auth: bool = False
    remember_types: tuple[str, ...] = TOKEN_TYPES
    mechanisms: tuple[str, ...] | None = None
    failure_delay: float = 1.0
    max_auth_failures: int = 3
    throttle: AuthThrottle | None = None
    workers: int = 8
    auth_penalty: AuthPenalty | None = field(default_factory=AuthPenalty)

    def __post_init__(self) -> None:
        if len(self.server_secret) < 16:
            raise UsageError("server_secret must be at least 16 octets")
        if self.workers < 1:
            raise UsageError("workers must be at least 1")
        cert = self.certificate
        if cert is not None and not isinstance(cert, bytes):
            cert = Path(cert).read_bytes()
        self._end_point = tls_server_end_point(cert) if cert else None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._configs: dict[tuple[str, bool, bool], SmtpConfig] = {}
        self.config("localhost", lmtp=False, auth_required=True)  # an unknown allow-listed name fails here

    def config(self, hostname: str, *, lmtp: bool, auth_required: bool) -> SmtpConfig:
        key = (hostname, lmtp, auth_required)
        cfg = self._configs.get(key)
        if cfg is None:
            cfg = self._configs[key] = SmtpConfig(
                hostname=hostname, lmtp=lmtp, auth_required=auth_required,
                allow_plaintext_auth=self.allow_plaintext_auth, registry=self.registry, policy=self.policy,
                failure_delay=self.failure_delay, max_auth_failures=self.max_auth_failures,
                remember_types=self.remember_types, mechanisms=self.mechanisms,
            )
        return cfg

    def session(self, config: SmtpConfig, transport: asyncio.BaseTransport) -> SmtpSession:
        """A fresh saslkit session for a new connection or a just-started TLS layer."""
        sslobj = transport.get_extra_info("ssl_object")
        bindings: dict[str, bytes] = {}
        if transport.get_extra_info("openssl_connection") is not None:  # STARTTLS on pyOpenSSL
            bindings = transport_bindings(transport, server_certificate=None)  # tls-exporter, EMS-checked
        elif sslobj is not None:
            try:
                bindings = channel_bindings_from_ssl(sslobj)  # server side: tls-unique (TLS 1.2) only
            except SaslError:
                bindings = {}
            # RFC 7627, RFC 9266 §4.2: tls-unique needs the extended master secret, and aiosmtpd's TLS (the
            # stdlib's sslproto) cannot say whether it was negotiated.
            bindings.pop("tls-unique", None)
            if self._end_point is not None:
                bindings["tls-server-end-point"] = self._end_point
        peer = transport.get_extra_info("peername")
        return SmtpSession(
            config, self.users, self.server_secret, tokens=self.tokens, stokens=self.stokens,
            peer=str(peer[0]) if isinstance(peer, tuple) else str(peer or ""), tls=sslobj is not None,
            channel_bindings=bindings, throttle=self.throttle, penalty=self.auth_penalty,
        )

    async def run(self, fn: Callable[[bytes], T], arg: bytes) -> T:
        """Run blocking ``fn(arg)`` in the worker pool, at most ``workers`` at a time per event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            semaphore = self._semaphores.get(loop)
            if semaphore is None:
                semaphore = self._semaphores[loop] = asyncio.Semaphore(self.workers)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="saslkit-aiosmtpd",
                                                    initializer=yield_to_event_loop)
            executor = self._executor
        async with semaphore:
            return await loop.run_in_executor(executor, fn, arg)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


class SaslkitEnvelope(Envelope):
    """aiosmtpd's envelope plus the decoded ``AUTH=`` of ``MAIL FROM`` (RFC 4954 §5)."""

    def __init__(self) -> None:
        super().__init__()
        self.auth_param: str | None = None


def _line(verb: str, arg: str | None) -> bytes:
    return f"{verb} {arg or ''}".encode("utf-8", "surrogateescape")


_METHOD_NAMES: dict[type, tuple[str, ...]] = {}


def _method_names(cls: type) -> tuple[str, ...]:
    """The names aiosmtpd's ``SMTP.__init__`` looks for: commands (``smtp_*``) and AUTH mechanisms (``auth_*``)."""
    names = _METHOD_NAMES.get(cls)
    if names is None:
        names = _METHOD_NAMES[cls] = tuple(name for name in dir(cls) if name.startswith(("smtp_", "auth_")))
    return names


class _ReadBuffer(threading.local):
    """One receive buffer per thread (per event loop), reused by every connection's reads."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_SIZE))


_READ_SIZE = 65536  # below glibc's mmap threshold (128 KiB): a copy of what one read got never costs mmap/munmap
_read_buffer = _ReadBuffer()


class SaslkitSMTP(SMTP, asyncio.BufferedProtocol):
    """aiosmtpd's ``SMTP`` authenticating with saslkit: ``SaslkitSMTP(handler, saslkit=SaslkitAuth(...))``.

    It is also an :class:`asyncio.BufferedProtocol` (asyncio's documented way to choose the read
    buffer): the transport reads into one buffer per thread and aiosmtpd's stream gets a copy of
    just the octets read, instead of a fresh 256 KiB bytes object per read (asyncio's
    ``max_size``, above glibc's mmap threshold: mmap, mremap and munmap on every read).
    """

    lmtp = False

    def __init__(self, handler: Any, *, saslkit: SaslkitAuth, auth_required: bool = True, **kwargs: Any) -> None:
        for name in _NOT_APPLICABLE:
            if name in kwargs:
                raise TypeError(f"{name} does not apply: saslkit authenticates (configure SaslkitAuth)")
        self.saslkit = saslkit
        self._openssl: OpenSSLServerContext | None = None
        if isinstance(kwargs.get("tls_context"), OpenSSLServerContext):
            # STARTTLS on pyOpenSSL (tls-exporter); aiosmtpd gets a stand-in so it still offers STARTTLS.
            self._openssl = kwargs["tls_context"]
            kwargs["tls_context"] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # aiosmtpd sizes its StreamReader by line_length_limit (1001 octets), but AUTH
        # continuation lines may be 12288 (RFC 4954 §4).  DATA still checks each line
        # against the class's 1001, so only the reader's buffer grows.
        self.line_length_limit = MAX_SMTP_AUTH_LINE
        self._constructed = False  # see __dir__
        super().__init__(handler, auth_required=auth_required, **kwargs)
        self._constructed = True
        del self.line_length_limit
        # An instance dict (aiosmtpd's is shared by the class); the session checks AUTH lines itself.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit, AUTH=MAX_SMTP_AUTH_LINE)
        self._sasl: SmtpSession | None = None
        self._capture: list[str] | None = None

    # ------------------------------------------------------------ plumbing

    def _create_envelope(self) -> SaslkitEnvelope:
        return SaslkitEnvelope()

    def __dir__(self) -> Iterable[str]:
        """Inside aiosmtpd's constructor only the ``smtp_*``/``auth_*`` names, computed once per class.

        aiosmtpd finds its command and AUTH methods with ``dir(self)`` and ``inspect.getmembers(self)``
        on every new connection, fetching every attribute; afterwards ``dir()`` is the usual one.
        """
        if self.__dict__.get("_constructed", True):
            return super().__dir__()
        return _method_names(type(self))

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads (asyncio.BufferedProtocol)."""
        return _read_buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` arrived in the buffer: hand a copy to aiosmtpd's stream, as ``data_received`` would."""
        self.data_received(bytes(_read_buffer.view[:nbytes]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Called again with the TLS transport after STARTTLS: start afresh (RFC 3207 §4.2).
        config = self.saslkit.config(self.hostname, lmtp=self.lmtp, auth_required=self._auth_required)
        self._sasl = self.saslkit.session(config, transport)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """STARTTLS (RFC 3207) on pyOpenSSL when ``tls_context`` is an :class:`OpenSSLServerContext`: the
        session then binds to tls-exporter (RFC 9266); otherwise aiosmtpd's own (the stdlib's ``ssl``)."""
        if self._openssl is None or arg:
            await super().smtp_STARTTLS(arg)
            return
        await self.push("220 Ready to start TLS")
        raw = self.transport
        assert isinstance(raw, asyncio.Transport)
        # What aiosmtpd's STARTTLS leaves behind, so that its connection_made and connection_lost
        # treat this as a STARTTLS connection (reader and writer moved to the TLS transport, buffer cleared).
        self._original_transport = raw
        try:
            await start_tls(raw, self, self._openssl, handshake_timeout=self._timeout_duration,
                            on_handshake=self._tls_made)
        except (ConnectionError, OSError, TimeoutError) as error:
            raise TLSSetupException() from error

    def _tls_made(self, transport: asyncio.Transport) -> None:
        """The handshake is done: aiosmtpd's ``connection_made`` on the TLS transport (as its sslproto does),
        with ``session.ssl`` the TLS transport's details (``openssl_connection``, ``peername``...)."""
        conn = transport.get_extra_info("openssl_connection")
        extra = {"openssl_connection": conn, "ssl_object": conn, "peername": transport.get_extra_info("peername"),
                 "sockname": transport.get_extra_info("sockname"), "cipher": conn.get_cipher_name()}
        self._tls_protocol = types.SimpleNamespace(_extra=extra)  # type: ignore[assignment]
        self.connection_made(transport)

    async def push(self, status: AnyStr) -> None:
        if self._capture is not None:
            self._capture.append(status if isinstance(status, str) else status.decode("utf-8", "replace"))
        else:
            await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        """Log an unexpected exception; the client only learns that something went wrong, then the
        connection closes (a half-done exchange must not go on)."""
        handler = getattr(self.event_handler, "handle_exception", None)
        if handler is not None:
            try:
                status: str = await handler(error)
                return status
            except Exception:
                log.exception("exception in the handler's handle_exception()")
        else:
            peer = self._sasl.peer if self._sasl is not None else "?"
            if isinstance(error, (asyncio.IncompleteReadError, ConnectionError)):  # gone in the middle of AUTH
                log.info("connection from %s ended: %s", peer, type(error).__name__)
            else:
                log.error("internal error on a connection from %s", peer, exc_info=error)
        if self.transport is not None:
            asyncio.get_running_loop().call_soon(self.transport.close)  # after the reply is written
        return "421 4.3.0 Internal error; closing"

    async def _feed(self, line: bytes) -> Reply:
        """Hand one line to the saslkit session (off the loop if it may block) and send its reply."""
        sasl = self._sasl
        assert sasl is not None
        reply = await self.saslkit.run(sasl.receive_line, line) if sasl.may_block(line) else sasl.receive_line(line)
        _log_events(sasl.peer, sasl, reply)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.lines:
            await self.push("\r\n".join(reply.lines))  # one write (and one segment) for the whole reply
        if reply.close and self.transport is not None:
            self.transport.close()
        return reply

    async def _read_auth_line(self) -> bytes:
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:  # over 12288 octets: drain it, the session answers 500 5.5.6
            await self._reader.read(exc.consumed)
            while True:
                try:
                    await self._reader.readuntil(b"\n")
                    return b"X" * (MAX_SMTP_AUTH_LINE + 1)
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)

    async def _hello(self, verb: str, arg: str | None, run: Awaitable[None]) -> None:
        """Run aiosmtpd's EHLO/LHLO, then put saslkit's keywords in place of its AUTH line."""
        lines: list[str] = []
        self._capture = lines
        try:
            await run
        finally:
            self._capture = None
        if arg and lines and all(x.startswith(("250-", "250 ")) for x in lines):
            assert self._sasl is not None
            ours = [x[4:] for x in self._sasl.receive_line(_line(verb, arg.split()[0])).lines
                    if x[4:].split(" ", 1)[0] in _KEYWORDS]
            if self.require_starttls and not self._tls_protocol:
                ours = []  # aiosmtpd refuses everything but EHLO/STARTTLS/NOOP/QUIT until TLS
            texts = [x[4:] for x in lines if x[4:].split(" ", 1)[0].upper() != "AUTH"]
            texts[-1:-1] = ours
            lines = [f"250-{x}" for x in texts[:-1]] + [f"250 {texts[-1]}"]
        if lines:
            await self.push("\r\n".join(lines))  # one write for the whole EHLO reply

    # ------------------------------------------------------------ commands

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._hello("EHLO", hostname, super().smtp_EHLO(hostname))

    @syntax("AUTH mechanism [initial-response]")
    async def smtp_AUTH(self, arg: str) -> None:
        assert self.session is not None and self.envelope is not None
        if not self.session.extended_smtp:
            await self.push(replies.SEND_EHLO_FIRST)
            return
        if self.envelope.mail_from:
            await self.push(replies.IN_TRANSACTION)
            return
        sasl = self._sasl
        assert sasl is not None
        reply = await self._feed(_line("AUTH", arg))
        while sasl.in_auth and not reply.close:
            reply = await self._feed(await self._read_auth_line())
        success = sasl.authenticated
        if success is not None and not self.session.authenticated:
            self.session.authenticated = True
            self.session.auth_data = success  # type: ignore[assignment]  # aiosmtpd infers None

    @syntax("REMEMBERME token-type")
    async def smtp_REMEMBERME(self, arg: str) -> None:
        await self._feed(_line("REMEMBERME", arg))

    async def _stoken_command(self, verb: str, arg: str) -> None:
        assert self.session is not None
        if self.saslkit.stokens is not None and not self.session.authenticated:  # the session needs an identity
            await self.push(replies.AUTH_REQUIRED)
            return
        await self._feed(_line(verb, arg))

    @syntax("GENSTOKEN (PERM|TEMP) remote-address [local-address]")
    async def smtp_GENSTOKEN(self, arg: str) -> None:
        await self._stoken_command("GENSTOKEN", arg)

    @syntax("REVSTOKEN remote-address [local-address]")
    async def smtp_REVSTOKEN(self, arg: str) -> None:
        await self._stoken_command("REVSTOKEN", arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        assert self.session is not None and self.envelope is not None
        auth_param: str | None = None
        m = _AUTH_PARAM_RE.search(arg, max(arg.rfind(">"), 0)) if arg and self.session.extended_smtp else None
        if arg and m:
            try:
                auth_param = "" if m.group(1) == "<>" else xtext_decode(m.group(1))
            except ProtocolError:
                await self.push("501 5.5.4 Invalid AUTH= parameter")
                return
            arg = arg[: m.start()] + arg[m.end():]
        had_sender = bool(self.envelope.mail_from)
        await super().smtp_MAIL(arg)
        envelope = self.envelope
        if m and not had_sender and envelope.mail_from and isinstance(envelope, SaslkitEnvelope):
            # RFC 4954 §5: an unauthenticated client's AUTH= is treated as AUTH=<>.
            envelope.auth_param = auth_param if self.session.authenticated else ""

    async def smtp_RCPT(self, arg: str | None) -> None:
        assert self.session is not None
        success = self.session.auth_data
        if arg and isinstance(success, Success) and success.mechanism == "STOKEN":
            rest = self._strip_command_keyword("TO:", arg)
            address = self._getaddr(rest)[0] if rest is not None else None
            if address and not self._stoken_allows(success, address):
                await self.push("550 5.7.1 Submission token not valid for this recipient")
                return
        await super().smtp_RCPT(arg)

    @staticmethod
    def _stoken_allows(success: Success, address: str) -> bool:
        try:
            return normalize_address(address) == success.details.get("stoken_local")
        except UsageError:
            return False


class SaslkitLMTP(SaslkitSMTP, LMTP):
    """aiosmtpd's ``LMTP`` with saslkit: adds ``STOKEN`` (mechanism and LHLO keyword, TLS only)."""

    lmtp = True

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str) -> None:
        await self._hello("LHLO", arg, super().smtp_LHLO(arg))


class SaslkitController(Controller):
    """aiosmtpd's threaded ``Controller`` serving :class:`SaslkitSMTP` (or :class:`SaslkitLMTP`)."""

    def __init__(self, handler: Any, saslkit: SaslkitAuth, *, lmtp: bool = False, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.saslkit = saslkit
        self.server_class: type[SaslkitSMTP] = SaslkitLMTP if lmtp else SaslkitSMTP

    def factory(self) -> SaslkitSMTP:
        return self.server_class(self.handler, saslkit=self.saslkit, **self.SMTP_kwargs)

    def stop(self, no_assert: bool = False) -> None:
        super().stop(no_assert)
        self.saslkit.close()


def saslkit_controller(
    handler: Any, *, users: UserStore, server_secret: bytes, lmtp: bool = False, **kwargs: Any
) -> SaslkitController:
    """A :class:`SaslkitController`; keyword arguments naming :class:`SaslkitAuth` fields
    configure saslkit, the others go to aiosmtpd's ``Controller`` and ``SMTP``."""
    names = {f.name for f in fields(SaslkitAuth)}
    auth = SaslkitAuth(users, server_secret, **{k: kwargs.pop(k) for k in list(kwargs) if k in names})
    return SaslkitController(handler, auth, lmtp=lmtp, **kwargs)
