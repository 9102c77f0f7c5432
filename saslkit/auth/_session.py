"""What every line-protocol session shares: its connection's stores and TLS state, and the SASL engine of its
current offer (computed once per capability change: connect, STARTTLS; RFC 4422 §3.1 mechanism negotiation)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, Protocol, TypeVar

from ..context import ServerContext
from ..credentials import UserStore
from ..penalty import AuthPenalty
from ..registry import MechanismInfo, Offer, Policy, Registry
from ..tokens import SubmissionTokens, TokenService
from .engine import ServerAuth

__all__ = ["EngineSession"]


class SessionConfig(Protocol):
    """The server-wide settings a session's offer depends on."""

    registry: Registry

    def effective_policy(self) -> Policy: ...


ConfigT = TypeVar("ConfigT", bound=SessionConfig)


class EngineSession(Generic[ConfigT]):
    """The base of the SMTP and IMAP sessions: connection state and one :class:`ServerAuth` per offer."""

    def __init__(
        self,
        config: ConfigT,
        users: UserStore,
        server_secret: bytes,
        *,
        tokens: TokenService | None,
        stokens: SubmissionTokens | None,
        peer: str,
        tls: bool,
        channel_bindings: Mapping[str, bytes] | None,
        penalty: AuthPenalty | None,
    ) -> None:
        self.config = config
        self.peer = peer
        self.tls = tls
        self._users = users
        self._secret = server_secret
        self._tokens = tokens
        self._stokens = stokens
        self._penalty = penalty
        self._bindings = dict(channel_bindings or {})
        self._bindings_used: set[str] = set()  # tls-exporter serves one login per TLS connection (RFC 9266 §4.1)
        self._engine: ServerAuth | None = None

    def _tls_up(self, channel_bindings: Mapping[str, bytes] | None) -> None:
        """TLS is up (STARTTLS): new channel bindings, none used yet, a new offer."""
        self.tls = True
        self._bindings = dict(channel_bindings or {})
        self._bindings_used = set()
        self._engine = None

    def _serves(self, info: MechanismInfo) -> bool:
        """Whether this session can serve ``info`` at all (e.g. token mechanisms need the token service)."""
        return not (info.token_based and self._tokens is None)

    def _offer_key(self) -> Hashable:
        """What :meth:`_serves` depends on besides the mechanism: connections alike share one offer."""
        return (self._tokens is not None, self._stokens is not None)

    @property
    def auth_engine(self) -> ServerAuth:
        """The SASL engine of this connection's current offer (rebuilt after STARTTLS)."""
        if self._engine is None:
            registry = self.config.registry
            offer = registry.offer(tls=self.tls, channel_bindings=self._bindings,
                                   policy=self.config.effective_policy(), available=self._serves,
                                   cache_key=self._offer_key())
            ctx = ServerContext(self._users, self._secret, channel_bindings=self._bindings, tls=self.tls,
                                tokens=self._tokens, stokens=self._stokens, bindings_used=self._bindings_used,
                                plus_advertised=registry.advertises_plus(offer))
            self._engine = ServerAuth(registry, offer, ctx)
        return self._engine

    @property
    def offer(self) -> Offer:
        return self.auth_engine.offer

    def offered_mechanisms(self) -> list[str]:
        return list(self.offer.mechanisms)
