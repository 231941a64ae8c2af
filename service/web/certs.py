"""``stackcue certs``: a CA made once, and a server certificate it signs for the names the phone uses.

The phone trusts the CA once (docs/serve.md says how on Android and iOS); a new server certificate (another
hotspot address, another name) is then trusted without touching the phone again, so the CA is never
overwritten. Keys are ECDSA P-256 (fast TLS handshakes on a Pi Zero, accepted by every phone browser). The
server certificate lasts 825 days, the most iOS accepts for a TLS server certificate; the CA ten years.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stackcue.errors import InputError, StorageError

CA_DAYS = 3650
SERVER_DAYS = 825
CA_CRT, CA_KEY, SERVER_CRT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


@dataclass(frozen=True)
class CertFiles:
    ca_crt: Path
    server_crt: Path
    server_key: Path
    ca_made: bool  # False: the existing CA was kept
    names: tuple[str, ...]
    ca_sha256: str


def server_files(cert_dir: Path) -> tuple[Path, Path] | None:
    """(certificate, key) when ``cert_dir`` holds a server certificate, else None."""
    crt, key = cert_dir / SERVER_CRT, cert_dir / SERVER_KEY
    return (crt, key) if crt.is_file() and key.is_file() else None


def cert_names(crt: Path) -> list[str]:
    """The host names and addresses a server certificate is for (its subjectAltName), as a Host header names them."""
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    for ip in san.get_values_for_type(x509.IPAddress):
        names.append(f"[{ip}]" if ip.version == 6 else str(ip))
    return names


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    label = name.rstrip(".").lower()
    if (
        not label
        or len(label) > 253
        or not all(
            part and len(part) <= 63 and part.replace("-", "").isalnum() and part.isascii() for part in label.split(".")
        )
    ):
        raise InputError(f"--name {name!r} is neither a host name (stackcue.local) nor an IP address")
    return x509.DNSName(label)


def _write(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    crt, key = cert_dir / CA_CRT, cert_dir / CA_KEY
    if not crt.exists() and not key.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        pkey = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(
            f"{cert_dir}: the CA ({CA_CRT}, {CA_KEY}) cannot be read ({exc}); it is never overwritten: "
            "move both away to make a new one (and install the new CA on the phone)"
        ) from None
    if not isinstance(pkey, ec.EllipticCurvePrivateKey):
        raise StorageError(f"{cert_dir / CA_KEY}: not an EC key made by `stackcue certs`")
    return cert, pkey


def _make_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stackcue"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"stackcue CA {socket.gethostname()} {now:%Y-%m-%d}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_certs(cert_dir: Path, names: list[str], now: dt.datetime | None = None) -> CertFiles:
    """The CA (made only when there is none) and a new server certificate for ``names``."""
    if not names:
        raise InputError("give the names the phone will use: --name stackcue.local --name 192.168.43.10")
    sans = [_san(n) for n in names]
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        loaded = _load_ca(cert_dir)
        ca_made = loaded is None
        if loaded is None:
            ca_cert, ca_key = _make_ca(now)
            _write(cert_dir / CA_KEY, _key_pem(ca_key), private=True)
            _write(cert_dir / CA_CRT, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        else:
            ca_cert, ca_key = loaded
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(cert_dir / SERVER_KEY, _key_pem(key), private=True)
        _write(cert_dir / SERVER_CRT, cert.public_bytes(serialization.Encoding.PEM), private=False)
    except OSError as exc:
        raise StorageError(f"{cert_dir}: cannot write the certificates ({exc.strerror or exc})") from None
    fp = ca_cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return CertFiles(cert_dir / CA_CRT, cert_dir / SERVER_CRT, cert_dir / SERVER_KEY, ca_made, tuple(names), fp)


INSTALL_STEPS = """\
Install the CA on the phone once (then every server certificate it signs is trusted):
  Android: copy {ca} to the phone, then Settings → Security → Encryption & credentials → Install a certificate
           → CA certificate → pick the file (the wording varies a little by maker and version).
  iOS:     AirDrop or mail {ca} to the phone and open it; Settings → General → VPN & Device Management → the
           downloaded profile → Install; then Settings → General → About → Certificate Trust Settings → turn on
           full trust for "{cn}".
Check on the phone that the fingerprint shown is SHA-256 {fp}"""


def describe(files: CertFiles) -> str:
    """What ``stackcue certs`` prints: the files, and how to install the CA on a phone."""
    ca_cert = x509.load_pem_x509_certificate(files.ca_crt.read_bytes())
    cn = ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    head = (
        f"{'made a new CA' if files.ca_made else 'kept the CA'}: {files.ca_crt}\n"
        f"server certificate for {', '.join(files.names)}: {files.server_crt} (key {files.server_key}, mode 0600), "
        f"valid {SERVER_DAYS} days\n"
    )
    return head + INSTALL_STEPS.format(ca=files.ca_crt, cn=cn, fp=files.ca_sha256)
