"""What a name without credentials looks like: a real user's profile, drawn per name.

RFC 5802 §9 and RFC 4422 §3.6: a server should not reveal which names exist.
A peer sees SCRAM's salt length and iteration count (server-first, RFC 5802
§5.1), whether the salts of the hashes are the same, and how long PLAIN takes
(argon2id, or one PBKDF2 for users imported with SCRAM keys only).  So a name
that is not in the store is given a *virtual user*: a
:class:`~saslkit.credentials.CredentialProfile` drawn from the store's own
population (``credential_profiles()``), weighted by how many users have each,
deterministically with HMAC(secret, name).  The draw is weighted rendezvous
hashing: when the population changes, the fewest names move to another profile.

* SCRAM shows the virtual user's iteration count and a fake salt of its length,
  HMAC(secret, name) when the profile shares one salt across hashes and
  HMAC(secret, name, hash) when not (:func:`~saslkit.credentials.fake_salt`).
* A hash the virtual user lacks, and a hash that a *real* user lacks, are both
  shown by the same function of the name alone (:func:`fake_scram_parameters`):
  a stand-in drawn among the profiles that have that hash, with a salt of its
  own.  So a real user probed for a missing hash looks exactly like an unknown
  name whose profile lacks it.
* PLAIN for an unknown name (or a user with no credential at all) costs what
  the virtual user would: an argon2 verification with its parameters, or one
  PBKDF2 with its strongest hash and iteration count (:func:`plain_stand_in`).

An empty store, or one without ``credential_profiles()`` (third-party stores
written before it), gives every name the default profile: the store's default
iteration count, one 16-octet salt and an argon2 hash.  The HMAC secret is
the key ring's salt key, pinned for the life of the database
(:attr:`saslkit.keys.KeyRing.server_secret`): fake salts that changed while
real ones stay would give the unknown names away.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Mapping

from .credentials import (
    DEFAULT_ARGON2_PARAMETERS,
    SALT_LENGTH,
    SCRAM_HASHES,
    CredentialProfile,
    UserStore,
    fake_salt,
)

__all__ = [
    "MAX_PROFILES",
    "credential_profiles",
    "default_profile",
    "fake_scram_parameters",
    "plain_stand_in",
    "virtual_profile",
]

#: At most this many of the most common profiles take part in draws (a bound on work per login).
MAX_PROFILES = 256


def credential_profiles(store: UserStore) -> dict[CredentialProfile, int]:
    """The store's profiles and how many users have each; ``{}`` if it cannot tell.

    Uses the store's optional ``credential_profiles()`` (found with ``getattr``,
    so stores written before it keep working).
    """
    method = getattr(store, "credential_profiles", None)
    if method is None:
        return {}
    raw: Mapping[CredentialProfile, int] = method()
    counts = {p: int(c) for p, c in raw.items() if isinstance(p, CredentialProfile) and c > 0}
    if len(counts) > MAX_PROFILES:
        kept = sorted(counts.items(), key=lambda pc: (-pc[1], pc[0].key))[:MAX_PROFILES]
        counts = dict(kept)
    return counts


def default_profile(store: UserStore) -> CredentialProfile:
    """What :func:`~saslkit.credentials.make_user` gives a new user of ``store``."""
    iterations = store.default_iterations
    return CredentialProfile(
        tuple((h, iterations, SALT_LENGTH) for h in sorted(SCRAM_HASHES)), True, DEFAULT_ARGON2_PARAMETERS
    )


def _draw(
    candidates: Iterable[tuple[CredentialProfile, int]], secret: bytes, username: str, tag: bytes
) -> CredentialProfile | None:
    """Weighted rendezvous hashing: the profile minimising -ln(U(name, profile)) / count."""
    base = hmac.new(secret, b"saslkit-fake-profile\x00" + tag + b"\x00" + username.encode("utf-8") + b"\x00",
                    "sha256")
    best: CredentialProfile | None = None
    best_score = math.inf
    for profile, count in candidates:
        h = base.copy()
        h.update(profile.key)
        u = (int.from_bytes(h.digest()[:8], "big") + 0.5) / 2.0**64
        score = -math.log(u) / count
        if score < best_score or (score == best_score and best is not None and profile.key < best.key):
            best, best_score = profile, score
    return best


def _virtual(profiles: dict[CredentialProfile, int], store: UserStore, secret: bytes,
             username: str) -> CredentialProfile:
    drawn = _draw(profiles.items(), secret, username, b"user")
    return default_profile(store) if drawn is None else drawn


def virtual_profile(store: UserStore, secret: bytes, username: str) -> CredentialProfile:
    """The profile an unknown ``username`` is shown: deterministic, drawn with the store's weights."""
    return _virtual(credential_profiles(store), store, secret, username)


def fake_scram_parameters(
    store: UserStore, secret: bytes, username: str, hash_name: str, *, known: bool
) -> tuple[bytes, int]:
    """``(salt, iterations)`` to show for a name that has no ``hash_name`` credential.

    ``known`` tells whether the name is a real user (lacking that hash): it then
    gets the stand-in for the missing hash, as does an unknown name whose
    virtual profile lacks it.  Both ways are computed every time, so any
    outcome costs the same.
    """
    profiles = credential_profiles(store)
    virtual = _virtual(profiles, store, secret, username)
    having = [(p, c) for p, c in profiles.items() if p.scram_for(hash_name) is not None]
    stand_in = _draw(having, secret, username, b"hash\x00" + hash_name.encode("ascii"))
    missing = (store.default_iterations, SALT_LENGTH) if stand_in is None else stand_in.scram_for(hash_name)
    assert missing is not None
    missing_salt = fake_salt(secret, username, missing[1], f"{hash_name} stand-in")
    own = virtual.scram_for(hash_name)
    if own is not None:
        own_salt = fake_salt(secret, username, own[1], None if virtual.shared_salt else hash_name)
        if not known:
            return own_salt, own[0]
    return missing_salt, missing[0]


def plain_stand_in(store: UserStore, secret: bytes, username: str) -> CredentialProfile:
    """The profile whose PLAIN work an unknown ``username`` (or a user with no credential) does.

    The virtual profile, or if that has no credential either, one drawn among
    the profiles that have some (the default profile if none has).
    """
    profiles = credential_profiles(store)
    virtual = _virtual(profiles, store, secret, username)
    some = [(p, c) for p, c in profiles.items() if p.scram or p.argon2 is not None]
    fallback = _draw(some, secret, username, b"plain")
    if virtual.scram or virtual.argon2 is not None:
        return virtual
    return default_profile(store) if fallback is None else fallback
