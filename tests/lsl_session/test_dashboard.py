"""The live dashboard: figures, warnings and bounds, its server, and a real browser."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import browser_page
from lsl_helpers import wait_until

from lsl_session.dashboard import DashboardServer, LiveState, stream_warnings
from lsl_session.dashboard import state as state_module
from lsl_session.errors import LslSessionError

CHILD = Path(__file__).with_name("_outlet_child.py")


def _stream(**over):
    base = {
        "stream_id": 1,
        "name": "EEG",
        "nominal_srate": 100.0,
        "effective_srate": 100.0,
        "samples": 1000,
        "last_sample_age_s": 0.2,
        "lost": False,
    }
    base.update(over)
    return base


def test_classify_silent_waiting_lost():
    assert state_module._classify(_stream()) == "ok"
    assert state_module._classify(_stream(last_sample_age_s=2.0)) == "silent"
    assert state_module._classify(_stream(samples=0)) == "waiting"
    assert state_module._classify(_stream(lost=True)) == "lost"
    # a marker stream quiet for minutes is not silent: it is irregular by design
    assert state_module._classify(_stream(nominal_srate=0.0, last_sample_age_s=300))
    assert (
        state_module._classify(_stream(nominal_srate=0.0, last_sample_age_s=300))
        == "ok"
    )
    # a 0.5 Hz stream gets five periods before it counts as silent
    assert (
        state_module._classify(_stream(nominal_srate=0.5, last_sample_age_s=8)) == "ok"
    )


def test_warnings_rate_offset_jump():
    assert stream_warnings(_stream(state="ok")) == []
    (rate,) = stream_warnings(_stream(state="ok", effective_srate=90.0))
    assert "-10 % off nominal 100 Hz" in rate
    # too little data to judge the rate yet
    assert stream_warnings(_stream(state="ok", effective_srate=90.0, samples=100)) == []
    (jump,) = stream_warnings(_stream(state="ok", offset_jump_ms=12.0))
    assert "jumped +12.0 ms" in jump
    (silent,) = stream_warnings(_stream(state="silent", last_sample_age_s=4.0))
    assert "silent for 4.0 s" in silent


def test_trace_buffer_is_bounded():
    state = LiveState(lambda: None)
    chunk = np.ones((5000, 64), np.float32)
    for k in range(2 * state_module.MAX_CHUNKS):
        state.tap(1, np.linspace(k, k + 0.01, 5000), chunk)
    trace = state._traces[1]
    assert len(trace) <= state_module.MAX_CHUNKS
    t, v = trace[-1]
    assert len(t) == state_module.POINTS_PER_CHUNK
    assert v.shape == (state_module.POINTS_PER_CHUNK, state_module.TRACE_CHANNELS)
    # only the last TRACE_SECONDS are kept
    assert trace[0][0][-1] >= trace[-1][0][-1] - state_module.TRACE_SECONDS
    sent = state._traces_json()["1"]
    assert len(sent["t"]) <= state_module.POINTS_SENT
    # strings and empty chunks are ignored, not stored
    state.tap(2, np.array([1.0]), [["marker"]])
    state.tap(3, np.zeros(0), np.zeros((0, 2)))
    assert 2 not in state._traces and 3 not in state._traces


def test_event_details_are_cut():
    state = LiveState(lambda: None)
    for _ in range(state_module.MAX_EVENTS + 20):
        state._on_event({"event": "error", "message": "x" * 10_000})
    assert len(state._events) == state_module.MAX_EVENTS
    assert all(
        len(e["details"]) <= state_module.MAX_DETAIL_CHARS for e in state._events
    )


def test_non_loopback_needs_token_and_token_is_checked():
    with pytest.raises(LslSessionError, match="without a token"):
        DashboardServer(LiveState(lambda: None), host="0.0.0.0")
    server = DashboardServer(LiveState(lambda: None), host="127.0.0.1", token="s3cret")
    with server:
        base = f"http://127.0.0.1:{server.port}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/snapshot.json", timeout=5)
        assert err.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/snapshot.json?token=wrong", timeout=5)
        assert err.value.code == 403
        with urllib.request.urlopen(server.url, timeout=5) as page:
            assert b"<title>lsl-session" in page.read()
        with urllib.request.urlopen(
            f"{base}/snapshot.json?token=s3cret", timeout=5
        ) as reply:
            snap = json.loads(reply.read())
        assert snap["streams"] == [] and snap["recording"] is False


def test_viewer_connections_are_capped():
    server = DashboardServer(LiveState(lambda: None))
    with server:
        feeds = [
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/events", timeout=5)
            for _ in range(8)
        ]
        try:
            assert all(f.readline().startswith(b"data: ") for f in feeds)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{server.port}/events", timeout=5
                )
            assert err.value.code == 503
        finally:
            for f in feeds:
                f.close()


def _dashboard_url(proc: subprocess.Popen, lines: list[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"dashboard: (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("record never printed its dashboard URL:\n" + "".join(lines))


def test_dashboard_in_browser_during_real_recording(session_root, uid):
    """A real recording (CLI process, outlet in another process), a real Chromium."""
    name = f"dash_{uid}"
    outlet = subprocess.Popen([sys.executable, str(CHILD), name, "100"])
    record = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(session_root),
         "--stream", f"name='{name}'", "--no-process", "--dashboard",
         "--dashboard-port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        url = _dashboard_url(record, lines)
        with browser_page() as (page, errors):
            page.goto(url)
            row = f'tr[data-stream="{name}"]'
            page.wait_for_selector(row, timeout=30_000)
            first = int(page.inner_text(f"{row} td.samples"))
            assert wait_until(
                lambda: int(page.inner_text(f"{row} td.samples")) > first + 50,
                timeout=10,
            )
            assert page.get_attribute(row, "data-state") == "ok"
            assert page.inner_text("#connection") == "live"
            # the recorder's own chunks feed the trace: the canvas has ink on it
            assert page.evaluate(
                f"""() => {{
                  const c = document.querySelector('{row} canvas');
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  return d.some((v, i) => i % 4 === 3 && v > 0);
                }}"""
            )
            outlet.kill()
            outlet.wait()
            # the stream stopped: it turns "silent" within 3 s
            page.wait_for_selector(f'{row}[data-state="silent"]', timeout=3_000)
            assert "silent" in page.inner_text("#warnings")
            assert errors == []
    finally:
        outlet.kill()
        record.send_signal(signal.SIGINT)
        _out, err = record.communicate(timeout=60)
    assert record.returncode == 0, "".join(lines) + err
    # the verdict line, before the folder (not processed here: it says so)
    assert "1 streams" not in err and "2 streams, " in err and "not processed" in err


def test_record_refuses_public_dashboard_without_token(session_root, uid):
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(session_root),
         "--stream", f"name='none_{uid}'", "--duration", "1", "--no-process",
         "--dashboard", "--dashboard-host", "0.0.0.0", "--dashboard-port", "0"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "without a token" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_dashboard_table(tmp_path):
    from lsl_session.config import ConfigError, load_config

    good = tmp_path / "lab.toml"
    good.write_text("[dashboard]\nenabled = true\nport = 9999\n")
    dash = load_config(good).dashboard
    assert (dash.enabled, dash.host, dash.port, dash.token) == (
        True, "127.0.0.1", 9999, None,
    )  # fmt: skip
    public = tmp_path / "public.toml"
    public.write_text('[dashboard]\nenabled = true\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"public.toml: dashboard.host: .*token"):
        load_config(public)
    typo = tmp_path / "typo.toml"
    typo.write_text("[dashboard]\nenabeld = true\n")
    with pytest.raises(ConfigError, match=r"dashboard: unknown field\(s\) 'enabeld'"):
        load_config(typo)
    assert load_config(tmp_path / "lab.toml").dashboard.enabled


def test_flat_and_clipped_channels_are_flagged_live(session_root, uid):
    """A flat and a clipped channel show as warnings on the page; the good one not."""
    import threading

    import pylsl

    name = f"flags_{uid}"
    info = pylsl.StreamInfo(name, "EEG", 3, 100, pylsl.cf_float32, f"flags_{uid}")
    chans = info.desc().append_child("channels")
    for label in ("good", "dead", "sat"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info)
    stop = threading.Event()

    def push() -> None:
        sent, start = 0, pylsl.local_clock()
        while not stop.wait(0.02):
            n = int((pylsl.local_clock() - start) * 100) - sent
            t = (sent + np.arange(max(n, 0))) / 100
            wave = np.sin(2 * np.pi * 1.3 * t)
            outlet.push_chunk(np.column_stack([wave, np.zeros_like(t),
                                               np.clip(2 * wave, -1, 1)]).astype(np.float32))  # fmt: skip
            sent += max(n, 0)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    record = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(session_root),
         "--stream", f"name='{name}'", "--no-process", "--dashboard",
         "--dashboard-port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        url = _dashboard_url(record, lines)
        with browser_page() as (page, errors):
            page.goto(url)
            page.wait_for_selector(f'tr[data-stream="{name}"]', timeout=30_000)
            assert wait_until(
                lambda: "dead: flat at 0" in page.inner_text("#warnings"), timeout=20
            )
            text = page.inner_text("#warnings")
            # a sine clipped at both ±1: the window's larger share names the side
            assert re.search(rf"{name} sat: clipped at -?1 ", text), text
            assert "good:" not in text
            assert errors == []
    finally:
        stop.set()
        record.send_signal(signal.SIGINT)
        record.communicate(timeout=60)


def test_live_flags_need_enough_samples_and_skip_internal_streams():
    state = LiveState(lambda: None)
    flat = np.zeros((50, 2), np.float32)
    flat[:, 1] = np.sin(np.arange(50))
    state.tap(1, np.arange(5.0), flat[:5])
    state.tap(2, np.arange(50.0), flat)
    state.tap(3, np.arange(50.0), flat)
    streams = [{"stream_id": 1, "name": "a", "type": "EEG"},
               {"stream_id": 2, "name": "b", "type": "EEG"},
               {"stream_id": 3, "name": "c", "type": "ClockMapping"}]  # fmt: skip
    state._channel_flags(None, streams)
    assert "channel_flags" not in streams[0]  # 5 samples: too few to tell
    assert streams[1]["channel_flags"] == ["ch1: flat at 0"]
    assert "channel_flags" not in streams[2]  # internal: not data
