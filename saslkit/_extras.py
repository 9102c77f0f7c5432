"""Optional dependencies: each feature that needs one imports it here and, when it is missing, says which
``pip install 'saslkit[EXTRA]'`` brings it.

The core needs only ``cryptography``, ``argon2-cffi`` and ``PyJWT``; the extras are ``redis`` (the Redis
token and penalty stores), ``postgres`` (psycopg: the PostgreSQL stores), ``aiosmtpd`` (the aiosmtpd adapter),
``tls`` (pyOpenSSL: tls-exporter and tls-unique), ``metrics`` (prometheus_client: ``serve --metrics``) and ``all``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UsageError

__all__ = ["MissingExtra", "require"]


class MissingExtra(UsageError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""

    def __init__(self, feature: str, module: str, extra: str) -> None:
        super().__init__(f"{feature} needs the {module} package: pip install 'saslkit[{extra}]'")
        self.feature, self.module, self.extra = feature, module, extra


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(feature, module.partition(".")[0], extra) from exc
