"""TLS and JWT key material for the emulator, generated once per state directory.

simple-salesforce only builds ``https://`` URLs, so the emulator must serve TLS with a
certificate the client can verify: we mint a small local CA and a server certificate for the
loopback addresses (and the Salesforce login hosts, for clients that keep the original host
name). The connected app's JWT bearer flow needs an RSA key pair and the certificate uploaded to
the app; the emulator verifies RS256 assertions against that certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Hosts simple-salesforce hard-codes; a client that pins the original host name (instead of
# rewriting it to 127.0.0.1) still verifies against this certificate.
_DEFAULT_DNS_NAMES = (
    "localhost",
    "login.salesforce.com",
    "test.salesforce.com",
    "*.my.salesforce.com",
    "*.salesforce.com",
)
_VALID_DAYS = 825  # the longest lifetime clients accept for a server certificate

_lock = threading.Lock()


@dataclass(frozen=True)
class CertBundle:
    """Paths of the PEM files in one state directory."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    jwt_private_key: Path  # the connected app's private key (clients sign JWTs with it)
    jwt_cert: Path  # the certificate registered on the connected app

    def jwt_public_key(self) -> rsa.RSAPublicKey:
        """The RSA public key the emulator verifies RS256 assertions with."""
        cert = x509.load_pem_x509_certificate(self.jwt_cert.read_bytes())
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            msg = f"{self.jwt_cert} does not hold an RSA certificate"
            raise TypeError(msg)
        return key


def ensure_certs(state_dir: str | Path, *, extra_hosts: tuple[str, ...] = ()) -> CertBundle:
    """The certificates in ``state_dir/tls``, generating whatever is missing.

    Existing files are reused, so a client that trusted the CA once keeps trusting it across
    restarts. ``extra_hosts`` (names or IP addresses) are added to a newly made server
    certificate, for an emulator bound to a non-loopback address.
    """
    tls_dir = Path(state_dir) / "tls"
    bundle = CertBundle(
        ca_cert=tls_dir / "ca.pem",
        ca_key=tls_dir / "ca.key",
        server_cert=tls_dir / "server.pem",
        server_key=tls_dir / "server.key",
        jwt_private_key=tls_dir / "jwt_private_key.pem",
        jwt_cert=tls_dir / "jwt_cert.pem",
    )
    with _lock:
        tls_dir.mkdir(parents=True, exist_ok=True)
        if not (bundle.ca_cert.exists() and bundle.ca_key.exists()):
            _make_ca(bundle)
            bundle.server_cert.unlink(missing_ok=True)  # signed by the old CA
        if not (bundle.server_cert.exists() and bundle.server_key.exists()) or not _covers(
            bundle.server_cert, extra_hosts
        ):
            _make_server_cert(bundle, extra_hosts)
        if not (bundle.jwt_private_key.exists() and bundle.jwt_cert.exists()):
            _make_jwt_pair(bundle)
    return bundle


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    # Private keys are readable by the owner only, written atomically so a concurrent reader
    # never sees half a key.
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _pem_key(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed(
    key: CertificateIssuerPrivateKeyTypes, common_name: str
) -> x509.CertificateBuilder:
    """A builder for a ten-year certificate whose subject and issuer are both ``common_name``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=3650))
    )


def _make_ca(bundle: CertBundle) -> None:
    # EC keys: generated in microseconds, unlike RSA, which keeps fixture start-up fast.
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _self_signed(key, "sf_activations emulator local CA")
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(bundle.ca_key, _pem_key(key))
    _write_public(bundle.ca_cert, cert.public_bytes(serialization.Encoding.PEM))


def _san_entries(extra_hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    entries += [x509.DNSName(name) for name in _DEFAULT_DNS_NAMES]
    for host in extra_hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return entries


def _covers(cert_path: Path, hosts: tuple[str, ...]) -> bool:
    if not hosts:
        return True
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    present |= set(san.get_values_for_type(x509.DNSName))
    return all(host in present for host in hosts)


def _make_server_cert(bundle: CertBundle, extra_hosts: tuple[str, ...]) -> None:
    ca_key = serialization.load_pem_private_key(bundle.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        msg = f"{bundle.ca_key} is not the emulator's CA key"
        raise TypeError(msg)
    ca_cert = x509.load_pem_x509_certificate(bundle.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san_entries(extra_hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(bundle.server_key, _pem_key(key))
    _write_public(bundle.server_cert, cert.public_bytes(serialization.Encoding.PEM))


def _make_jwt_pair(bundle: CertBundle) -> None:
    # RS256 is what Salesforce's JWT bearer flow requires, so this one key must be RSA.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, "sf_activations connected app").sign(key, hashes.SHA256())
    _write_private(bundle.jwt_private_key, _pem_key(key))
    _write_public(bundle.jwt_cert, cert.public_bytes(serialization.Encoding.PEM))
