"""The key ring: server secrets kept outside the database.

A JSON file (mode 0600) of keys, each with an id, a kind and creation and
retirement times.  Like ssh, loading refuses a file that group or others can
read.  Kinds:

* ``salt``: HMAC secret for the deterministic fake SCRAM salts (and parameter
  draws) of unknown users (RFC 5802 §9).  It is fixed for the life of the user
  database: it cannot be rotated, and the oldest salt key is the one used.
  Real users keep their stored salts, so a new secret would change the salts of
  the unknown names only, and two probes (before and after) would tell which
  names exist;
* ``token``: HMAC secret from which RANDOM and submission tokens are derived;
* ``ed25519`` (default) / ``hs256``: JWT signing keys, selected by ``kid``.

Rotation adds a new current key of a kind (any but ``salt``); older keys
keep verifying until they are retired.  Keys are generated with ``secrets`` and ``cryptography``.

Processes sharing a ring agree on it: creation holds an exclusive ``flock`` on the ring's directory and
links the finished file into place only if no ring exists (:meth:`KeyRing.open`, :meth:`KeyRing.create`),
so concurrent first starts end with one ring; :meth:`KeyRing.locked` serializes read-modify-write
(rotate, retire) the same way.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import StoreError, UsageError

__all__ = ["Key", "KeyRing", "KeyRingError", "default_keys_path"]

KEYRING_VERSION = 1
HMAC_KEY_BYTES = 32
#: kind -> what it is for
KEY_KINDS = {
    "salt": "fake SCRAM salts for unknown users",
    "token": "derivation of RANDOM and submission tokens",
    "ed25519": "JWT signatures (EdDSA)",
    "hs256": "JWT signatures (HMAC-SHA-256)",
}
#: kinds a new key ring starts with
INITIAL_KINDS = ("salt", "token", "ed25519")
#: Why the salt key is never rotated nor retired.
SALT_KEY_IS_FIXED = (
    "the salt key cannot be rotated or retired: unknown users are shown fake SCRAM salts derived from it "
    "while real users keep their stored salts, so a new salt key would change only the unknown names' salts "
    "and reveal which names exist (RFC 5802 §9); it stays for the life of the user database"
)


class KeyRingError(StoreError):
    """The key ring file is missing, unreadable, too open or malformed."""


@dataclass(frozen=True)
class Key:
    """One secret; ``kind`` is one of :data:`KEY_KINDS`."""

    id: str
    kind: str
    secret: bytes = field(repr=False)
    created: float
    retired: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "secret": base64.b64encode(self.secret).decode("ascii"),
            "created": self.created,
            "retired": self.retired,
        }

    @classmethod
    def from_json(cls, raw: object) -> Key:
        if not isinstance(raw, dict):
            raise KeyRingError("key entry is not an object")
        try:
            return cls(
                str(raw["id"]),
                str(raw["kind"]),
                base64.b64decode(str(raw["secret"]), validate=True),
                float(raw["created"]),
                None if raw.get("retired") is None else float(raw["retired"]),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise KeyRingError(f"malformed key entry: {exc}") from exc


def default_keys_path(db_path: str | os.PathLike[str]) -> Path:
    """``./saslkit.db`` -> ``./saslkit.keys`` (beside the database)."""
    return Path(db_path).with_suffix(".keys")


@contextmanager
def _directory_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``'s directory, across processes, released on exit."""
    directory = path.parent
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        raise KeyRingError(f"cannot use key ring {path}: directory {directory} does not exist") from None
    except OSError as exc:
        raise KeyRingError(f"cannot use key ring {path}: {directory}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class KeyRing:
    """Keys loaded from (and saved atomically to) one file."""

    def __init__(self, path: str | os.PathLike[str], keys: list[Key] | None = None) -> None:
        self.path = Path(path)
        self.keys: list[Key] = list(keys or [])
        #: Whether this process created the file (:meth:`open` on first use, :meth:`create`).
        self.created = False

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyRing:
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise KeyRingError(f"key ring {p} does not exist (run `saslkit keys init`)") from None
        except OSError as exc:
            raise KeyRingError(f"cannot read key ring {p}: {exc.strerror}") from exc
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyRingError(
                f"key ring {p} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                "run chmod 600 on it"
            )
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"cannot parse key ring {p}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("version") != KEYRING_VERSION:
            raise KeyRingError(f"key ring {p} has an unknown format")
        keys = raw.get("keys")
        if not isinstance(keys, list):
            raise KeyRingError(f"key ring {p} has no key list")
        return cls(p, [Key.from_json(k) for k in keys])

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True, quiet: bool = False) -> KeyRing:
        """Load the ring, creating it with fresh keys on first use (said on stderr) unless ``create`` is false.

        Concurrent first uses by several processes all get the same ring (see the module docstring).
        """
        p = Path(path)
        if p.exists() or not create:
            return cls.load(p)
        with _directory_lock(p):
            if p.exists():  # another process created it while we waited
                return cls.load(p)
            ring = cls._fresh(p)
        if not quiet and ring.created:
            print(f"saslkit: created key ring {p}", file=sys.stderr)
        return ring

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> KeyRing:
        """A new ring with fresh keys; :class:`KeyRingError` if one exists (also one made concurrently)."""
        p = Path(path)
        with _directory_lock(p):
            if p.exists():
                raise KeyRingError(f"key ring {p} already exists")
            return cls._fresh(p)

    @classmethod
    @contextmanager
    def locked(cls, path: str | os.PathLike[str]) -> Iterator[KeyRing]:
        """The existing ring, loaded and saved back under the directory lock (rotate, retire)."""
        p = Path(path)
        with _directory_lock(p):
            ring = cls.load(p)
            yield ring
            ring.save()

    @classmethod
    def _fresh(cls, path: Path) -> KeyRing:
        """Generate the initial keys and link the file into place (the caller holds the directory lock)."""
        ring = cls(path)
        for kind in INITIAL_KINDS:
            ring.add(kind)
        tmp = ring._write_temporary()
        try:
            os.link(tmp, path)  # create-exclusive: never replaces a ring another program made
        except FileExistsError:
            return cls.load(path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP) or path.exists():
                raise KeyRingError(f"cannot create key ring {path}: {exc.strerror}") from exc
            os.replace(tmp, path)  # no hard links here: the directory lock alone keeps it exclusive
        finally:
            tmp.unlink(missing_ok=True)
        ring.created = True
        return ring

    def _write_temporary(self) -> Path:
        """The ring written (mode 0600, fsynced) to a new temporary file beside its path."""
        data = json.dumps({"version": KEYRING_VERSION, "keys": [k.to_json() for k in self.keys]}, indent=2)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise KeyRingError(f"cannot write key ring {self.path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def save(self) -> None:
        """Write atomically with mode 0600."""
        tmp = self._write_temporary()
        try:
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KeyRingError(f"cannot write key ring {self.path}: {exc.strerror}") from exc

    def add(self, kind: str, *, now: float | None = None) -> Key:
        """Generate a new key of ``kind``; it becomes the current one of its kind.

        A ``salt`` key is only ever added to a ring without one (:data:`SALT_KEY_IS_FIXED`).
        """
        if kind not in KEY_KINDS:
            raise UsageError(f"unknown key kind {kind!r} (one of {', '.join(KEY_KINDS)})")
        if kind == "salt" and any(k.kind == "salt" and k.retired is None for k in self.keys):
            raise UsageError(SALT_KEY_IS_FIXED)
        if kind == "ed25519":
            secret = Ed25519PrivateKey.generate().private_bytes_raw()
        else:
            secret = secrets.token_bytes(HMAC_KEY_BYTES)
        created = time.time() if now is None else now
        # Ids sort by age within a kind and never repeat.
        key = Key(f"{kind}-{int(created)}-{secrets.token_hex(3)}", kind, secret, created)
        self.keys.append(key)
        return key

    def get(self, key_id: str) -> Key | None:
        """A key that still verifies (not retired), by id."""
        for key in self.keys:
            if key.id == key_id and key.retired is None:
                return key
        return None

    def retire(self, key_id: str, *, now: float | None = None) -> Key:
        """Stop a key from verifying; the current key of a kind cannot be retired while it is the only one."""
        for i, key in enumerate(self.keys):
            if key.id == key_id:
                if key.retired is not None:
                    raise UsageError(f"key {key_id} is already retired")
                if key.kind == "salt" and key.id == self.salt_key().id:
                    raise UsageError(SALT_KEY_IS_FIXED)
                live = [k for k in self.keys if k.kind == key.kind and k.retired is None]
                if len(live) == 1 and key.kind in INITIAL_KINDS:
                    raise UsageError(f"{key_id} is the only active {key.kind} key: rotate first")
                self.keys[i] = Key(key.id, key.kind, key.secret, key.created, time.time() if now is None else now)
                return self.keys[i]
        raise UsageError(f"no key {key_id!r}")

    def current(self, kind: str) -> Key:
        """The newest key of ``kind`` that is not retired (for ``salt``, the pinned :meth:`salt_key`)."""
        if kind == "salt":
            return self.salt_key()
        live = [k for k in self.keys if k.kind == kind and k.retired is None]
        if not live:
            raise KeyRingError(f"no active {kind} key in {self.path}")
        return max(live, key=lambda k: k.created)

    def salt_key(self) -> Key:
        """The key fake SCRAM salts are derived from: the *oldest* active salt key.

        Pinned to the oldest, not the newest: no key added later (older saslkit
        could rotate salt keys) changes it.
        """
        live = [k for k in self.keys if k.kind == "salt" and k.retired is None]
        if not live:
            raise KeyRingError(f"no active salt key in {self.path}")
        return min(live, key=lambda k: (k.created, k.id))

    @property
    def server_secret(self) -> bytes:
        """The secret for fake SCRAM salts (:meth:`salt_key`; fixed for the life of the database)."""
        return self.salt_key().secret
