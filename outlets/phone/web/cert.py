"""The relay's HTTPS certificate: the lab's own, or a self-signed one made on first use."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from lsl_session.fsutil import atomic_write_bytes


def default_cert_dir() -> Path:
    """Where the self-signed certificate is kept (``$XDG_CONFIG_HOME/lsl-session``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "lsl-session" / "relay-tls"


def self_signed(folder: Path, hosts: list[str]) -> tuple[Path, Path]:
    """Return ``(certfile, keyfile)`` in ``folder``, creating them on first use.

    The certificate is valid for ``hosts`` (names and IP addresses), ``localhost``
    and 127.0.0.1, for ten years; the key is written with mode 0600.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "relay-cert.pem", folder / "relay-key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in {*hosts, "127.0.0.1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lsl-session relay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    old = os.umask(0o077)
    try:
        atomic_write_bytes(key_path, key_bytes)
    finally:
        os.umask(old)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def page_context(
    certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """The phone page's TLS context: the lab's certificate, else the self-signed one."""
    if certfile is None:
        certfile, keyfile = self_signed(default_cert_dir(), [lan_address()])
    return server_context(certfile, keyfile)


def lan_address() -> str:
    """This machine's address on the network phones reach (loopback if none)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()
