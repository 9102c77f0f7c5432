"""What a mechanism is given instead of doing I/O itself.

A :class:`ServerContext` is built per connection by the binding (or the
caller): the credential store, the server secret for fake SCRAM salts, the
channel-binding data this connection offers, the authorization policy, and
the sources of randomness and time.  A :class:`ClientCredentials` holds what
a client mechanism needs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .credentials import UserStore
from .errors import UsageError

if TYPE_CHECKING:
    from .tokens.records import TokenVerifier
    from .tokens.submission import SubmissionTokens

__all__ = ["Authorizer", "ClientCredentials", "ServerContext", "default_nonce", "same_identity_only"]

#: ``authorize(authcid, authzid) -> bool``: may ``authcid`` act as ``authzid``?
Authorizer = Callable[[str, str], bool]


def default_nonce() -> str:
    """A fresh SCRAM nonce: 24 random octets as URL-safe base64 (printable, no ',')."""
    return secrets.token_urlsafe(24)


def same_identity_only(authcid: str, authzid: str) -> bool:
    """The default authorization policy: an authzid is allowed only if it names the authcid itself."""
    return authcid == authzid


@dataclass
class ServerContext:
    """Everything a server mechanism may consult, injected by the caller.

    ``channel_bindings`` maps a channel-binding type (``tls-unique``,
    ``tls-server-end-point``, ``tls-exporter``) to its data on *this*
    connection; a non-empty mapping means the server supports channel binding
    here and advertises the ``-PLUS`` mechanisms (RFC 5802 §6).
    """

    users: UserStore
    server_secret: bytes = field(repr=False)
    channel_bindings: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    tls: bool = False
    authorize: Authorizer = same_identity_only
    nonce_factory: Callable[[], str] = default_nonce
    clock: Callable[[], float] = time.time
    max_message_size: int = 8192
    #: Token service for REMEMBERME / HT-* / HT2-* (None: those mechanisms always fail).
    tokens: TokenVerifier | None = None
    #: Submission-token service for STOKEN.
    stokens: SubmissionTokens | None = None
    #: Channel-binding types already used to authenticate on this connection.  A
    #: tls-exporter binding must not serve a second authentication (RFC 9266 §4.1):
    #: mechanisms refuse it when it is in here and add it on success.
    bindings_used: set[str] = field(default_factory=set)
    #: Whether a -PLUS mechanism was advertised on this connection (RFC 5802 §6: a client's "y" flag is
    #: a downgrade only then); ``None``: whenever channel-binding data exists.
    plus_advertised: bool | None = None

    def __post_init__(self) -> None:
        if len(self.server_secret) < 16:
            raise UsageError("server_secret must be at least 16 octets")


@dataclass
class ClientCredentials:
    """What a client mechanism needs.

    ``channel_binding`` is ``(type, data)`` when the client can bind to the
    TLS channel; ``server_offers_plus`` tells a SCRAM client whether the
    server advertised a ``-PLUS`` mechanism (for the ``y`` flag, RFC 5802 §6).
    """

    username: str
    secret: str = field(repr=False)
    authzid: str | None = None
    channel_binding: tuple[str, bytes] | None = field(default=None, repr=False)
    server_offers_plus: bool = False
    nonce_factory: Callable[[], str] = default_nonce
    max_iterations: int = 1_000_000
