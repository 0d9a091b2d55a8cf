"""A local certificate authority and the server certificate it signs.

azure-core refuses to send a bearer token over plain http, so dockyard has to speak HTTPS even on
loopback. It makes its own CA on first start (kept in the home, so trust survives restarts), signs a
server certificate for localhost, 127.0.0.1 and ::1 (plus any extra names asked for), and writes a
bundle of its CA *and* the system CAs so that pointing REQUESTS_CA_BUNDLE / SSL_CERT_FILE at it does
not break every other HTTPS call in the same shell.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.home import Home, write_private, write_public

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
_CA_LIFETIME = dt.timedelta(days=3650)
_SERVER_LIFETIME = dt.timedelta(days=397)
_RENEW_BEFORE = dt.timedelta(days=30)


def ensure_tls(home: Home, extra_names: Iterable[str] = ()) -> None:
    """Make sure the CA, a current server certificate covering every name, and the bundle exist."""
    ca_cert, ca_key = _ensure_ca(home)
    names = tuple(dict.fromkeys([*DEFAULT_NAMES, *extra_names]))
    if _server_cert_needs_renewal(home, ca_cert, names):
        _issue_server_cert(home, ca_cert, ca_key, names)
    _write_bundle(home)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ensure_ca(home: Home) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if home.ca_cert.exists() and home.ca_key.exists():
        cert = x509.load_pem_x509_certificate(home.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(home.ca_key.read_bytes(), password=None)
        if cert.not_valid_after_utc - _RENEW_BEFORE > _now() and isinstance(key, ec.EllipticCurvePrivateKey):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockyard"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"dockyard local CA ({home.root})"[:64]),
    ])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(home.ca_key, _private_pem(key))
    write_public(home.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    # A new CA invalidates the old server certificate.
    home.server_cert.unlink(missing_ok=True)
    return cert, key


def _server_cert_needs_renewal(home: Home, ca_cert: x509.Certificate, names: tuple[str, ...]) -> bool:
    if not (home.server_cert.exists() and home.server_key.exists()):
        return True
    cert = x509.load_pem_x509_certificate(home.server_cert.read_bytes())
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - _RENEW_BEFORE < _now():
        return True
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    covered = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return not all(_canonical(n) in covered for n in names)


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _issue_server_cert(
    home: Home, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(home.server_key, _private_pem(key))
    write_public(home.server_cert, cert.public_bytes(serialization.Encoding.PEM))


def system_ca_file() -> Path:
    """The machine's CA bundle, or certifi's where the machine has none."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(certifi.where())


def _write_bundle(home: Home) -> None:
    system = system_ca_file().read_bytes()
    ours = home.ca_cert.read_bytes()
    bundle = ours + b"\n" + system
    if not home.ca_bundle.exists() or home.ca_bundle.read_bytes() != bundle:
        write_public(home.ca_bundle, bundle)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
