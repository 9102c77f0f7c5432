"""Prometheus metrics of the reference servers (``saslkit serve smtp|imap --metrics HOST:PORT``); needs the
``metrics`` extra (``prometheus_client``).

Metrics, each labelled with ``protocol`` (``smtp``, ``lmtp``, ``imap``):

* ``saslkit_auth_total{mechanism, outcome}``: authentications by outcome, ``ok``, ``failed``,
  ``temporary_failure`` (a store was unavailable) or ``refused`` (mechanism refused before any exchange);
  a mechanism saslkit does not implement is counted as ``mechanism="other"``, so a client cannot add
  label values;
* ``saslkit_tokens_minted_total{kind}``: REMEMBERME tokens and GENSTOKEN submission tokens minted;
* ``saslkit_connections_active``: connections served now;
* ``saslkit_auth_penalty_delay_seconds``: histogram of the auth-penalty delays added to replies
  (:mod:`saslkit.penalty`; the fixed ``--failure-delay`` is not counted);
* ``saslkit_auth_duration_seconds{mechanism}``: histogram of the server's own time on an authentication:
  the handling of each line of the exchange (argon2, stores, mechanism), not the client's round trips
  nor the reply delays.

Usage::

    metrics = ServerMetrics()
    metrics.instrument(server, "smtp")      # a saslkit.smtp.server.SmtpServer or imap.server.ImapServer
    host, port = metrics.serve("127.0.0.1", 9464)  # GET /metrics
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ._extras import require
from .auth.events import Authenticated, AuthFailed, AuthRefused, TokenMinted
from .net.server import ServedOnLineServer
from .registry import Registry, default_registry

__all__ = ["AUTH_OUTCOMES", "ServerMetrics"]

AUTH_OUTCOMES = ("ok", "failed", "temporary_failure", "refused")
PENALTY_BUCKETS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _is_challenge(reply: Any) -> bool:
    """An SMTP ``334`` or IMAP ``+`` continuation: the exchange goes on."""
    lines = getattr(reply, "lines", None) or [""]
    first = str(lines[0])
    return first.startswith(("334", "+"))


class ServerMetrics:
    """The counters, gauges and histograms of one process, in their own ``CollectorRegistry``."""

    def __init__(self, registry: Registry | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        client = require("prometheus_client", "metrics", "--metrics (Prometheus)")
        self.prometheus = client
        self.collectors = client.CollectorRegistry()
        self._mechanisms = set((registry or default_registry()).names())
        self._clock = clock
        reg = self.collectors
        self.auth = client.Counter("saslkit_auth", "Authentications by mechanism and outcome",
                                   ["protocol", "mechanism", "outcome"], registry=reg)
        self.tokens = client.Counter("saslkit_tokens_minted", "Tokens minted (REMEMBERME, GENSTOKEN)",
                                     ["protocol", "kind"], registry=reg)
        self.connections = client.Gauge("saslkit_connections_active", "Connections served now", ["protocol"],
                                        registry=reg)
        self.penalty = client.Histogram("saslkit_auth_penalty_delay_seconds", "Auth-penalty delays of replies",
                                        ["protocol"], buckets=PENALTY_BUCKETS, registry=reg)
        self.duration = client.Histogram("saslkit_auth_duration_seconds",
                                         "Server time spent on an authentication exchange", ["protocol", "mechanism"],
                                         buckets=DURATION_BUCKETS, registry=reg)
        self._http: Any = None

    def _mechanism(self, name: str) -> str:
        return name if name in self._mechanisms else "other"

    def instrument(self, server: ServedOnLineServer, protocol: str) -> None:
        """Count ``server``'s authentications, connections, penalties and exchange times."""
        self.connections.labels(protocol).set_function(lambda: server.open_connections)
        for outcome in AUTH_OUTCOMES:  # every series exists from the start (rate() needs a first sample)
            self.auth.labels(protocol, "other", outcome)
        server.instrument(self.observer(protocol), self.timed_sessions(protocol))

    def instrument_dovecot_auth(self, server: Any) -> None:
        """Count a :class:`~saslkit.dovecot.server.DovecotAuthServer`'s outcomes, connections and penalties
        (protocol ``dovecot-auth``; exchange times are not measured there)."""
        protocol = "dovecot-auth"
        self.connections.labels(protocol).set_function(lambda: server.open_connections)
        for outcome in AUTH_OUTCOMES:
            self.auth.labels(protocol, "other", outcome)
        server.observe = lambda event, output, session: self.count(protocol, event, output, session)

    def observer(self, protocol: str) -> Callable[[str, Any, Any], None]:
        """A server observer: counts each reply's events and its penalty delay."""

        def observe(peer: str, session: Any, reply: Any) -> None:
            for event in getattr(reply, "events", ()):
                self.count(protocol, event, reply, session)

        return observe

    def count(self, protocol: str, event: object, reply: Any = None, session: Any = None) -> None:
        """Count one event (and the penalty part of its reply's delay)."""
        if isinstance(event, TokenMinted):
            self.tokens.labels(protocol, event.kind).inc()
            return
        if isinstance(event, Authenticated):
            outcome, fixed = "ok", 0.0
        elif isinstance(event, AuthFailed):
            outcome = "temporary_failure" if event.temporary else "failed"
            fixed = 0.0 if event.temporary else float(getattr(getattr(session, "config", None), "failure_delay", 0))
        elif isinstance(event, AuthRefused):
            outcome, fixed = "refused", 0.0
        else:
            return
        self.auth.labels(protocol, self._mechanism(event.mechanism), outcome).inc()
        penalty = float(getattr(reply, "delay", 0.0) or 0.0) - fixed
        if outcome != "refused" and penalty > 1e-9:
            self.penalty.labels(protocol).observe(penalty)

    def timed_sessions(self, protocol: str) -> Callable[[Any], Any]:
        """A session wrapper timing the lines of each exchange (``saslkit_auth_duration_seconds``)."""

        def wrap(session: Any) -> Any:
            spent = [0.0]

            def timed(handle: Callable[..., Any]) -> Callable[..., Any]:
                def run(*args: Any) -> Any:
                    started = self._clock()
                    reply = handle(*args)
                    spent[0] += self._clock() - started
                    finished = [e for e in getattr(reply, "events", ()) if isinstance(e, (Authenticated, AuthFailed))]
                    if finished:
                        self.duration.labels(protocol, self._mechanism(finished[0].mechanism)).observe(spent[0])
                        spent[0] = 0.0
                    elif not _is_challenge(reply):
                        spent[0] = 0.0  # not part of an exchange
                    return reply

                return run

            for method in ("receive_line", "receive_literal"):
                handle = getattr(session, method, None)
                if handle is not None:
                    setattr(session, method, timed(handle))
            return session

        return wrap

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``GET /metrics`` on ``host:port`` in a daemon thread; the bound address (port 0: a free one)."""
        httpd, _thread = self.prometheus.start_http_server(port, addr=host, registry=self.collectors)
        self._http = httpd
        bound = httpd.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            threading.Thread(target=self._http.shutdown, daemon=True).start()
            self._http.server_close()
            self._http = None
