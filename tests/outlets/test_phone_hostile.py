"""Hostile input never harms the relay, the session or a well-behaved phone."""

from __future__ import annotations

import hashlib
import json
import struct
import uuid

import pytest
from lsl_helpers import wait_until
from phone_client import RawClient as _RawClient

from lsl_session.session import Session, create_session_folder
from outlets.phone import PhoneRelay, PhoneSimulator
from outlets.phone import protocol as P
from outlets.phone.limits import RelayLimits

GOOD = f"good_{uuid.uuid4().hex[:8]}"
EVIL = f"evil_{uuid.uuid4().hex[:8]}"
TOKENS = {GOOD: "good-token", EVIL: "evil-token"}


class RawClient(_RawClient):
    """A raw client that says hello as the paired hostile device by default."""

    def hello(
        self, device_id: str = EVIL, token: str | None = "evil-token", **extra
    ) -> dict:
        return super().hello(device_id, token, **extra)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    session_dir = create_session_folder(root / "recordings", "hostile")
    # Throttling of failed hellos has its own tests (test_phone_limits.py).
    limits = RelayLimits(auth_free_failures=10**6, auth_free_failures_total=10**6)
    relay = PhoneRelay(tokens=TOKENS, session=session_dir, limits=limits).start()
    good = PhoneSimulator(
        "127.0.0.1", relay.port, GOOD, "good-token", jitter_ms=(1, 5)
    ).start()
    assert relay.wait_ready(GOOD)
    yield relay, session_dir, root
    good.stop()
    relay.stop()
    # Nothing was written outside the session folder, and the log is valid JSON.
    outside = [
        p
        for p in root.rglob("*")
        if session_dir not in (p, *p.parents) and p != session_dir.parent
    ]
    assert outside == []
    events = json.loads(Session.open(session_dir).paths.log.read_text())
    assert any(e["event"] == "error" for e in events)


@pytest.fixture
def client(env):
    relay, _, _ = env
    c = RawClient(relay.port)
    yield c
    c.close()
    count = relay.status()[GOOD]["samples"]["gsr"]
    # The well-behaved phone keeps streaming after every attack.
    assert wait_until(lambda: relay.status()[GOOD]["samples"]["gsr"] > count + 10)
    assert relay.status()[GOOD]["connected"]


def _session_files(session_dir):
    return sorted(p for p in (session_dir / "devices").rglob("*") if p.is_file())


def test_garbage_bytes(client):
    client.send(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
    assert client.error()["code"] == "bad_frame"
    assert client.closed()


def test_length_prefix_2_pow_31(client):
    client.send(struct.pack(">I", 2**31) + b"J{}")
    err = client.error()
    assert err["code"] == "bad_frame"
    assert err["fatal"]
    assert client.closed()


def test_invalid_json_before_hello_is_fatal(client):
    client.send(struct.pack(">I", 9) + b"J{broken!")
    assert client.error()["code"] == "bad_json"
    assert client.closed()


def test_invalid_json_after_hello_is_answered_and_survived(client):
    assert client.hello()["type"] == "welcome"
    client.send(struct.pack(">I", 9) + b"J{broken!")
    err = client.error()
    assert err["code"] == "bad_json"
    assert not err["fatal"]
    client.msg(type="sync_req", seq=1, t1=1.0)
    assert client.wait(lambda m: m.type == "sync_resp").get("seq") == 1


def test_unknown_message_type(client):
    client.hello()
    client.msg(type="format_disk", id=7)
    err = client.error()
    assert err["code"] == "unknown_type"
    assert not err["fatal"]


def test_missing_token(client):
    err = client.hello(token=None)
    assert err["code"] == "auth_failed"
    assert client.closed()


def test_wrong_token(client):
    err = client.hello(token="guess")
    assert err["code"] == "auth_failed"
    assert client.closed()


def test_unknown_device_and_bad_device_id(env, client):
    assert client.hello(device_id="stranger", token="x")["code"] == "auth_failed"
    other = RawClient(env[0].port)
    # With tokens the token is checked first: a bad id is just an unknown one.
    assert other.hello(device_id="../../x", token="x")["code"] == "auth_failed"
    other.close()
    with PhoneRelay() as open_relay:  # no tokens (loopback only): ids are checked
        for bad in ("../../x", "phone_1\n", "a" * 65, ""):
            c = RawClient(open_relay.port)
            err = c.hello(device_id=bad, token=None)
            assert err["code"] == "bad_device_id", bad
            assert bad.strip() == "" or bad[:5] not in err["message"]
            c.close()


def test_wrong_protocol_version(client):
    client.msg(type="hello", id=1, protocol=99, device_id=EVIL, token="evil-token")
    assert client.error()["code"] == "unsupported_version"
    assert client.closed()


def test_bad_sample_batch_is_refused(client):
    client.hello()
    client.send(
        P.encode_binary(
            {"type": "samples", "stream": "gsr", "n": 1000, "channels": 1}, b"\0" * 16
        )
    )
    assert client.error()["code"] == "bad_message"


def _offer(client, name="video.mp4", size=10, data=b"0123456789", file_type="rgb"):
    client.hello()
    client.msg(
        type="upload_offer",
        id=5,
        name=name,
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
        file_type=file_type,
    )
    return client.wait(lambda m: m.get("re") == 5).fields


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a\0b", "C:\\x"])
def test_hostile_upload_names(env, client, name):
    before = _session_files(env[1])
    reply = _offer(client, name=name)
    assert reply["type"] == "error"
    assert reply["code"] == "bad_name"
    assert _session_files(env[1]) == before


def test_upload_size_lie_more_bytes_than_declared(env, client):
    reply = _offer(client, size=4)
    assert reply["type"] == "upload_ready"
    client.send(
        P.encode_binary(
            {"type": "upload_chunk", "upload_id": reply["upload_id"], "offset": 0},
            b"0123456789",
        )
    )
    assert client.error()["code"] == "size_exceeded"
    assert not list((env[1] / "devices" / EVIL).rglob("*.part"))


def test_upload_size_lie_fewer_bytes_than_declared(env, client):
    reply = _offer(client, size=10, data=b"0123456789")
    uid = reply["upload_id"]
    client.send(
        P.encode_binary(
            {"type": "upload_chunk", "upload_id": uid, "offset": 0}, b"01234"
        )
    )
    client.msg(type="upload_end", id=6, upload_id=uid)
    err = client.wait(lambda m: m.get("re") == 6).fields
    assert err["code"] == "incomplete"
    assert err["have"] == 5


def test_upload_content_does_not_match_sha256(env, client):
    reply = _offer(client, size=10, data=b"abcdefghij")
    uid = reply["upload_id"]
    assert reply["have"] == 0
    client.send(
        P.encode_binary(
            {"type": "upload_chunk", "upload_id": uid, "offset": 0}, b"9876543210"
        )
    )
    client.msg(type="upload_end", id=6, upload_id=uid)
    assert client.wait(lambda m: m.get("re") == 6).get("code") == "sha256_mismatch"
    assert not [
        p
        for p in _session_files(env[1])
        if EVIL in str(p) and not p.name.startswith(".")
    ]
    assert EVIL not in Session.open(env[1]).metadata()["files"]


def test_upload_bad_file_type(client):
    assert _offer(client, file_type="../etc")["code"] == "bad_file_type"


def test_upload_without_session(tmp_path):
    dev = f"nos_{uuid.uuid4().hex[:8]}"
    with PhoneRelay(tokens={dev: "t"}) as relay:
        c = RawClient(relay.port)
        assert c.hello(device_id=dev, token="t")["uploads"] is False
        c.msg(
            type="upload_offer",
            id=5,
            name="v.mp4",
            size=3,
            sha256=hashlib.sha256(b"abc").hexdigest(),
            file_type="rgb",
        )
        err = c.wait(lambda m: m.get("re") == 5).fields
        assert err["code"] == "no_session"
        assert "--session" in err["message"]
        c.close()
    assert list(tmp_path.iterdir()) == []


def test_error_flood_disconnects(client):
    client.hello()
    for _ in range(25):
        client.msg(type="nonsense")
    # The fatal reply must reach the phone before the close, not be lost to a reset.
    last = client.wait(lambda m: m.type == "error" and m.fields.get("fatal")).fields
    assert last["code"] == "unknown_type"
    assert client.closed()


def test_silent_client_without_hello_is_dropped(env):
    c = RawClient(env[0].port)
    env[0].hello_timeout, old = 0.3, env[0].hello_timeout
    try:
        c2 = RawClient(env[0].port)
        assert c2.error()["code"] == "hello_timeout"
        c2.close()
    finally:
        env[0].hello_timeout = old
        c.close()
