"""A hand-driven phone connection over a real socket, for hostile-input tests."""

from __future__ import annotations

import datetime
import ipaddress
import socket

import pylsl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from outlets.phone import protocol as P


class RawClient:
    """A hand-driven connection for sending arbitrary bytes."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", source: str | None = None
    ) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=5, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dec = P.FrameDecoder()
        self.inbox: list[P.Message] = []
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def msg(self, **fields) -> None:
        self.send(P.encode_json(fields))

    def hello(self, device_id: str, token: str | None, **extra) -> dict:
        self.msg(
            type="hello", id=1, protocol=1, device_id=device_id, token=token, **extra
        )
        return self.wait(lambda m: m.type in ("welcome", "error")).fields

    def wait(self, pred, timeout: float = 5.0) -> P.Message:
        while True:
            for m in self.inbox:
                if pred(m):
                    self.inbox.remove(m)
                    return m
            self.sock.settimeout(timeout)
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
                raise EOFError("connection closed")
            self.inbox += list(self.dec.feed(data))

    def error(self, timeout: float = 5.0) -> dict:
        return self.wait(lambda m: m.type == "error", timeout).fields

    def closed(self, timeout: float = 5.0) -> bool:
        try:
            while True:
                self.wait(lambda m: False, timeout)
        except (EOFError, ConnectionResetError):
            return True
        except (TimeoutError, OSError):
            return self.eof

    def close(self) -> None:
        self.sock.close()

    def sync(self, n: int = 64, offset: float = 1000.0) -> None:
        """Do ``n`` clock-sync exchanges with phone time = LSL time + ``offset``."""
        for seq in range(n):
            t1 = pylsl.local_clock() + offset
            self.msg(type="sync_req", seq=seq, t1=t1)
            self.wait(lambda m, s=seq: m.type == "sync_resp" and m.get("seq") == s)
            self.msg(type="sync_done", seq=seq, t1=t1, t4=pylsl.local_clock() + offset)


def self_signed(tmp_path):
    """A self-signed certificate for 127.0.0.1/localhost, made with ``cryptography``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    alt = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(alt, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_path
