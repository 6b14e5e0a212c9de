"""Pure parts of the relay's bounds: log limiter, auth throttle, text and value cuts."""

from __future__ import annotations

import numpy as np
import pytest

from outlets.phone import protocol as P
from outlets.phone.guard import AuthThrottle, LogLimiter, host_key
from outlets.phone.limits import MAX_TEXT, clean_heartbeat, clean_hello_string, cut


def test_log_limiter_bursts_per_key_and_in_total_then_summarises():
    lim = LogLimiter(burst=2, total=3, window_s=10.0, max_keys=100)
    assert [lim.admit("a", 0.0) for _ in range(4)] == [True, True, False, False]
    assert lim.admit("b", 1.0) is True
    assert lim.admit("c", 1.0) is False  # total reached although "c" is new
    assert lim.due(5.0) == []  # windows still open
    assert sorted(lim.due(11.5)) == [("a", 2), ("c", 1)]
    assert lim.admit("a", 12.0) is True  # a new window


def test_log_limiter_remembers_a_bounded_number_of_keys():
    lim = LogLimiter(burst=1, total=10**9, window_s=10.0, max_keys=8)
    for k in range(10_000):
        lim.admit(("code", f"10.0.{k // 256}.{k % 256}"), 0.0)
        lim.admit(("code", f"10.0.{k // 256}.{k % 256}"), 0.0)  # suppressed
    assert len(lim._keys) <= 8
    summaries = lim.due(0.0, everything=True)
    assert len(summaries) <= 16
    assert all(n == 1 for _, n in summaries)


def test_auth_throttle_doubles_and_caps_per_host():
    t = AuthThrottle(free=2, window_s=60.0, delay=0.5, max_delay=4.0, max_keys=4)
    waits = [t.failure("1.2.3.4", 0.0) for _ in range(8)]
    assert waits == [0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert t.failure("5.6.7.8", 1.0) == 0.0  # other hosts are not slowed
    assert t.failure("1.2.3.4", 61.0) == 0.0  # a new window
    assert t.failure("9.9.9.9", 0.0) == 0.0
    for k in range(10**5):
        t.failure(f"h{k}", 0.0)
    assert len(t._hosts) <= 4
    waits = [t.failure("1.2.3.4", 62.0) for _ in range(5000)]
    assert waits[-1] == 4.0  # huge counts stay at the cap (no float overflow)


def test_cut_never_expands_anything():
    assert cut("x" * 10_000) == "x" * (MAX_TEXT - 1) + "…"
    assert cut(10**5000) == "<huge int>"
    assert cut([[1] * 10**6]) == "<list>"
    assert cut(float("nan")) == "nan"
    assert len(cut("abc", 2)) == 2


def test_heartbeat_and_hello_string_cleaning():
    status = clean_heartbeat(
        {
            "battery": 2.0,
            "storage_free_mb": 10,
            "temperature_c": float("nan"),
            "recording": 1,
            "x": "y",
        }
    )
    assert status == {"storage_free_mb": 10.0}
    assert clean_hello_string("Pixel\n7\x00" + "a" * 100) == ("Pixel7" + "a" * 58)
    assert clean_hello_string(5) is None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"type":"x","n":' + b"1" * 21 + b"}", "digits"),
        (b'{"type":"x","n":Infinity}', "Infinity"),
        (b'{"type":"x","n":' + b"[" * 17 + b"]" * 17 + b"}", "deeper"),
        (b"[" * 50_000, "nested too deeply"),
        (b'{"type":"' + b"x" * (P.MAX_HEADER + 1) + b'"}', "longer"),
    ],
)
def test_json_limits_are_clear_errors(raw, why):
    with pytest.raises(P.ProtocolError, match=why) as err:
        P.decode_payload(b"J" + raw)
    assert err.value.code == "bad_json"
    assert not err.value.fatal


def test_samples_out_of_order_are_sorted_stably():
    times = np.array([3.0, 1.0, 2.0, 1.0])
    values = np.array([[30.0], [10.0], [20.0], [11.0]])
    frame = P.encode_samples("gsr", times, values)
    (msg,) = P.FrameDecoder().feed(frame)
    _, t, v = P.decode_samples(msg)
    assert t.tolist() == [1.0, 1.0, 2.0, 3.0]
    assert v[:, 0].tolist() == [10.0, 11.0, 20.0, 30.0]


def test_sha256_must_match_fully():
    good = "a" * 64
    assert P.check_sha256(good) == good
    with pytest.raises(P.ProtocolError):
        P.check_sha256(good + "\n")


def test_host_key_groups_an_ipv6_64():
    assert host_key("192.0.2.7") == "192.0.2.7"
    assert host_key("2001:db8:1:2:aaaa::1") == host_key("2001:db8:1:2:ffff::9")
    assert host_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert host_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert host_key("?") == "?"
