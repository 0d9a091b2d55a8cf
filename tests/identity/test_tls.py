from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from dockyard.home import Home
from dockyard.identity.tls import DEFAULT_NAMES, ensure_tls, system_ca_file


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home").ensure()
    ensure_tls(home)
    return home


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def count_certificates(pem: bytes) -> int:
    return pem.count(b"-----BEGIN CERTIFICATE-----")


def test_files_are_created(home: Home) -> None:
    for path in (home.ca_cert, home.ca_key, home.server_cert, home.server_key, home.ca_bundle):
        assert path.is_file(), path
        assert path.stat().st_size > 0, path


@pytest.mark.parametrize("key", ["ca_key", "server_key"])
def test_private_keys_are_owner_only(home: Home, key: str) -> None:
    assert mode(getattr(home, key)) == 0o600


def test_tls_folder_is_owner_only(home: Home) -> None:
    assert mode(home.tls) == 0o700


def test_no_temporary_files_are_left(home: Home) -> None:
    assert sorted(p.name for p in home.tls.iterdir()) == ["ca-bundle.pem", "ca-key.pem", "ca.pem", "server-key.pem",
                                                          "server.pem"]


def test_ca_is_a_ca_and_signs_the_server_certificate(home: Home) -> None:
    ca, server = load_cert(home.ca_cert), load_cert(home.server_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert server.issuer == ca.subject
    server.verify_directly_issued_by(ca)


def test_server_certificate_names(home: Home) -> None:
    assert DEFAULT_NAMES == ("localhost", "127.0.0.1", "::1")
    san = load_cert(home.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]


# -- a real handshake ---------------------------------------------------------------------------------


@pytest.fixture
def tls_server(home: Home) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting dockyard's server certificate for one connection; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(home.server_cert, home.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve_once() -> None:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        with raw:
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.sendall(b"hello")
            except OSError:  # includes the handshake failures the client provokes on purpose
                pass

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    with listener:
        yield listener.getsockname()[1]
        thread.join(timeout=10)


def handshake(port: int, context: ssl.SSLContext, server_hostname: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as conn:
            return conn.recv(5)


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1", "::1"])
def test_server_certificate_verifies_against_the_ca(home: Home, tls_server: int, server_hostname: str) -> None:
    context = ssl.create_default_context(cafile=str(home.ca_cert))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert handshake(tls_server, context, server_hostname) == b"hello"


def test_server_certificate_verifies_against_the_bundle(home: Home, tls_server: int) -> None:
    context = ssl.create_default_context(cafile=str(home.ca_bundle))
    assert handshake(tls_server, context, "localhost") == b"hello"


@pytest.mark.parametrize("server_hostname", ["example.com", "127.0.0.2", "::2"])
def test_server_certificate_does_not_cover_other_names(home: Home, tls_server: int, server_hostname: str) -> None:
    context = ssl.create_default_context(cafile=str(home.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls_server, context, server_hostname)


def test_another_ca_does_not_verify_the_server(home: Home, tls_server: int, tmp_path: Path) -> None:
    other = Home(tmp_path / "other").ensure()
    ensure_tls(other)
    context = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls_server, context, "localhost")


# -- keeping and renewing ------------------------------------------------------------------------------


def test_second_call_keeps_everything(home: Home) -> None:
    before = {p: p.read_bytes() for p in (home.ca_cert, home.ca_key, home.server_cert, home.server_key, home.ca_bundle)}
    ensure_tls(home)
    assert {p: p.read_bytes() for p in before} == before


def test_extra_name_reissues_the_server_certificate_and_keeps_the_ca(home: Home) -> None:
    ca, ca_key, server = home.ca_cert.read_bytes(), home.ca_key.read_bytes(), home.server_cert.read_bytes()
    ensure_tls(home, extra_names=["dockyard.internal", "10.0.0.5"])
    assert home.ca_cert.read_bytes() == ca
    assert home.ca_key.read_bytes() == ca_key
    assert home.server_cert.read_bytes() != server
    reissued = load_cert(home.server_cert)
    assert san_names(reissued) == {"localhost", "127.0.0.1", "::1", "dockyard.internal", "10.0.0.5"}
    reissued.verify_directly_issued_by(load_cert(home.ca_cert))
    assert mode(home.server_key) == 0o600


def test_names_already_covered_do_not_reissue(home: Home) -> None:
    server = home.server_cert.read_bytes()
    ensure_tls(home, extra_names=["localhost", "0:0:0:0:0:0:0:1"])
    assert home.server_cert.read_bytes() == server


def test_a_new_ca_reissues_the_server_certificate(home: Home) -> None:
    home.ca_key.unlink()
    ensure_tls(home)
    ca = load_cert(home.ca_cert)
    load_cert(home.server_cert).verify_directly_issued_by(ca)


# -- bundle -------------------------------------------------------------------------------------------


def test_bundle_holds_our_ca_and_the_system_cas(home: Home) -> None:
    bundle = home.ca_bundle.read_bytes()
    ca = home.ca_cert.read_bytes()
    assert bundle.startswith(ca)
    assert system_ca_file().read_bytes() in bundle
    assert count_certificates(bundle) >= 2
    assert count_certificates(bundle) == 1 + count_certificates(system_ca_file().read_bytes())


def test_bundle_loads_as_a_trust_store(home: Home) -> None:
    context = ssl.create_default_context(cafile=str(home.ca_bundle))
    assert len(context.get_ca_certs()) >= 2
