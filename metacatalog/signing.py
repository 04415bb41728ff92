"""Signatures of catalog changes: each island signs its own changes with its key (RSA PKCS#1
v1.5 or ECDSA, SHA-256) and followers check them against the origin's certificate. The store and the replication
workers sign; ``federation.pki`` checks who a certificate belongs to."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

__all__ = ["sign", "signer_from_key_file", "verify_signature"]


def sign(key, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def signer_from_key_file(path: str | Path) -> Callable[[bytes], bytes]:
    """The signing function of the island key in ``path`` (PEM)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{path} is not an island key (RSA or EC)")
    return lambda data: sign(key, data)


@lru_cache(maxsize=256)
def _public_key(cert_der: bytes):
    return x509.load_der_x509_certificate(cert_der).public_key()


def verify_signature(cert_der: bytes, signature: bytes, data: bytes) -> bool:
    try:
        public = _public_key(cert_der)
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False
