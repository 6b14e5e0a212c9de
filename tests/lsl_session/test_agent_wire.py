"""The recorder host's agent port against wrong, hostile and cut peers (real sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest

from lsl_session.agents.hub import AgentHub
from lsl_session.agents.send import Offer, Target, connect, deliver
from lsl_session.agents.wire import MAX_LINE, Channel, WireError, agent_handshake
from lsl_session.config import load_config
from lsl_session.session import Session, create_session_folder

TOKEN = "wire-test-secret-0123456789"


@pytest.fixture
def hub(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text(
        f"""
[agents]
listen = "127.0.0.1"
port = 0
token = "{TOKEN}"
stall_timeout_s = 1
max_file_gb = 0.01
[[devices]]
id = "webcam_3"
type = "pc_webcam"
simulate = true
host = "cam"
[[devices]]
id = "shimmer_9"
type = "shimmer_gsr"
simulate = true
host = "other"
"""
    )
    folder = create_session_folder(tmp_path / "rec", "wire")
    session = Session(folder)
    said: list[str] = []
    hub = AgentHub(load_config(config), said.append).start(session)
    hub.begin({"session_id": session.session_id})
    yield hub
    hub.close()
    session.close()


def _target(hub: AgentHub, token: str = TOKEN, host: str = "cam") -> Target:
    return Target("127.0.0.1", hub.address[1], token, host, "inst1", stall_timeout=2.0)


def _offer(tmp_path: Path, data: bytes, path: str = "webcam/webcam_3_x.mp4", **kw):
    local = tmp_path / "local.bin"
    local.write_bytes(data)
    fields = {
        "local": str(local), "path": path, "device_id": "webcam_3",
        "file_type": "video", "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }  # fmt: skip
    fields.update(kw)
    return Offer(**fields)


def _put(hub: AgentHub, offer: Offer, host: str = "cam") -> dict:
    chan = connect(_target(hub, host=host), "transfer")
    try:
        chan.send({"type": "put", "session_id": hub.session.session_id,
                   "path": offer.path, "device_id": offer.device_id,
                   "file_type": offer.file_type, "size": offer.size,
                   "sha256": offer.sha256})  # fmt: skip
        return chan.receive()
    finally:
        chan.close()


def _events(hub: AgentHub) -> list[dict]:
    return json.loads(hub.session.paths.log.read_text())


def test_wrong_token_is_refused_and_logs_nothing(hub):
    with pytest.raises(WireError, match=r"refused.*authentication failed"):
        connect(_target(hub, token="not-the-lab-token-at-all"), "control")
    assert not [e for e in _events(hub) if e["event"] == "agent_connected"]


def test_unknown_host_is_refused(hub):
    with pytest.raises(WireError, match="no devices for host"):
        connect(_target(hub, host="stranger"), "control")


def test_agent_refuses_a_hub_without_the_token(tmp_path):
    """A fake recorder host (answers without proving the token) is refused."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn, _ = server.accept()
    fake = Channel(conn)
    fake.send({"type": "challenge", "nonce": "00", "version": 1})
    import threading

    def answer():
        fake.receive()
        fake.send({"type": "welcome", "mac": "0" * 64})

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(WireError, match="failed to prove"):
        agent_handshake(Channel(client), TOKEN, "cam", "control", "i")
    for s in (client, conn, server):
        s.close()


@pytest.mark.parametrize(
    "path",
    [
        "../escape.mp4",
        "webcam/../../escape.mp4",
        "/etc/escape.mp4",
        "webcam/.hidden.mp4",
        "webcam/sub/x.mp4",
        "devices/shimmer_9/sensor_data/x.csv",  # another host's device
        "devices/webcam_3/../../x",
        "exports/csv/x.csv",
        "session_metadata.json",
    ],
)
def test_nothing_escapes_the_host_places(hub, tmp_path, path):
    answer = _put(hub, _offer(tmp_path, b"x" * 100, path=path))
    assert answer["type"] == "error"
    assert not (tmp_path / "escape.mp4").exists()
    assert not (tmp_path / "rec" / "escape.mp4").exists()
    assert not [e for e in _events(hub) if e["event"] == "file_received"]


def test_symlink_in_the_session_is_not_followed(hub, tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"precious")
    (hub.session.root / "webcam" / "webcam_3_x.mp4").symlink_to(outside)
    answer = _put(hub, _offer(tmp_path, b"y" * 100))
    assert answer["type"] == "error" and "symbolic link" in answer["reason"]
    assert outside.read_bytes() == b"precious"


def test_file_over_the_cap_is_refused(hub, tmp_path):
    offer = _offer(tmp_path, b"z", size=10**9)
    assert _put(hub, offer)["type"] == "error"


def test_overlong_line_ends_the_connection(hub):
    chan = connect(_target(hub), "transfer")
    chan.sock.sendall(b"{" + b" " * (MAX_LINE + 10))
    chan.sock.settimeout(5)
    with pytest.raises(WireError):
        chan.receive()
    chan.close()


def test_trickling_peer_is_cut_off_at_the_handshake(hub, monkeypatch):
    """A peer that sends one byte a second never holds a connection slot long."""
    import lsl_session.agents.wire as wire

    monkeypatch.setattr(wire, "HANDSHAKE_S", 1.0)
    sock = socket.create_connection(("127.0.0.1", hub.address[1]), timeout=10)
    sock.recv(1000)  # the challenge
    started = time.monotonic()
    closed = False
    for _ in range(20):
        try:
            sock.sendall(b" ")
            time.sleep(0.3)
        except OSError:
            closed = True
            break
    if not closed:
        sock.settimeout(5)
        closed = sock.recv(100) == b""
    assert closed and time.monotonic() - started < 5
    sock.close()


def test_wrong_sha256_is_not_registered(hub, tmp_path):
    data = os.urandom(50_000)
    offer = _offer(tmp_path, data, sha256="ab" * 32)
    result = deliver(_target(hub), hub.session.session_id, offer,
                     deadline=time.monotonic() + 20)  # fmt: skip
    assert not result.ok
    assert not (hub.session.root / offer.path).exists()
    assert not list((hub.session.root / ".incoming").glob("*.part"))
    assert hub.session.metadata()["files"] == {}


def test_cut_delivery_resumes_and_matches(hub, tmp_path):
    data = os.urandom(3_000_000)
    offer = _offer(tmp_path, data)
    half = 1_200_000
    # a first delivery that dies after `half` bytes
    chan = connect(_target(hub), "transfer")
    chan.send({"type": "put", "session_id": hub.session.session_id, "path": offer.path,
               "device_id": "webcam_3", "file_type": "video", "size": offer.size,
               "sha256": offer.sha256})  # fmt: skip
    assert chan.receive() == {"type": "offset", "offset": 0}
    chan.sock.sendall(data[:half])
    chan.close()
    part = hub.session.root / ".incoming" / f"{offer.sha256}.part"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and part.stat().st_size < half:
        time.sleep(0.05)
    result = deliver(_target(hub), hub.session.session_id, offer,
                     deadline=time.monotonic() + 30)  # fmt: skip
    assert result.ok and result.resumed_from == half
    assert result.sent == len(data) - half
    arrived = hub.session.root / offer.path
    assert hashlib.sha256(arrived.read_bytes()).hexdigest() == offer.sha256
    (event,) = [e for e in _events(hub) if e["event"] == "file_received"]
    assert event["resumed_from"] == half and event["host"] == "cam"
    (entry,) = hub.session.metadata()["files"]["webcam_3"]
    assert entry["sha256"] == offer.sha256 and entry["file_size"] == len(data)
    # a second delivery of the same file sends nothing
    again = deliver(_target(hub), hub.session.session_id, offer,
                    deadline=time.monotonic() + 30)  # fmt: skip
    assert again.ok and again.sent == 0


@pytest.mark.parametrize(
    ("extra", "agents", "message"),
    [
        ('host = "cam"', "", "agents.token: devices on other hosts"),
        ('host = "cam"', 'token = "short"', "agents.token: must be at least 16"),
        (
            'host = "../x"',
            f'token = "{TOKEN}"',
            "devices[0].host: '../x' is not a host",
        ),
    ],
)
def test_config_errors_are_one_line(tmp_path, extra, agents, message):
    from lsl_session.errors import ConfigError

    path = tmp_path / "lab.toml"
    path.write_text(
        f'[agents]\n{agents}\n[[devices]]\nid = "webcam_1"\ntype = "pc_webcam"\n'
        f"simulate = true\n{extra}\n"
    )
    with pytest.raises(
        ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        load_config(path)


def test_phones_cannot_have_a_host(tmp_path):
    from lsl_session.errors import ConfigError

    path = tmp_path / "lab.toml"
    path.write_text(
        f'[agents]\ntoken = "{TOKEN}"\n[[devices]]\nid = "phone_1"\n'
        'type = "android_phone"\ntoken = "t"\nhost = "cam"\n'
    )
    with pytest.raises(ConfigError, match="phones connect to the relay"):
        load_config(path)
