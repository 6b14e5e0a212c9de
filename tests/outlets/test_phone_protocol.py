"""Pure tests of the phone protocol: framing, sample batches, validation, names."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from outlets.phone import protocol as P


def test_json_frame_round_trip():
    frame = P.encode_json({"type": "heartbeat", "t": 1.5})
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert frame[4] == P.KIND_JSON
    msg = P.decode_payload(frame[4:])
    assert msg.type == "heartbeat"
    assert msg.get("t") == 1.5


def test_decoder_handles_split_and_merged_frames():
    data = P.encode_json({"type": "a"}) + P.encode_binary({"type": "b"}, b"xyz")
    dec = P.FrameDecoder()
    out = []
    for i in range(len(data)):  # one byte at a time
        out += list(dec.feed(data[i : i + 1]))
    assert [m.type for m in out] == ["a", "b"]
    assert out[1].body == b"xyz"


@pytest.mark.parametrize("length", [0, P.MAX_FRAME + 1, 2**31, 2**32 - 1])
def test_bad_lengths_are_fatal_before_allocation(length):
    with pytest.raises(P.ProtocolError) as info:
        P.parse_length(struct.pack(">I", length))
    assert info.value.code == "bad_frame"
    assert info.value.fatal


def test_unknown_payload_kind_is_fatal():
    with pytest.raises(P.ProtocolError) as info:
        P.decode_payload(b"Xhello")
    assert info.value.fatal


@pytest.mark.parametrize(
    "raw", [b"J{not json", b"J[1,2]", b'J{"type": 3}', b"J\xff\xfe"]
)
def test_bad_json_is_not_fatal(raw):
    with pytest.raises(P.ProtocolError) as info:
        P.decode_payload(raw)
    assert info.value.code in ("bad_json", "bad_message")
    assert not info.value.fatal


def test_binary_header_length_lie_is_fatal():
    payload = bytes([P.KIND_BINARY]) + struct.pack(">I", 10_000) + b"{}"
    with pytest.raises(P.ProtocolError) as info:
        P.decode_payload(payload)
    assert info.value.code == "bad_frame"


def test_samples_round_trip_vectorised():
    t = np.linspace(100.0, 101.0, 101)
    v = np.random.default_rng(0).normal(size=(101, 6))
    msg = P.decode_payload(P.encode_samples("motion", t, v)[4:])
    stream, t2, v2 = P.decode_samples(P.validate(msg))
    assert stream == "motion"
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(v2, v)


def test_samples_drop_non_finite_times():
    t = np.array([1.0, np.nan, 3.0])
    msg = P.decode_payload(P.encode_samples("gsr", t, np.ones((3, 1)))[4:])
    _, t2, v2 = P.decode_samples(msg)
    assert list(t2) == [1.0, 3.0]
    assert v2.shape == (2, 1)


@pytest.mark.parametrize(
    ("header", "body_len"),
    [
        ({"stream": "nope", "n": 1, "channels": 1}, 16),
        ({"stream": "gsr", "n": 1, "channels": 2}, 24),
        ({"stream": "gsr", "n": 2, "channels": 1}, 16),
        ({"stream": "events", "n": 1, "channels": 1}, 16),
    ],
)
def test_bad_sample_batches(header, body_len):
    msg = P.Message("samples", {"type": "samples", **header}, b"\0" * body_len)
    with pytest.raises(P.ProtocolError) as info:
        P.decode_samples(msg)
    assert info.value.code == "bad_message"


def test_validate_unknown_type_and_missing_fields():
    with pytest.raises(P.ProtocolError) as info:
        P.validate(P.Message("launch_missiles", {}))
    assert info.value.code == "unknown_type"
    with pytest.raises(P.ProtocolError) as info:
        P.validate(P.Message("sync_req", {"seq": 1, "t1": "now"}))
    assert info.value.code == "bad_message"
    with pytest.raises(P.ProtocolError):
        P.validate(P.Message("sync_req", {"seq": True, "t1": 1.0}))
    assert P.validate(P.Message("sync_req", {"seq": 1, "t1": 2.0}))


@pytest.mark.parametrize(
    "name",
    [
        "../../x",
        "/etc/passwd",
        "a\0b",
        "C:\\x",
        "C:x.mp4",
        "..",
        ".",
        "x/../y.mp4",
        "a\\b.mp4",
        "",
        "noext",
        "evil.exe",
        "a" * 300 + ".mp4",
        "line\nbreak.mp4",
    ],
)
def test_hostile_file_names_are_refused(name):
    with pytest.raises(P.ProtocolError) as info:
        P.check_file_name(name, "rgb_videos")
    assert info.value.code == "bad_name"


def test_good_file_names_give_their_extension():
    assert P.check_file_name("VID_2025.MP4", "rgb_videos") == "mp4"
    assert P.check_file_name("thermal.dat", "thermal_videos") == "dat"


def test_sha256_format():
    assert P.check_sha256("a" * 64)
    for bad in ("A" * 64, "a" * 63, 5, "g" * 64):
        with pytest.raises(P.ProtocolError):
            P.check_sha256(bad)


def test_streams_follow_capabilities():
    assert P.streams_for(["gsr_data"]) == ["gsr", "events"]
    assert set(
        P.streams_for(["rgb_video", "thermal_video", "gsr_data", "motion_data"])
    ) == set(P.STREAMS) - {"orientation"}
    # orientation (the web page's) only for a phone that names it
    assert P.streams_for(["orientation_data"]) == ["orientation", "events"]
    assert P.STREAMS["motion"].channel_count == 6
    assert P.STREAMS["thermal_frames"].channel_count == 4
