"""Self-signed certificates: for the DTLS check, and for trying HTTPS on a machine of your own
(``python -m engine.server.certs NAME cert.pem key.pem``; browsers will ask you to accept it)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(key: Any, name: str, days: int = 30) -> x509.Certificate:
    """A certificate for ``name`` (common name and DNS name), signed by its own ``key``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def write_pem(cert: x509.Certificate, key: Any, cert_path: Path, key_path: Path) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m engine.server.certs NAME CERT.pem KEY.pem", file=sys.stderr)
        return 2
    key = ec.generate_private_key(ec.SECP256R1())
    write_pem(self_signed(key, argv[0], days=365), key, Path(argv[1]), Path(argv[2]))
    print(f"wrote {argv[1]} and {argv[2]} for {argv[0]} (self-signed, 365 days)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
