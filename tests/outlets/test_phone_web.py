"""The phone page in a real headless Chromium against the real relay on loopback.

Fake camera (a generated .y4m file), motion and orientation from CDP sensor
overrides, HTTPS with a self-signed certificate made by the relay's own code.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pylsl
import pytest
from browser import ARGS, CHROMIUM, require_chromium
from lsl_helpers import wait_until

from lsl_session.session import Session, create_session_folder
from outlets.phone.relay import PhoneRelay
from outlets.phone.web import WebFront
from outlets.phone.web.cert import self_signed, server_context

# Chromium rounds readings (privacy): accelerations to 0.1 m/s², so use such values
ACCEL = {"x": 0.5, "y": -1.3, "z": 9.8}
GYRO = {"x": 0.1, "y": -0.2, "z": 0.3}  # rad/s (the Generic Sensor API unit)
ORIENTATION = {"alpha": 10.0, "beta": 20.0, "gamma": -30.0}


def write_y4m(path: Path, frames: int = 90, w: int = 160, h: int = 120) -> Path:
    """A 30 fps I420 clip: a moving bright bar, so frames differ."""
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            y = np.full((h, w), 40, np.uint8)
            y[:, (k * 3) % w : (k * 3) % w + 8] = 220
            chroma = np.full(w * h // 2, 128, np.uint8)  # U and V planes, grey
            f.write(b"FRAME\n" + y.tobytes() + chroma.tobytes())
    return path


@pytest.fixture
def web_relay(tmp_path):
    require_chromium()
    device = f"web_{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    folder = create_session_folder(tmp_path / "rec", "web")
    session = Session(folder)
    relay = PhoneRelay(tokens={device: token}, session=session).start()
    cert, key = self_signed(tmp_path / "tls", ["127.0.0.1"])
    front = WebFront(relay, ssl_context=server_context(cert, key)).start()
    yield relay, front, device, token, folder
    front.stop()
    relay.stop()
    session.close()


def _phone_browser(p, clip: Path):
    """Chromium with the fake camera playing ``clip``; a context that trusts the relay."""
    browser = p.chromium.launch(
        executable_path=CHROMIUM,
        args=[*ARGS, "--use-fake-ui-for-media-stream",
              "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={clip}"],
    )  # fmt: skip
    context = browser.new_context(ignore_https_errors=True)
    context.grant_permissions(["camera", "accelerometer", "gyroscope"])
    return browser, context


def _open_page(p, front, device, token, clip):
    browser, context = _phone_browser(p, clip)
    origin = f"https://127.0.0.1:{front.port}"
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    cdp = context.new_cdp_session(page)
    for kind, xyz in (("accelerometer", ACCEL), ("gyroscope", GYRO)):
        cdp.send("Emulation.setSensorOverrideEnabled", {"enabled": True, "type": kind})
        cdp.send(
            "Emulation.setSensorOverrideReadings",
            {"type": kind, "reading": {"xyz": xyz}},
        )
    cdp.send("DeviceOrientation.setDeviceOrientationOverride", ORIENTATION)
    page.goto(f"{origin}/#device={device}&token={token}")
    return browser, page, errors, cdp


def _inlet(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_bypred(f"source_id='{source_id}'", timeout=10)
    assert found, f"no LSL stream {source_id}"
    inlet = pylsl.StreamInlet(found[0], recover=False)
    inlet.open_stream(timeout=5)
    return inlet


def _pull(inlet: pylsl.StreamInlet, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    rows, stamps = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data, ts = inlet.pull_chunk(timeout=0.2)
        rows += data
        stamps += ts
    return np.asarray(rows, float), np.asarray(stamps, float)


def test_page_streams_motion_orientation_video_and_uploads(web_relay, tmp_path):
    from playwright.sync_api import sync_playwright

    relay, front, device, token, folder = web_relay
    clip = write_y4m(tmp_path / "clip.y4m")
    with sync_playwright() as p:
        browser, page, errors, cdp = _open_page(p, front, device, token, clip)
        try:
            page.click("#start")
            assert wait_until(lambda: bool(relay.source_ids(device)), timeout=20)
            ids = relay.source_ids(device)
            assert set(ids) == {"motion", "orientation", "rgb_frames", "events"}
            # devicemotion really fires with the injected readings
            motion = _inlet(ids["motion"])
            # held until the clock fit is ready (~2-3 s after connecting)
            values, stamps = _pull(motion, 5.0)
            assert len(values) > 20
            assert np.allclose(values[-1, :3], [ACCEL[k] for k in "xyz"], atol=1e-4)
            assert np.allclose(values[-1, 3:], [GYRO[k] for k in "xyz"], atol=2e-3)
            assert np.all(np.diff(stamps) > 0)
            orient = _inlet(ids["orientation"])
            # deviceorientation fires on a change: turn the phone now
            turned = {k: v + 5.0 for k, v in ORIENTATION.items()}
            cdp.send("DeviceOrientation.setDeviceOrientationOverride", turned)
            values, _ = _pull(orient, 1.0)
            assert len(values), page.evaluate("window.lslPhone.counts")
            assert np.allclose(values[-1], list(turned.values()), atol=1e-3)
            frames = _inlet(ids["rgb_frames"])
            events = _inlet(ids["events"])
            acks = relay.start_record(session_id=Session(folder).session_id)
            assert acks[device]["status"] == "ok"
            page.click("#tap")
            assert relay.sync_flash()[device]["status"] == "ok"
            # the lab's pulse 3, at a time ahead: the page flashes then, with the id
            flash_at = pylsl.local_clock() + 0.5
            assert relay.sync_flash(pulse=3, at=flash_at)[device]["status"] == "ok"
            time.sleep(3.0)
            assert relay.stop_record()[device]["status"] == "ok"
            frame_rows, _ = _pull(frames, 1.5)
            labels = [row[0] for row in events.pull_chunk(timeout=1.0)[0]]
            assert "tap" in labels and "sync_pulse" in labels
            assert "sync_flash 3" in labels
            assert wait_until(lambda: bool(_files(folder, device)), timeout=30)
            (entry,) = _files(folder, device)
            video = folder / entry["file_path"]
            assert video.parent == folder / "devices" / device / "rgb_videos"
            assert video.name.startswith(f"{device}_rgb_")
            assert hashlib.sha256(video.read_bytes()).hexdigest() == entry["sha256"]
            n_video = _count_frames(video)
            # one stream sample per recorded frame (±1 at the start/stop edge)
            assert abs(len(frame_rows) - n_video) <= 1, (len(frame_rows), n_video)
            assert frame_rows[:, 0].tolist() == list(range(len(frame_rows)))
            assert page.evaluate("window.lslPhone.frameTimeSource") in (
                "captureTime", "receiveTime", "presentationTime",
            )  # fmt: skip
            assert errors == []
        finally:
            browser.close()


def _files(folder: Path, device: str) -> list[dict]:
    meta = json.loads((folder / "session_metadata.json").read_text())
    return meta.get("files", {}).get(device, [])


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_reconnect_resumes_same_streams(web_relay, tmp_path):
    from playwright.sync_api import sync_playwright

    relay, front, device, token, _ = web_relay
    clip = write_y4m(tmp_path / "clip.y4m", frames=30)
    with sync_playwright() as p:
        browser, page, _errors, _cdp = _open_page(p, front, device, token, clip)
        try:
            page.click("#start")
            assert wait_until(lambda: bool(relay.source_ids(device)), timeout=20)
            before = relay.source_ids(device)
            motion = _inlet(before["motion"])
            _pull(motion, 0.5)
            page.evaluate("window.lslPhone.ws.close()")  # the network drops
            assert wait_until(
                lambda: relay.status()[device]["connected"] is False, timeout=5
            )
            assert wait_until(lambda: relay.status()[device]["connected"], timeout=15)
            assert relay.source_ids(device) == before
            # held until the clock fit is ready (~2-3 s after connecting)
            values, stamps = _pull(motion, 5.0)
            assert len(values) > 20  # the same inlet keeps receiving
            assert np.all(np.diff(stamps) > 0)
        finally:
            browser.close()


def test_hidden_page_pauses_and_resumes_under_the_same_streams(web_relay, tmp_path):
    from playwright.sync_api import sync_playwright

    relay, front, device, token, _ = web_relay
    clip = write_y4m(tmp_path / "clip.y4m", frames=30)
    visibility = """(state) => {
        Object.defineProperty(document, "visibilityState",
                              {value: state, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    with sync_playwright() as p:
        browser, page, errors, _cdp = _open_page(p, front, device, token, clip)
        try:
            page.click("#start")
            assert wait_until(lambda: bool(relay.source_ids(device)), timeout=20)
            ids = relay.source_ids(device)
            motion, events = _inlet(ids["motion"]), _inlet(ids["events"])
            # held until the clock fit is ready (~2-3 s after connecting)
            assert len(_pull(motion, 5.0)[0]) > 10
            page.evaluate(visibility, "hidden")  # screen off / tab in background
            time.sleep(0.3)
            _pull(motion, 0.3)  # what was batched before the pause
            paused, _ = _pull(motion, 1.0)
            assert len(paused) == 0
            page.evaluate(visibility, "visible")
            resumed, _ = _pull(motion, 1.5)
            assert len(resumed) > 10
            assert relay.source_ids(device) == ids
            labels = [row[0] for row in events.pull_chunk(timeout=1.0)[0]]
            assert labels[-2:] == ["paused", "resumed"]
            assert errors == []
        finally:
            browser.close()


def _clock_errors(relay, cdp, device, seconds: float) -> np.ndarray:
    """Relay mapping of the page clock minus the midpoint of an LSL bracket."""
    dev = relay.devices[device]
    expression = {
        "expression": "(performance.timeOrigin + performance.now()) / 1000",
        "returnByValue": True,
    }
    errors = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = pylsl.local_clock()
        t_page = cdp.send("Runtime.evaluate", expression)["result"]["value"]
        after = pylsl.local_clock()
        # a wide bracket says little: its midpoint is uncertain by half its width
        if after - before < 0.003 and dev.conn is not None and dev.conn.est.ready:
            errors.append(float(dev.conn.est.map(t_page)) - (before + after) / 2)
        time.sleep(0.02)
    return np.asarray(errors)


@pytest.mark.parametrize(
    "seconds",
    [pytest.param(8.0, id="8s"), pytest.param(60.0, marks=pytest.mark.slow, id="60s")],
)
def test_clock_mapping_error_against_the_page_clock(web_relay, tmp_path, seconds):
    from playwright.sync_api import sync_playwright

    relay, front, device, token, _ = web_relay
    clip = write_y4m(tmp_path / "clip.y4m", frames=30)
    with sync_playwright() as p:
        browser, page, _errors, cdp = _open_page(p, front, device, token, clip)
        try:
            page.click("#start")
            assert wait_until(lambda: bool(relay.source_ids(device)), timeout=20)
            errors = np.abs(_clock_errors(relay, cdp, device, seconds)) * 1e3
            assert len(errors) > 20
            p50, p99 = np.percentile(errors, [50, 99])
            sys.stderr.write(
                f"page clock mapping error ms: p50 {p50:.3f} p99 {p99:.3f}\n"
            )
            assert p99 <= 2.0
        finally:
            browser.close()


def test_pairing_url_keeps_token_in_fragment():
    from outlets.phone.web.pairing import pairing_url, qr_text

    url = pairing_url("https://10.0.0.5:9443/", "phone_1", "s3cr3t")
    assert url == "https://10.0.0.5:9443/#device=phone_1&token=s3cr3t"
    assert "█" in qr_text(url) or "▀" in qr_text(url)


def test_lab_config_records_a_browser_phone_end_to_end(tmp_path):
    """`record --config` with ``[relay] web = true``: pair a real Chromium, record."""
    import os
    import re
    import subprocess

    import pyxdf
    from playwright.sync_api import sync_playwright

    require_chromium()
    device, token = f"webphone_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    config = tmp_path / "lab.toml"
    config.write_text(
        f"""
[session]
name = "webphone"
root = "{tmp_path / "rec"}"
[record]
wait_s = 60
upload_timeout_s = 60
[relay]
host = "127.0.0.1"
port = 0
web = true
web_port = 0
[[devices]]
id = "{device}"
type = "android_phone"
token = "{token}"
capabilities = ["motion_data", "orientation_data", "rgb_video"]
required = true
"""
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--config", str(config),
         "--duration", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    url = None
    while url is None:
        line = proc.stderr.readline()
        assert line, "record ended before pairing:\n" + "".join(lines)
        lines.append(line)
        match = re.search(rf"pair {device}: (https://\S+)", line)
        url = match.group(1) if match else None
    assert token not in "".join(lines[:-1])  # printed once, in the pairing line
    clip = write_y4m(tmp_path / "clip.y4m", frames=60)
    with sync_playwright() as p:
        browser, context = _phone_browser(p, clip)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Emulation.setSensorOverrideEnabled",
                 {"enabled": True, "type": "accelerometer"})  # fmt: skip
        cdp.send("Emulation.setSensorOverrideReadings",
                 {"type": "accelerometer", "reading": {"xyz": ACCEL}})  # fmt: skip
        page.goto(url)
        page.click("#start")
        out, err = proc.communicate(timeout=180)
        browser.close()
    assert proc.returncode == 0, "".join(lines) + err
    folder = Path(out.strip().splitlines()[-1])
    streams, _ = pyxdf.load_xdf(str(next(folder.glob("*.xdf"))))
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert len(by_name[f"{device}_motion"]["time_stamps"]) > 50
    assert len(by_name[f"{device}_rgb_frames"]["time_stamps"]) > 30
    (entry,) = _files(folder, device)
    video = folder / entry["file_path"]
    assert hashlib.sha256(video.read_bytes()).hexdigest() == entry["sha256"]
    assert "samples lost" in out
