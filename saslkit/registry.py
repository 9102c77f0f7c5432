"""Mechanism registry and offer policy.

Names map to server and client factories.  :meth:`Registry.offer` computes,
once per capability change (connect, STARTTLS), an immutable :class:`Offer`:
what a server may advertise on a connection, strongest first (or in the
policy's ``mechanisms`` order), and a typed :class:`Refusal` for each
registered name it may not use.  Plaintext
mechanisms (PLAIN, LOGIN) only over TLS unless the policy allows otherwise (RFC 4954
§4, RFC 9051 §6.2.2 LOGINDISABLED), channel-binding mechanisms only for the
channel-binding types the connection can verify (RFC 5802 §6): HT-*-ENDP/UNIQ/EXPR
for their own type, SCRAM-*-PLUS for tls-exporter or tls-unique (what their clients
bind to by default), tls-server-end-point only if the policy says so.  Names follow RFC 4422 §3.1:
1-20 characters of ``A-Z 0-9 - _``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType

from .context import ClientCredentials, ServerContext
from .errors import MechanismNotAllowed, UnknownMechanism, UsageError
from .mechanism import ClientMechanism, ServerMechanism

__all__ = ["MechanismInfo", "Offer", "Policy", "Refusal", "Registry", "default_registry", "server_policy"]

_NAME_RE = re.compile(r"[A-Z0-9_-]{1,20}")


@dataclass(frozen=True)
class MechanismInfo:
    """How to build one mechanism and when it may be offered."""

    name: str
    server: Callable[[ServerContext], ServerMechanism]
    client: Callable[[ClientCredentials], ClientMechanism]
    strength: int
    #: The secret crosses the wire in a reversible form: offer only under TLS.
    plaintext: bool = False
    #: A -PLUS mechanism: offer only when channel-binding data exists.
    channel_binding: bool = False
    #: The channel-binding types it can use (None = any), e.g. HT-*-UNIQ needs tls-unique.
    channel_binding_types: frozenset[str] | None = None
    #: The server proves itself too (SCRAM's ``v=``, HT's responder message): Dovecot's ``mutual-auth`` flag.
    mutual_auth: bool = False
    #: Authenticates with a minted token rather than a password (REMEMBERME, HT, STOKEN).
    token_based: bool = False
    #: Must run over TLS even though no password crosses the wire (HT-09 §1.2: replayable).
    requires_tls: bool = False
    #: Once it has sent a non-empty challenge, its steps only compute (HMACs: no store access,
    #: no password hashing), e.g. SCRAM's client-final step (RFC 5802 §3); a driver may run them inline.
    computes_after_challenge: bool = False
    #: Its step hashes the client's password (argon2, PBKDF2: PLAIN, a LOGIN), or does any other
    #: blocking work beyond reading the context's stores: a driver never runs it on its event loop.
    hashes_password: bool = False
    #: Its step may write to a store, waiting for the write lock (STOKEN refreshes its record on use,
    #: draft-slusarz §5.3.2): a driver never runs it on its event loop.
    writes_on_step: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise UsageError(f"invalid SASL mechanism name {self.name!r} (RFC 4422 §3.1)")


@dataclass(frozen=True)
class Policy:
    """Which registered mechanisms a server offers.

    ``allowed``/``denied`` are name sets (``None`` = everything registered).
    ``mechanisms`` is an ordered allow-list (like Dovecot's ``auth_mechanisms``):
    only these are offered, in this order.  ``allow_plaintext_without_tls``
    lifts the TLS requirement of plaintext mechanisms (for tests or
    loopback-only deployments).  ``plus_with_end_point`` lets SCRAM-*-PLUS be
    advertised on a connection whose only channel binding is
    tls-server-end-point (e.g. TLS 1.3 on the stdlib's ``ssl``).
    """

    allow_plaintext_without_tls: bool = False
    allowed: frozenset[str] | None = None
    denied: frozenset[str] = frozenset()
    mechanisms: tuple[str, ...] | None = None
    #: Advertise -PLUS mechanisms that may bind to any type (SCRAM) when only tls-server-end-point can be
    #: verified; off by default, since their clients then bind to tls-exporter or tls-unique and fail.
    plus_with_end_point: bool = False

    def __post_init__(self) -> None:
        # Mechanism names are case-insensitive (RFC 4422 §3.1): keep them upper-case.
        if self.allowed is not None:
            object.__setattr__(self, "allowed", frozenset(n.upper() for n in self.allowed))
        object.__setattr__(self, "denied", frozenset(n.upper() for n in self.denied))
        if self.mechanisms is not None:
            object.__setattr__(self, "mechanisms", tuple(dict.fromkeys(n.upper() for n in self.mechanisms)))

    def permits(self, name: str) -> bool:
        """Whether the allow- and deny-lists let ``name`` (upper-case) through."""
        return ((self.allowed is None or name in self.allowed) and name not in self.denied
                and (self.mechanisms is None or name in self.mechanisms))


class Refusal(enum.Enum):
    """Why a server will not run a mechanism here; each binding maps it to its reply."""

    UNKNOWN = "unknown mechanism"
    NOT_OFFERED = "mechanism not offered on this connection"
    DISABLED_BY_POLICY = "disabled by policy"
    REQUIRES_TLS = "mechanism requires TLS"
    NO_CHANNEL_BINDING = "channel binding is not available on this connection"
    INITIAL_RESPONSE_NOT_ALLOWED = "initial response not allowed for this mechanism"

    @property
    def too_weak(self) -> bool:
        """Registered but not usable on this connection (SMTP 534 5.7.9, IMAP [PRIVACYREQUIRED])."""
        return self in (Refusal.DISABLED_BY_POLICY, Refusal.REQUIRES_TLS, Refusal.NO_CHANNEL_BINDING)


@dataclass(frozen=True)
class Offer:
    """What one connection may use: ``mechanisms`` in advertising order, and why the others are refused."""

    mechanisms: tuple[str, ...] = ()
    refusals: Mapping[str, Refusal] = field(default_factory=lambda: MappingProxyType({}))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.upper() in self.mechanisms

    def refusal(self, name: str) -> Refusal | None:
        """``None`` if ``name`` is offered, else why not (``UNKNOWN`` if it is not registered)."""
        name = name.upper()
        if name in self.mechanisms:
            return None
        return self.refusals.get(name, Refusal.UNKNOWN)


_DEFAULT_POLICY = Policy()


def server_policy(registry: Registry, policy: Policy | None, allow_plaintext: bool = False,
                  mechanisms: Iterable[str] | None = None) -> Policy:
    """A server's policy with its ``allow_plaintext_auth`` and ``mechanisms`` (allow-list) settings folded in.

    An unknown name in ``mechanisms`` is a :class:`UsageError` (like Dovecot's ``auth_mechanisms``).
    """
    base = policy or _DEFAULT_POLICY
    if mechanisms is not None:
        names = tuple(mechanisms)
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise UsageError(f"unknown SASL mechanism(s) in the allow-list: {' '.join(unknown)}")
        base = replace(base, mechanisms=names)
    if allow_plaintext and not base.allow_plaintext_without_tls:
        base = replace(base, allow_plaintext_without_tls=True)
    return base


class Registry:
    """Name -> :class:`MechanismInfo`; third parties may :meth:`register` their own."""

    #: How many distinct offers :meth:`offer` remembers (connections share a handful of them).
    OFFER_CACHE_SIZE = 256

    def __init__(self, mechanisms: Iterable[MechanismInfo] = ()) -> None:
        self._mechs: dict[str, MechanismInfo] = {}
        self._offers: dict[Hashable, Offer] = {}
        for info in mechanisms:
            self.register(info)

    def register(self, info: MechanismInfo, *, replace: bool = False) -> None:
        if info.name in self._mechs and not replace:
            raise UsageError(f"mechanism {info.name} is already registered")
        self._mechs[info.name] = info
        self._offers = {}

    def unregister(self, name: str) -> None:
        self._mechs.pop(name.upper(), None)
        self._offers = {}

    def info(self, name: str) -> MechanismInfo:
        try:
            return self._mechs[name.upper()]
        except (KeyError, AttributeError):
            raise UnknownMechanism(str(name)) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.upper() in self._mechs

    def names(self) -> list[str]:
        """Every registered name, strongest first."""
        return [m.name for m in sorted(self._mechs.values(), key=lambda m: (-m.strength, m.name))]

    def refusal(
        self,
        name: str,
        *,
        tls: bool,
        channel_bindings: Collection[str] = (),
        policy: Policy | None = None,
    ) -> str | None:
        """Why ``name`` may not be used on this connection, or ``None`` if it may."""
        why = self._refusal(self.info(name), tls, channel_bindings, policy or _DEFAULT_POLICY)
        return None if why is None else why.value

    @staticmethod
    def _refusal(info: MechanismInfo, tls: bool, channel_bindings: Collection[str], policy: Policy,
                 advertising: bool = False) -> Refusal | None:
        """Why ``info`` may not be used here; ``advertising``: why it may not be offered (stricter for -PLUS)."""
        if not policy.permits(info.name):
            return Refusal.DISABLED_BY_POLICY
        if (info.plaintext or info.requires_tls) and not tls and not policy.allow_plaintext_without_tls:
            return Refusal.REQUIRES_TLS
        if info.channel_binding:
            usable = set(channel_bindings)
            if info.channel_binding_types is not None:
                usable &= info.channel_binding_types
            elif advertising and not policy.plus_with_end_point:
                # A client of a -PLUS mechanism binds by default to tls-exporter (TLS 1.3, RFC 9266 §3) or
                # tls-unique (TLS 1.2, RFC 5802 §6.1): advertise it only when one of those can be verified.
                usable.discard("tls-server-end-point")
            if not usable:
                return Refusal.NO_CHANNEL_BINDING
        return None

    def offer(
        self,
        *,
        tls: bool,
        channel_bindings: Collection[str] = (),
        policy: Policy | None = None,
        available: Callable[[MechanismInfo], bool] | None = None,
        cache_key: Hashable | None = None,
    ) -> Offer:
        """The :class:`Offer` of one connection, computed once per capability change.

        ``available`` lets a binding drop what it cannot serve (e.g. token
        mechanisms without a token service): those are ``NOT_OFFERED``.  A
        binding whose ``available`` depends only on ``cache_key`` passes it,
        and connections with the same TLS state, channel-binding types, policy
        and key share one computed offer (forgotten when the registry changes).
        """
        policy = policy or _DEFAULT_POLICY
        if cache_key is None:
            return self._compute_offer(tls, channel_bindings, policy, available)
        key = (tls, frozenset(channel_bindings), policy, cache_key)
        offer = self._offers.get(key)
        if offer is None:
            offer = self._compute_offer(tls, channel_bindings, policy, available)
            offers = self._offers
            if len(offers) >= self.OFFER_CACHE_SIZE:
                offers.clear()
            offers[key] = offer
        return offer

    def _compute_offer(
        self, tls: bool, channel_bindings: Collection[str], policy: Policy,
        available: Callable[[MechanismInfo], bool] | None,
    ) -> Offer:
        offered: list[str] = []
        refusals: dict[str, Refusal] = {}
        for name in self.names():
            info = self._mechs[name]
            why = self._refusal(info, tls, channel_bindings, policy, advertising=True)
            if why is None and available is not None and not available(info):
                why = Refusal.NOT_OFFERED
            if why is None:
                offered.append(name)
            else:
                refusals[name] = why
        if policy.mechanisms is not None:
            offered.sort(key=policy.mechanisms.index)
        return Offer(tuple(offered), MappingProxyType(refusals))

    def advertises_plus(self, offer: Offer) -> bool:
        """Whether ``offer`` lists a SCRAM-*-PLUS mechanism (any binding type): a client's ``y`` gs2 flag is then
        a downgrade (RFC 5802 §6)."""
        return any(self.info(name).channel_binding and self.info(name).channel_binding_types is None
                   for name in offer.mechanisms)

    def offered(
        self,
        *,
        tls: bool,
        channel_bindings: Collection[str] = (),
        policy: Policy | None = None,
    ) -> list[str]:
        """The names a server may advertise here, strongest first (or in the policy's order)."""
        return list(self.offer(tls=tls, channel_bindings=channel_bindings, policy=policy).mechanisms)

    def server(self, name: str, ctx: ServerContext, *, policy: Policy | None = None) -> ServerMechanism:
        """Start the server side of ``name``; raises UnknownMechanism or MechanismNotAllowed."""
        info = self.info(name)
        why = self.refusal(info.name, tls=ctx.tls, channel_bindings=ctx.channel_bindings, policy=policy)
        if why is not None:
            raise MechanismNotAllowed(info.name, why)
        return info.server(ctx)

    def client(self, name: str, creds: ClientCredentials) -> ClientMechanism:
        """Start the client side of ``name``."""
        return self.info(name).client(creds)

    def choose(
        self,
        server_offers: Iterable[str],
        *,
        can_bind: bool = False,
        tls: bool = True,
        allow_plaintext_without_tls: bool = False,
    ) -> str:
        """Client-side negotiation: the strongest offered name we implement.

        -PLUS names count only if ``can_bind``; plaintext mechanisms only over
        TLS unless allowed.  Raises :class:`UnknownMechanism` if nothing fits.
        """
        offered = {n.upper() for n in server_offers}
        for name in self.names():
            info = self._mechs[name]
            if name not in offered or (info.channel_binding and not can_bind):
                continue
            if (info.plaintext or info.requires_tls) and not tls and not allow_plaintext_without_tls:
                continue
            return name
        raise UnknownMechanism(" ".join(sorted(offered)) or "(none offered)")


def default_registry() -> Registry:
    """A registry with every mechanism saslkit implements."""
    from .mechanisms.ht import HT_MECHANISMS, HTClient, HTServer
    from .mechanisms.login import LoginClient, LoginServer
    from .mechanisms.plain import PlainClient, PlainServer
    from .mechanisms.rememberme import RememberMeClient, RememberMeServer
    from .mechanisms.scram import SCRAM_MECHANISMS, ScramClient, ScramServer
    from .mechanisms.stoken import StokenClient, StokenServer

    reg = Registry()
    reg.register(MechanismInfo("PLAIN", PlainServer, PlainClient, strength=10, plaintext=True,
                               hashes_password=True))
    # LOGIN (draft-murchison-sasl-login-00): PLAIN's secret and checks, in two round trips; just below PLAIN.
    reg.register(MechanismInfo("LOGIN", LoginServer, LoginClient, strength=9, plaintext=True,
                               hashes_password=True))
    hash_rank = {"SHA-1": 1, "SHA-256": 2, "SHA-512": 3}
    for name, (hash_name, plus) in SCRAM_MECHANISMS.items():
        reg.register(
            MechanismInfo(
                name,
                partial(ScramServer, name),
                partial(ScramClient, name),
                strength=(100 if plus else 50) + hash_rank[hash_name],
                channel_binding=plus,
                computes_after_challenge=True,
                mutual_auth=True,
            )
        )
    # HT-*/HT2-* token mechanisms: above PLAIN, below SCRAM (a client holding only a password
    # never picks them first); channel binding beats NONE (tls-exporter > tls-unique >
    # tls-server-end-point), then the hash, and HT2 one above the HT form of the same name.
    ht_cb_rank = {"NONE": 0, "ENDP": 1, "UNIQ": 2, "EXPR": 3}
    ht_hash_rank = {"SHA-256": 0, "SHA-512": 1, "SHA3-512": 2}
    for name, spec in HT_MECHANISMS.items():
        reg.register(
            MechanismInfo(
                name,
                partial(HTServer, name),
                partial(HTClient, name),
                strength=20 + 6 * ht_cb_rank[spec.cb_suffix] + 2 * ht_hash_rank[spec.hash_name] + int(spec.extended),
                channel_binding=spec.cb_type is not None,
                channel_binding_types=None if spec.cb_type is None else frozenset({spec.cb_type}),
                token_based=True,
                requires_tls=True,
                mutual_auth=True,
            )
        )
    # Bearer tokens: the secret itself crosses the wire, so TLS only (like PLAIN).
    reg.register(MechanismInfo("REMEMBERME", RememberMeServer, RememberMeClient, strength=15, plaintext=True,
                               token_based=True))
    reg.register(MechanismInfo("STOKEN", StokenServer, StokenClient, strength=5, plaintext=True, token_based=True,
                               writes_on_step=True))
    return reg

