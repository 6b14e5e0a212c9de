"""Failure modes: unexpected status byte, missing ACK, vanishing port, missing port.

Each must end in a logged error and a reconnect attempt (or a clear error at
start), never a hang: pyshimmer calls are bounded by ``call_timeout`` and every
wait below has an explicit timeout.
"""

from __future__ import annotations

import logging

import pytest
from lsl_helpers import wait_until

from outlets.shimmer import ShimmerEmulator, ShimmerError, ShimmerOutlet

# pyshimmer's reader thread dies with a traceback by design in these scenarios.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.timeout(60),
]
FAST = {"call_timeout": 1.0, "stall_timeout": 1.0, "backoff": (0.1, 0.5)}


@pytest.fixture
def emu():
    emulator = ShimmerEmulator(128.0, burst_ms=(10.0, 20.0), seed=3).start()
    yield emulator
    emulator.close()


def _errors(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name == "outlets.shimmer.outlet"
    ]


def _flowing(out, n=50):
    start = out.stats.packets
    return wait_until(lambda: out.stats.packets >= start + n, timeout=10.0)


def test_unexpected_status_byte_reconnects(emu, uid, caplog):
    caplog.set_level(logging.INFO)
    out = ShimmerOutlet(emu.port, device_id=uid, **FAST).start()
    try:
        assert _flowing(out)
        emu.inject_status(ack_prefix=True)  # FF 8A 71 xx: FF with no command pending
        assert wait_until(lambda: out.stats.connects >= 2, timeout=15.0)
        assert _flowing(out)
    finally:
        out.stop()
    assert any("reader thread died" in m for m in _errors(caplog))
    assert out.stats.reconnect_attempts >= 1


def test_missing_ack_at_start_is_a_clear_error(emu, uid):
    emu.drop_ack(0x07)  # start streaming never acknowledged
    out = ShimmerOutlet(emu.port, device_id=uid, **FAST)
    with pytest.raises(ShimmerError, match=r"did not answer start_streaming\(\)"):
        out.start()
    out.stop()


def test_missing_ack_during_reconnect_retries(emu, uid, caplog):
    out = ShimmerOutlet(emu.port, device_id=uid, **FAST).start()
    try:
        assert _flowing(out)
        emu.drop_ack(0x07)
        emu.inject_bytes(b"\xfe")  # a NACK: kills the reader, forces a reconnect
        assert wait_until(lambda: out.stats.connects >= 2, timeout=20.0)
        assert _flowing(out)
    finally:
        out.stop()
    errors = _errors(caplog)
    assert any("did not answer start_streaming" in m for m in errors)
    assert out.stats.reconnect_attempts >= 2


def test_port_vanishing_logs_and_retries_without_hanging(emu, uid, caplog):
    out = ShimmerOutlet(emu.port, device_id=uid, **FAST).start()
    try:
        assert _flowing(out)
        emu.vanish()
        assert wait_until(lambda: out.stats.reconnect_attempts >= 2, timeout=15.0)
    finally:
        out.stop(timeout=5.0)
    assert out._thread is None  # the worker joined
    errors = _errors(caplog)
    assert any("reconnect failed: cannot open Shimmer port" in m for m in errors)


def test_missing_port_is_one_line_error(uid):
    out = ShimmerOutlet("/dev/does-not-exist-shimmer", device_id=uid)
    with pytest.raises(ShimmerError) as info:
        out.start()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == (
        "cannot open Shimmer port '/dev/does-not-exist-shimmer': No such file or directory"
    )
