"""TLS channel-binding data (RFC 5929, RFC 9266).

* ``tls-unique`` (RFC 5929 §3): the first Finished message of the latest
  handshake.  Undefined on TLS 1.3 (RFC 9266 §3), so refused there.
* ``tls-server-end-point`` (RFC 5929 §4.1): hash of the server certificate
  (DER) with the certificate's signature hash, MD5 and SHA-1 upgraded to
  SHA-256.  **Choice:** for signature algorithms without a single hash
  (Ed25519, Ed448) RFC 5929 leaves the binding undefined; like Prosody and
  ejabberd we use SHA-256, so clients of those servers interoperate.
* ``tls-exporter`` (RFC 9266 §2): ``TLS-Exporter("EXPORTER-Channel-Binding",
  "", 32)``.  CPython's ``ssl`` cannot export keying material, so it comes
  from a pyOpenSSL connection (:mod:`saslkit.net.tls`) or from the caller.

Data is returned raw, without any ``tls-unique:`` prefix (RFC 5802 §7).
"""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import SaslError, UsageError

__all__ = [
    "EXPORTER_LABEL",
    "ChannelBindingUnavailable",
    "channel_bindings_from_pyopenssl",
    "channel_bindings_from_ssl",
    "extended_master_secret",
    "tls_server_end_point",
]

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
EXPORTER_LENGTH = 32
CHANNEL_BINDING_TYPES = ("tls-exporter", "tls-server-end-point", "tls-unique")


class ChannelBindingUnavailable(SaslError):
    """The requested channel-binding type cannot be produced on this connection."""


def _load_certificate(cert: bytes) -> x509.Certificate:
    try:
        if cert.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(cert)
        return x509.load_der_x509_certificate(cert)
    except ValueError as exc:
        raise UsageError(f"not a certificate: {exc}") from exc


def tls_server_end_point(cert: bytes) -> bytes:
    """``tls-server-end-point`` data for a server certificate (DER or PEM), RFC 5929 §4.1."""
    certificate = _load_certificate(cert)
    der = certificate.public_bytes(_der_encoding())
    algorithm = certificate.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        name = "sha256"  # MD5/SHA-1 -> SHA-256 (§4.1); hash-less Ed25519/Ed448 -> SHA-256 (our choice)
    else:
        name = algorithm.name.replace("-", "_")
    try:
        return hashlib.new(name, der).digest()
    except ValueError:
        return hashlib.sha256(der).digest()


def _der_encoding() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def channel_bindings_from_ssl(
    conn: ssl.SSLObject | ssl.SSLSocket, *, server_certificate: bytes | None = None
) -> dict[str, bytes]:
    """Every binding the stdlib connection can give, keyed by type.

    On the client side ``tls-server-end-point`` comes from the peer
    certificate; on the server side pass our own certificate (DER or PEM) as
    ``server_certificate``, since ``ssl`` does not expose it.  ``tls-unique``
    is included only below TLS 1.3; ``tls-exporter`` never (use pyOpenSSL).
    """
    version = conn.version()
    if version is None:
        raise ChannelBindingUnavailable("TLS handshake not complete")
    out: dict[str, bytes] = {}
    if version != "TLSv1.3":
        unique = conn.get_channel_binding("tls-unique")
        if unique:
            out["tls-unique"] = unique
    cert = server_certificate
    if cert is None and not conn.server_side:
        cert = conn.getpeercert(binary_form=True)
    if cert:
        out["tls-server-end-point"] = tls_server_end_point(cert)
    return out


def channel_bindings_from_pyopenssl(
    conn: Any, *, server_side: bool, server_certificate: bytes | None = None
) -> dict[str, bytes]:
    """Every binding a pyOpenSSL ``SSL.Connection`` can give, keyed by type.

    ``tls-exporter`` comes from ``export_keying_material`` (RFC 9266 §2: empty
    context).  ``tls-unique`` (below TLS 1.3 only) is the client's Finished in
    a full handshake and the server's in a resumed one (RFC 5929 §3.1).  Below
    TLS 1.3 both are given only if the extended master secret was negotiated
    (RFC 7627 §1, RFC 9266 §4.2): without it a man in the middle can make two
    connections share them (the triple handshake attack).
    """
    version = conn.get_protocol_version_name()
    safe = version == "TLSv1.3" or extended_master_secret(conn) is True
    out: dict[str, bytes] = {}
    if safe:
        out["tls-exporter"] = conn.export_keying_material(EXPORTER_LABEL, EXPORTER_LENGTH, b"")
    reused = _pyopenssl_session_reused(conn) if version != "TLSv1.3" and safe else None
    if reused is not None:
        # Full handshake: the client's Finished comes first; resumed: the server's.
        first_is_ours = server_side == reused
        finished = conn.get_finished() if first_is_ours else conn.get_peer_finished()
        if finished:
            out["tls-unique"] = finished
    cert = server_certificate
    if cert is None:
        chosen = conn.get_certificate() if server_side else conn.get_peer_certificate()
        if chosen is not None:
            from OpenSSL import crypto

            cert = crypto.dump_certificate(crypto.FILETYPE_ASN1, chosen)
    if cert:
        out["tls-server-end-point"] = tls_server_end_point(cert)
    return out


def extended_master_secret(conn: Any) -> bool | None:
    """Whether a pyOpenSSL connection negotiated the extended master secret (RFC 7627); ``None``: cannot tell.

    pyOpenSSL has no public call for it; OpenSSL's ``SSL_get_extms_support``
    is reached through pyOpenSSL's bindings, and without an answer the
    bindings that need it are left out.
    """
    try:
        from OpenSSL._util import lib

        answer = int(lib.SSL_get_extms_support(conn._ssl))
    except (ImportError, AttributeError):
        return None
    return None if answer < 0 else answer == 1


def _pyopenssl_session_reused(conn: Any) -> bool | None:
    """Whether the handshake resumed a session; ``None`` if pyOpenSSL cannot tell.

    pyOpenSSL has no public ``session_reused()``; fall back to OpenSSL's
    ``SSL_session_reused`` through pyOpenSSL's bindings.  Without an answer
    tls-unique is left out rather than guessed.
    """
    method = getattr(type(conn), "session_reused", None)
    if callable(method):
        return bool(method(conn))
    try:
        from OpenSSL._util import lib

        return bool(lib.SSL_session_reused(conn._ssl))
    except (ImportError, AttributeError):
        return None


def select(bindings: dict[str, bytes], cb_type: str) -> bytes:
    """Pick one type from a bindings mapping or raise :class:`ChannelBindingUnavailable`."""
    try:
        return bindings[cb_type]
    except KeyError:
        if cb_type not in CHANNEL_BINDING_TYPES:
            raise UsageError(f"unknown channel-binding type {cb_type!r}") from None
        raise ChannelBindingUnavailable(f"{cb_type} is not available on this connection") from None
