"""saslkit: SASL mechanisms for mail servers, sans-IO.

Quick start::

    from saslkit import ServerContext, ClientCredentials, MemoryUserStore, make_user, default_registry
    users = MemoryUserStore([make_user("user", "pencil")])
    reg = default_registry()
    server = reg.server("SCRAM-SHA-256", ServerContext(users, server_secret=b"0" * 32))
    client = reg.client("SCRAM-SHA-256", ClientCredentials("user", "pencil"))
"""

from .channel_binding import ChannelBindingUnavailable, channel_bindings_from_ssl, tls_server_end_point
from .context import ClientCredentials, ServerContext, default_nonce, same_identity_only
from .credentials import (
    DEFAULT_ITERATIONS,
    MemoryUserStore,
    MutableUserStore,
    ScramCredential,
    UserRecord,
    UserStore,
    hash_password,
    make_user,
)
from .errors import (
    AuthenticationFailed,
    MechanismNotAllowed,
    PreparationError,
    ProtocolError,
    SaslError,
    StoreError,
    TemporaryFailure,
    UnknownMechanism,
    UsageError,
)
from .mechanism import (
    Challenge,
    ClientMechanism,
    Failure,
    FailureReason,
    ServerMechanism,
    ServerStep,
    Success,
)
from .registry import MechanismInfo, Policy, Registry, default_registry
from .saslprep import saslprep
from .testing.loopback import run_exchange

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ITERATIONS",
    "AuthenticationFailed",
    "Challenge",
    "ChannelBindingUnavailable",
    "ClientCredentials",
    "ClientMechanism",
    "Failure",
    "FailureReason",
    "MechanismInfo",
    "MechanismNotAllowed",
    "MemoryUserStore",
    "MutableUserStore",
    "Policy",
    "PreparationError",
    "ProtocolError",
    "Registry",
    "SaslError",
    "ScramCredential",
    "ServerContext",
    "ServerMechanism",
    "ServerStep",
    "StoreError",
    "Success",
    "TemporaryFailure",
    "UnknownMechanism",
    "UsageError",
    "UserRecord",
    "UserStore",
    "__version__",
    "channel_bindings_from_ssl",
    "default_nonce",
    "default_registry",
    "hash_password",
    "make_user",
    "run_exchange",
    "same_identity_only",
    "saslprep",
    "tls_server_end_point",
]
