"""Hostile WebSocket peers: the same limits and replies as the TCP relay path."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import uuid

import pytest

from lsl_session.session import Session, create_session_folder
from outlets.phone.relay import PhoneRelay
from outlets.phone.web import WebFront
from outlets.phone.web import server as web_server


def _masked(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True
) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WsClient:
    """A raw WebSocket client over a plain socket (the page path without TLS)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")

    def send_json(self, message: dict) -> None:
        self.sock.sendall(_masked(0x1, json.dumps(message).encode()))

    def recv(self) -> tuple[int, bytes] | None:
        """One server frame, or None at EOF."""
        try:
            b0, b1 = self._exact(2)
        except EOFError:
            return None
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self._exact(8))
        return b0 & 0x0F, self._exact(n)

    def recv_json(self) -> dict:
        while True:
            frame = self.recv()
            assert frame is not None, "closed before a JSON reply"
            if frame[0] == 0x1:
                return json.loads(frame[1])

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def closes(self) -> bool:
        """Read to the end: True at a clean EOF (a TCP reset raises instead)."""
        while self.recv() is not None:
            pass
        return True


@pytest.fixture
def plain_front(tmp_path):
    device, token = f"h_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    folder = create_session_folder(tmp_path / "rec", "hostile")
    session = Session(folder)
    relay = PhoneRelay(tokens={device: token}, session=session).start()
    front = WebFront(relay).start()
    yield relay, front, device, token, folder
    front.stop()
    relay.stop()
    session.close()


def _hello(device: str, token: str) -> dict:
    return {"type": "hello", "id": 1, "protocol": 1, "device_id": device,
            "token": token, "capabilities": ["motion_data"]}  # fmt: skip


def test_wrong_token_is_refused_without_echo(plain_front):
    relay, front, device, _token, _ = plain_front
    client = WsClient(front.port)
    client.send_json(_hello(device, "guess-" + "x" * 500))
    reply = client.recv_json()
    assert reply["type"] == "error" and reply["code"] == "auth_failed"
    assert reply["fatal"] is True
    assert "guess" not in json.dumps(reply) and device not in json.dumps(reply)
    assert client.closes()
    assert all("guess" not in json.dumps(e) for e in relay.history)


def test_oversized_preauth_message_is_bad_frame_unread(plain_front):
    _, front, _, _, _ = plain_front
    client = WsClient(front.port)
    # declare 1 MiB before hello: refused from the header alone (8 KiB pre-auth)
    client.sock.sendall(_masked(0x2, b"J" + b" " * (1 << 20)))
    reply = client.recv_json()
    assert reply["code"] == "bad_frame" and reply["fatal"] is True
    assert client.closes()


def test_unmasked_frame_closes_with_protocol_error(plain_front):
    _, front, _, _, _ = plain_front
    client = WsClient(front.port)
    client.sock.sendall(_masked(0x1, b'{"type":"hello"}', mask=False))
    frame = client.recv()
    assert frame is not None and frame[0] == 0x8
    assert struct.unpack(">H", frame[1][:2])[0] == 1002


def test_bad_json_and_first_message_rules(plain_front):
    front = plain_front[1]
    client = WsClient(front.port)
    client.sock.sendall(_masked(0x1, b"[" * 5000))
    reply = client.recv_json()
    assert reply["code"] == "bad_json" and reply["fatal"] is True
    other = WsClient(front.port)
    other.send_json({"type": "heartbeat", "t": 1.0})
    assert other.recv_json()["code"] == "hello_required"


def test_upload_path_names_are_refused(plain_front):
    _, front, device, token, folder = plain_front
    client = WsClient(front.port)
    client.send_json(_hello(device, token))
    welcome = client.recv_json()
    assert welcome["type"] == "welcome"
    for name in ("../../evil.webm", "a/b.webm", "x.exe", ".."):
        client.send_json({"type": "upload_offer", "id": 7, "name": name, "size": 10,
                          "sha256": "0" * 64, "file_type": "rgb"})  # fmt: skip
        while (reply := client.recv_json())["type"] != "error":
            pass
        assert reply["code"] == "bad_name", name
    assert not list(folder.parent.glob("evil*"))
    assert not list(folder.rglob("*.exe*"))


def test_bad_handshakes_and_unknown_paths(plain_front):
    _, front, _, _, _ = plain_front

    def http(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
            s.sendall(raw)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    assert http(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    assert http(b"GET /../../etc/passwd HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert http(b"POST / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    page = http(b"GET / HTTP/1.1\r\n\r\n")
    assert page.startswith(b"HTTP/1.1 200") and b"phone.js" in page
    assert b"Cross-Origin-Opener-Policy: same-origin" in page
    # a request head over the limit is dropped without a reply
    assert http(b"GET / HTTP/1.1\r\nX: " + b"a" * (web_server.MAX_HEAD * 2)) == b""
