"""An archipelago's certificate authority and its islands' certificates (``cryptography``).

One CA per archipelago (``CA_DIR/ca.pem``, ``CA_DIR/ca-key.pem``) signs one certificate per
island. The island's name is the certificate's common name and a ``DNS`` name of it; its host
(and ``localhost``/``127.0.0.1``) are subject names too, so clients verify the host they dial.
The same key signs the island's tokens and its catalog changes. Island keys are RSA 2048: the
XRootD GSI security plugin (root:// between islands) takes RSA keys only; the CA's is EC P-256.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archipel.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from metacatalog.signing import sign, verify_signature

__all__ = ["CA_FILE", "CA_KEY_FILE", "CERT_FILE", "KEY_FILE", "IslandCredentials", "create_ca", "issue_island",
           "load_credentials", "check_ca", "verify_island_cert", "verify_island_der", "island_of", "sign", "verify_signature"]

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_FILE = "island.pem"
KEY_FILE = "island-key.pem"
ISLAND_OU = "archipel-island"  # marks an island's certificate (a user's would not carry it)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_ca(ca_dir: str | Path, name: str = "archipel", days: int = 3650) -> Path:
    """Creates a new archipelago CA in ``ca_dir``; refuses to overwrite one."""
    folder = Path(ca_dir)
    if (folder / CA_FILE).exists() or (folder / CA_KEY_FILE).exists():
        raise InvalidArgument(f"{folder} already holds a CA ({CA_FILE}); use it or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Archipel"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{name} archipelago CA")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(folder / CA_KEY_FILE, _key_pem(key))
    (folder / CA_FILE).write_bytes(_pem(cert))
    return folder / CA_FILE


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise InvalidArgument(f"{ca_dir} is not a CA folder: {exc.filename} is missing "
                              f"(create one with `archipel certs init {ca_dir}`)") from None
    except ValueError as exc:
        raise InvalidArgument(f"{ca_dir}: not a readable CA ({exc})") from None
    return cert, key


def check_ca(ca_dir: Path) -> None:
    """InvalidArgument naming what is wrong when ``ca_dir`` is not a usable CA folder."""
    _load_ca(Path(ca_dir))


def issue_island(ca_dir: str | Path, island_dir: str | Path, name: str, host: str, days: int = 825) -> None:
    """Signs a certificate for island ``name`` with the CA in ``ca_dir`` and writes ``ca.pem``,
    the certificate and its key into ``island_dir`` (the CA's key stays where it is)."""
    ca_cert, ca_key = _load_ca(Path(ca_dir))
    folder = Path(island_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.DNSName(name), x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    unique = list(dict.fromkeys(names))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ISLAND_OU),
                                     x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(min(_now() + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(unique), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, data_encipherment=True,
                                         content_commitment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / CA_FILE).write_bytes(_pem(ca_cert))
    _write_private(folder / KEY_FILE, _key_pem(key))
    (folder / CERT_FILE).write_bytes(_pem(cert))


@dataclass(frozen=True)
class IslandCredentials:
    """An island's CA certificate, own certificate and key, as PEM and as objects."""

    name: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca: x509.Certificate
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def sign(self, data: bytes) -> bytes:
        return sign(self.key, data)


def load_credentials(folder: str | Path, name: str, ca: str = CA_FILE, cert: str = CERT_FILE,
                     key: str = KEY_FILE) -> IslandCredentials:
    """The island's credentials from its folder; FailedPrecondition naming what is wrong."""
    root = Path(folder)
    paths = {k: (Path(v) if Path(v).is_absolute() else root / v) for k, v in (("ca", ca), ("cert", cert), ("key", key))}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FailedPrecondition(f"island {name}: missing {', '.join(missing)} (islands speak TLS only: create "
                                 f"them with `archipel island init DIR --name {name} --ca CA_DIR`)")
    try:
        ca_pem, cert_pem, key_pem = (paths[k].read_bytes() for k in ("ca", "cert", "key"))
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        own = x509.load_pem_x509_certificate(cert_pem)
        priv = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise FailedPrecondition(f"island {name}: unreadable certificate or key: {exc}") from None
    verify_island_cert(ca_cert, own)
    if island_of(own) != name:
        raise FailedPrecondition(f"island {name}: its certificate is issued to {island_of(own)!r}")
    if not isinstance(priv, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) or priv.public_key() != own.public_key():
        raise FailedPrecondition(f"island {name}: {paths['key']} is not the key of {paths['cert']}")
    return IslandCredentials(name, ca_pem, cert_pem, key_pem, ca_cert, own, priv)


def island_of(cert: x509.Certificate) -> str:
    """The island a certificate was issued to ("" when it is not an island's)."""
    units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return str(names[0]) if ISLAND_OU in units and names else ""


def verify_island_cert(ca: x509.Certificate, cert: x509.Certificate) -> str:
    """The island name of ``cert`` if the archipelago's CA signed it and it is valid now;
    PermissionDenied otherwise."""
    return _verified(ca.public_bytes(serialization.Encoding.DER), cert.public_bytes(serialization.Encoding.DER))


@lru_cache(maxsize=256)
def _verified_cached(ca_der: bytes, cert_der: bytes, hour: int) -> str:
    ca = x509.load_der_x509_certificate(ca_der)
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise PermissionDenied("certificate not issued by this archipelago's CA") from None
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise PermissionDenied(f"certificate of {island_of(cert) or '?'} is not valid now "
                               f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    name = island_of(cert)
    if not name:
        raise PermissionDenied("certificate is not an island's")
    return name


def _verified(ca_der: bytes, cert_der: bytes) -> str:
    # Cached per hour: validity is re-checked at least that often.
    return _verified_cached(ca_der, cert_der, int(_now().timestamp() // 3600))


def verify_island_der(ca: x509.Certificate, cert_der: bytes) -> str:
    """Like ``verify_island_cert`` for a DER certificate (malformed bytes are refused)."""
    try:
        x509.load_der_x509_certificate(cert_der)
    except ValueError:
        raise PermissionDenied("malformed certificate") from None
    return _verified(ca.public_bytes(serialization.Encoding.DER), cert_der)
