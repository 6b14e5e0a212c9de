"""Fuzzing the relay's frame parser: mutated frames never crash, hang or bloat it.

Two levels: the pure parser (`FrameDecoder`, `validate`, `decode_samples`) under
tracemalloc, and a live relay fed the same mutations over a real socket by an
authenticated and an unauthenticated client while a good phone streams. The
default run is short; ``-m slow`` runs 10,000 cases of each.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import struct
import tracemalloc
import uuid

import numpy as np
import pytest
from lsl_helpers import wait_until
from phone_client import RawClient

from lsl_session.session import create_session_folder
from outlets.phone import PhoneRelay, PhoneSimulator
from outlets.phone import protocol as P
from outlets.phone.limits import RelayLimits

DEEP: list = [1]
for _ in range(40):
    DEEP = [DEEP]
HOSTILE_VALUES = [
    10**19,
    -(10**19),
    1e308,
    -1e308,
    5e-324,
    0,
    -1,
    True,
    None,
    "",
    "Q" * 5000,
    "\x00\n\r",
    [],
    {},
    DEEP,
    {"type": "hello"},
]
RAW_VALUES = [b"9" * 400, b"[" * 2000 + b"]" * 2000, b"NaN", b"-Infinity", b"1e999"]


def corpus() -> list[tuple[dict, bytes | None]]:
    """Valid messages of every kind: (JSON fields, binary body or None)."""
    t = np.arange(4, dtype=np.float64) + 100.0
    sha = "a" * 64
    out: list[tuple[dict, bytes | None]] = [
        (
            {"type": "hello", "id": 1, "protocol": 1, "device_id": "x", "token": "t"},
            None,
        ),
        ({"type": "sync_req", "seq": 1, "t1": 1.5}, None),
        ({"type": "sync_done", "seq": 1, "t1": 1.5, "t4": 1.6}, None),
        ({"type": "heartbeat", "t": 2.0, "battery": 0.5, "recording": True}, None),
        ({"type": "event", "t": 2.0, "label": "sync_pulse"}, None),
        ({"type": "ack", "re": 1, "status": "ok", "t": 2.0}, None),
        (
            {
                "type": "upload_offer",
                "id": 3,
                "name": "v.mp4",
                "size": 10,
                "sha256": sha,
                "file_type": "rgb",
            },
            None,
        ),
        ({"type": "upload_chunk", "upload_id": "u1", "offset": 0}, b"0123456789"),
        ({"type": "upload_end", "id": 4, "upload_id": "u1"}, None),
        ({"type": "bye"}, None),
    ]
    for stream, spec in P.STREAMS.items():
        if stream == "events":
            continue
        c = spec.channel_count
        body = np.column_stack([t, np.ones((4, c))]).astype(P.SAMPLE_DTYPE).tobytes()
        out.append(({"type": "samples", "stream": stream, "n": 4, "channels": c}, body))
    return out


def _frame(fields: dict, body: bytes | None, raw_value: bytes | None = None) -> bytes:
    head = json.dumps(fields, separators=(",", ":")).encode()
    if raw_value is not None:  # splice a value json.dumps would never write
        head = head[:-1] + b',"zz":' + raw_value + b"}"
    if body is None:
        payload = b"J" + head
    else:
        payload = b"B" + struct.pack(">I", len(head)) + head + body
    return struct.pack(">I", len(payload)) + payload


def mutate(rng: random.Random, base: list[tuple[dict, bytes | None]]) -> bytes:
    """One hostile frame (or a few bytes) derived from a valid message."""
    fields, body = rng.choice(base)
    fields = dict(fields)
    op = rng.randrange(9)
    if op == 0:  # a field gets a hostile value
        fields[rng.choice(list(fields))] = rng.choice(HOSTILE_VALUES)
        return _frame(fields, body)
    if op == 1:  # a value JSON encoders never produce
        return _frame(fields, body, rng.choice(RAW_VALUES))
    if op == 2:  # a field goes missing
        fields.pop(rng.choice(list(fields)))
        return _frame(fields, body)
    data = bytearray(_frame(fields, body))
    if op == 3:  # bit flips anywhere (length prefix included)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif op == 4:  # truncated
        del data[rng.randrange(1, len(data)) :]
    elif op == 5:  # trailing garbage
        data += rng.randbytes(rng.randint(1, 64))
    elif op == 6:  # a lying length prefix
        n = rng.choice([0, 1, 4, len(data) - 5, len(data) + 100, 2**24, 2**32 - 1])
        data[:4] = struct.pack(">I", max(0, n))
    elif op == 7 and body is not None:  # a lying binary header length
        data[5:9] = struct.pack(">I", rng.choice([0, 2**16, 2**31, len(data)]))
    elif op == 8 and body is not None and fields["type"] == "samples":
        fields["n"] = rng.choice([0, -4, 3, 5, 10**18])
        return _frame(fields, body)
    return bytes(data)


def parse_all(data: bytes, rng: random.Random) -> None:
    """Run the relay's parsing on ``data`` fed in random pieces."""
    dec = P.FrameDecoder(max_frame=1 << 20)
    i = 0
    while i < len(data):
        j = i + rng.randint(1, 64)
        for msg in dec.feed(data[i:j]):
            P.validate(msg)
            if msg.type == "samples":
                P.decode_samples(msg)
        i = j


def _fuzz_parser(cases: int) -> None:
    rng = random.Random(15)
    base = corpus()
    outcomes: dict[str, int] = {}
    long_texts = 0
    tracemalloc.start()
    try:
        for _ in range(cases):
            data = mutate(rng, base)
            try:
                parse_all(data, rng)
                outcome = "ok"
            except P.ProtocolError as exc:
                outcome = exc.code
                long_texts += len(exc.message) > 300
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n{cases} mutated frames: {outcomes}; peak {peak} bytes")  # noqa: T201
    assert sum(outcomes.values()) == cases
    assert long_texts == 0
    assert outcomes.get("ok", 0) > 0 and len(outcomes) > 3  # both paths exercised
    assert peak < 8 * 1024 * 1024  # mutations are < 64 KiB: nothing accumulates


def test_fuzz_frame_parser_short():
    _fuzz_parser(500)


@pytest.mark.slow
def test_fuzz_frame_parser_10000():
    _fuzz_parser(10_000)


def _answers_probe(data: bytes, max_frame: int) -> bool:
    """True if the last frame of ``data`` (the probe) is complete on its own."""
    dec = P.FrameDecoder(max_frame=max_frame)
    try:
        return any(m.type == "sync_req" and m.get("t1") == 1.0 for m in dec.feed(data))
    except P.ProtocolError:
        return True  # the relay answers an error (and closes if it is fatal)


def _fuzz_relay(cases: int, session_root, caplog) -> None:
    caplog.set_level(logging.ERROR)
    session_dir = create_session_folder(session_root, "fuzz")
    good, fuzzer = f"fz_good_{uuid.uuid4().hex[:8]}", f"fz_{uuid.uuid4().hex[:8]}"
    tokens = {good: "g", fuzzer: "f"}
    limits = RelayLimits(auth_free_failures=10**9, auth_free_failures_total=10**9)
    relay = PhoneRelay(tokens=tokens, session=session_dir, limits=limits).start()
    sim = PhoneSimulator("127.0.0.1", relay.port, good, "g", jitter_ms=(1, 5))
    rng = random.Random(9)
    base = corpus()
    c: RawClient | None = None
    max_held, probes, seq = 0, 0, 10**6
    try:
        sim.start()
        assert relay.wait_ready(good)
        for k in range(cases):
            authed = k % 4 != 0  # every 4th case before hello
            if c is None or not authed:
                if c is not None:
                    c.close()
                c = RawClient(relay.port)
                if authed:
                    assert c.hello(fuzzer, "f")["type"] == "welcome"
            frame = mutate(rng, base)
            seq += 1
            probe = P.encode_json({"type": "sync_req", "seq": seq, "t1": 1.0})
            try:
                c.send(frame + (probe if authed else b""))
                if not authed or not _answers_probe(frame + probe, relay.max_frame):
                    # The relay refuses it or waits for the rest: on EOF it must
                    # close (a relay that hung would not).
                    c.sock.shutdown(socket.SHUT_WR)
                    assert c.closed(timeout=10)
                    c.close()
                    c = None
                    continue
                c.wait(lambda m, s=seq: m.type == "sync_resp" and m.get("seq") == s)
                probes += 1
            except (EOFError, ConnectionError, OSError):
                c.close()  # a fatal error
                c = None
            if k % 50 == 0:
                max_held = max(max_held, sum(relay.held_bytes().values()))
        count = relay.status()[good]["samples"]["gsr"]
        assert wait_until(lambda: relay.status()[good]["samples"]["gsr"] > count + 10)
        assert relay.status()[good]["connected"]
    finally:
        if c is not None:
            c.close()
        sim.stop()
        relay.stop()
    held = f"max held {max_held} bytes"
    print(f"\n{cases} cases over a socket: {probes} probes answered, {held}")  # noqa: T201
    assert probes > cases // 4
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert crashes == [], crashes[0].getMessage()
    # Bound: connections x (largest frame + reader buffer) + unsynced data.
    assert max_held <= 2 * (relay.max_frame + 2 * limits.read_buffer) + (
        limits.max_pending_bytes
    )


def test_fuzz_relay_over_socket_short(session_root, caplog):
    _fuzz_relay(150, session_root, caplog)


@pytest.mark.slow
def test_fuzz_relay_over_socket_10000(session_root, caplog):
    _fuzz_relay(10_000, session_root, caplog)
