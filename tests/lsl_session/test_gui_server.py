"""The control room's naming, bounds and request checks, over real sockets."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pylsl
import pytest
from lsl_helpers import wait_until

from lsl_session.errors import LslSessionError
from lsl_session.gui.app import GuiApp, GuiOptions, identity_query
from lsl_session.gui.naming import (
    BIDS_TEMPLATE,
    LEGACY_TEMPLATE,
    RunFields,
    load_fields,
    placement,
    save_fields,
)
from lsl_session.gui.server import MAX_BODY, GuiServer
from lsl_session.gui.viewer import ChannelViewer, channel_meta
from lsl_session.manager import SessionManager

# ------------------------------------------------------------------ naming


def test_bids_template_puts_subject_and_session_folders_above_the_session():
    f = RunFields(participant="P 07", session="S02", task="odd-ball", run=3)
    where = placement(f)
    assert where.folders == ("sub-P07", "ses-S02")
    assert where.name == "sub-P07_ses-S02_task-oddball_run-003_eeg"


def test_acquisition_group_appears_only_when_given():
    assert "_acq-" not in placement(RunFields()).name
    assert "_acq-hd_" in placement(RunFields(acquisition="hd")).name


def test_legacy_template_and_its_counter():
    where = placement(RunFields(template=LEGACY_TEMPLATE, task="T1", run=12))
    assert where.folders == ("exp012",)
    assert where.name == "block_T1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"participant": "a}b"}, "braces"),
        ({"task": "x\ny"}, "control"),
        ({"run": 0}, "between 1 and 999"),
        ({"run": 1000}, "between 1 and 999"),
        ({"participant": "x" * 65}, "at most 64"),
        ({"template": "../../%p.xdf"}, "unusable folder"),
        ({"template": "a/b/c/d/e/%p.xdf"}, "folder levels"),
        ({"template": "%a/"}, "empty file name"),
    ],
)
def test_bad_fields_are_refused_with_a_reason(change, message):
    f = RunFields(**{**RunFields().__dict__, **change})
    with pytest.raises(LslSessionError, match=message):
        placement(f.check())


def test_fields_persist_atomically_and_a_bad_file_gives_defaults(tmp_path):
    save_fields(tmp_path, RunFields(participant="P09", run=4))
    assert load_fields(tmp_path) == RunFields(participant="P09", run=4)
    (tmp_path / ".lsl_session_gui.json").write_text("{not json")
    assert load_fields(tmp_path) == RunFields()
    assert RunFields().template == BIDS_TEMPLATE


def test_identity_query_quotes_or_gives_up():
    rec = {"name": "it's", "source_id": "s", "hostname": "h"}
    assert identity_query(rec) == """name="it's" and source_id='s' and hostname='h'"""
    assert identity_query({**rec, "name": "a'b\"c"}) is None


# ------------------------------------------------------------------ viewer


def test_channel_labels_and_units_from_the_stream_header():
    info = pylsl.StreamInfo("v", "EEG", 3, 100, "float32", "v1")
    chans = info.desc().append_child("channels")
    for label in ("Cz", "<b>Pz</b>"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    labels, units = channel_meta(info.as_xml(), 3)
    assert labels == ["Cz", "<b>Pz</b>", "ch3"]  # text, escaped by the page
    assert units == ["microvolts", "microvolts", ""]
    assert channel_meta("<info><desc", 2) == (["ch1", "ch2"], ["", ""])


def test_viewer_flags_flat_and_clipped_and_bounds_channels():
    viewer = ChannelViewer()
    t = np.arange(64) / 64.0
    viewer.tap(1, t, np.zeros((64, 4), np.float32))
    viewer.tap(1, t + 1, np.zeros((64, 4), np.float32))
    assert viewer.flags(1) == ["flat"]
    wave = np.clip(3 * np.sin(2 * np.pi * 3 * t), -1, 1)[:, None].repeat(2, 1)
    viewer.tap(2, t, wave)
    viewer.tap(2, t + 1, wave)
    assert viewer.flags(2) == ["clipped"]
    smooth = np.sin(2 * np.pi * 3 * t)[:, None].repeat(400, 1)
    viewer.tap(3, t, smooth)
    viewer.tap(3, t + 1, smooth)
    assert viewer.flags(3) == []
    trace = viewer.trace(3, first=250)
    assert trace is not None
    assert trace["channel_count"] == 256  # MAX_CHANNELS kept
    assert [c["index"] for c in trace["channels"]] == list(range(250, 256))


# ------------------------------------------------------------------ server


@pytest.fixture
def served(tmp_path):
    manager = SessionManager(tmp_path / "study")
    app = GuiApp(manager, GuiOptions(root=tmp_path / "study", process=False))
    server = GuiServer(app)
    app.start()
    server.start()
    yield server
    server.stop()
    app.close()
    manager.close()


def _request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    data = None if body is None else json.dumps(body).encode()
    head = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
    conn.request(method, path, body=data, headers=head)
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def _csrf(server):
    return {"X-CSRF-Token": server.csrf}


def test_actions_need_the_csrf_token_and_a_same_origin(served):
    status, _, body = _request(served, "POST", "/api/fields", {"participant": "X"})
    assert status == 403 and b"X-CSRF-Token" in body
    status, _, _ = _request(
        served, "POST", "/api/fields", {"participant": "X"},
        {**_csrf(served), "Origin": "http://evil.example"},
    )  # fmt: skip
    assert status == 403
    status, _, _ = _request(
        served, "POST", "/api/fields", {"participant": "X"},
        {**_csrf(served), "Sec-Fetch-Site": "cross-site"},
    )  # fmt: skip
    assert status == 403
    assert served.app.fields().participant == "P001"  # nothing changed
    status, _, _ = _request(
        served, "POST", "/api/fields", {"participant": "P42"}, _csrf(served)
    )
    assert status == 200 and served.app.fields().participant == "P42"


def test_a_foreign_host_header_is_refused(served):
    status, _, _ = _request(
        served, "GET", "/api/hello", headers={"Host": f"evil.example:{served.port}"}
    )
    assert status == 403  # a DNS-rebinding page never gets the CSRF token


def test_request_body_is_bounded_and_must_be_json(served):
    status, _, _ = _request(
        served, "POST", "/api/note", {"text": "x" * (MAX_BODY + 10)}, _csrf(served)
    )
    assert status == 413
    conn = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    conn.sendall(
        (
            f"POST /api/note HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            f"X-CSRF-Token: {served.csrf}\r\nContent-Length: 5\r\n\r\n[1,2]"
        ).encode()
    )
    assert b"400" in conn.recv(4096).split(b"\r\n")[0]
    conn.close()


def test_a_slow_body_is_cut_at_its_deadline(served):
    conn = socket.create_connection(("127.0.0.1", served.port), timeout=15)
    conn.sendall(
        (
            f"POST /api/note HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            f"X-CSRF-Token: {served.csrf}\r\nContent-Length: 100\r\n\r\n{{"
        ).encode()
    )
    started = time.monotonic()
    reply = conn.recv(4096)
    assert b"408" in reply.split(b"\r\n")[0]
    assert time.monotonic() - started < 12
    conn.close()


def test_notes_need_a_session_and_are_bounded(served):
    status, _, body = _request(
        served, "POST", "/api/note", {"text": "hello"}, _csrf(served)
    )
    assert status == 400 and b"Start first" in body
    status, _, body = _request(
        served, "POST", "/api/note", {"text": "x" * 501}, _csrf(served)
    )
    assert status == 400


def test_public_bind_needs_a_token(tmp_path):
    manager = SessionManager(tmp_path)
    app = GuiApp(manager, GuiOptions(root=tmp_path, process=False))
    with pytest.raises(LslSessionError, match="token"):
        GuiServer(app, host="0.0.0.0")
    server = GuiServer(app, host="0.0.0.0", token="s3cret")
    server.start()
    try:
        host = {"Host": f"127.0.0.1:{server.port}"}
        status, _, _ = _request(server, "GET", "/api/hello", headers=host)
        assert status == 403
        status, _, _ = _request(server, "GET", "/api/hello?token=s3cret", headers=host)
        assert status == 200
    finally:
        server.stop()
        manager.close()


def test_reports_are_sandboxed_and_only_listed_sessions_are_served(served, uid):
    app = served.app
    app.manager.create_session("rep")
    folder = app.manager.session_dir
    app.manager.end_session(process=False)
    (folder / "processing").mkdir(exist_ok=True)
    (folder / "processing" / "report.html").write_text("<script>alert(1)</script>r")
    app._sessions_at = 0.0
    status, headers, body = _request(served, "GET", f"/report/{folder.name}")
    assert status == 200 and body.endswith(b"r")
    assert headers["Content-Security-Policy"].startswith("sandbox")
    status, _, _ = _request(served, "GET", "/report/..%2F..%2Fetc")
    assert status == 400
    page_status, page_headers, _ = _request(served, "GET", "/")
    assert (
        page_status == 200
        and "script-src 'self'" in page_headers["Content-Security-Policy"]
    )


def test_job_actions_refuse_unknown_kinds_and_sessions(served):
    status, _, body = _request(
        served, "POST", "/api/job", {"kind": "rm", "session_id": "x"}, _csrf(served)
    )
    assert status == 400 and b"unknown action" in body
    status, _, body = _request(
        served, "POST", "/api/job", {"kind": "process", "session_id": "../x"},
        _csrf(served),
    )  # fmt: skip
    assert status == 400 and b"no such session" in body


def test_split_and_stop_without_a_recording_say_so(served):
    status, _, body = _request(served, "POST", "/api/split", {}, _csrf(served))
    assert status == 400 and b"nothing is recording" in body
    assert wait_until(lambda: _request(served, "GET", "/api/state")[0] == 200, 5)


# ------------------------------------------------------------ CLI and jobs


def _gui_cli(tmp_path, *args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "gui", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = None
    while url is None:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError("gui ended before printing its URL")
        match = re.search(r"control room: (http://\S+)", line)
        url = match.group(1) if match else None
    return proc, url


def _get_json(url):
    with urllib.request.urlopen(url, timeout=20) as resp:
        return json.load(resp)


def test_labrecorder_cfg_gives_root_required_streams_and_rcs(tmp_path, uid):
    port = _free_port()
    cfg = tmp_path / "LabRecorder.cfg"
    cfg.write_text(
        f"StudyRoot={tmp_path / 'lr_study'}\n"
        f'RequiredStreams="Req_{uid} (nohost)"\nRCSEnabled=1\nRCSPort={port}\n'
    )
    proc, url = _gui_cli(tmp_path, "--labrecorder-config", str(cfg), "--duration", "30")
    try:
        state = _get_json(url + "api/state")
        assert state["fields"]["root"] == str(tmp_path / "lr_study")
        assert [r["present"] for r in state["required"]] == [False]
        assert state["required"][0]["label"].startswith(f"Req_{uid}")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"filename {participant:P55}\n")
            assert s.recv(64) == b"OK"
        assert wait_until(
            lambda: _get_json(url + "api/state")["fields"]["participant"] == "P55", 5
        )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert out.strip().endswith("lr_study")


def test_lab_config_streams_are_the_required_ones(tmp_path, uid):
    config = tmp_path / "lab.toml"
    config.write_text(
        f'[session]\nname = "g"\nroot = "labroot"\n\n'
        f"[record]\nstreams = [\"source_id='lab-{uid}'\"]\n"
    )
    outlet = pylsl.StreamOutlet(
        pylsl.StreamInfo(f"Lab_{uid}", "EEG", 1, 100, "float32", f"lab-{uid}")
    )
    proc, url = _gui_cli(tmp_path, "--config", str(config), "--duration", "30")
    try:
        assert wait_until(
            lambda: _get_json(url + "api/state")["required"][0]["present"], 10
        )
        state = _get_json(url + "api/state")
        assert state["fields"]["root"] == str(tmp_path / "labroot")
        row = next(s for s in state["streams"] if s["name"] == f"Lab_{uid}")
        assert row["required"] and row["selected"]
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
        del outlet


def test_process_and_recover_jobs_report_their_outcome(tmp_path, uid):
    outlet = pylsl.StreamOutlet(
        pylsl.StreamInfo(f"Job_{uid}", "EEG", 2, 100, "float32", f"job-{uid}")
    )
    manager = SessionManager(tmp_path / "study")
    app = GuiApp(
        manager,
        GuiOptions(root=tmp_path / "study", queries=[f"source_id='job-{uid}'"],
                   process=False),
    )  # fmt: skip
    app.start()
    try:
        app.start_run()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            outlet.push_chunk(np.zeros((10, 2), np.float32))
            time.sleep(0.1)
        app.stop_run()
        assert app.fields().run == 2
        (row,) = app.sessions()
        for kind in ("process", "recover"):
            job = app.run_job(kind, row["session_id"])
            assert job["state"] == "running"
            assert app.jobs.wait_idle(240)
            done = next(j for j in app.jobs.views() if j["id"] == job["id"])
            assert done["state"] == "done", done
        folder = app.session_folder(row["session_id"])
        assert (folder / "processing" / "report.html").is_file()
        app.run_job("process", row["session_id"])
        with pytest.raises(LslSessionError, match="running already"):
            app.run_job("recover", row["session_id"])
    finally:
        app.jobs.wait_idle(240)
        app.close()
        manager.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_study_commands_find_sessions_in_template_folders(tmp_path):
    """`list`, `recover --root`, `archive` see sessions under sub-/ses- folders;
    a BIDS dataset's sourcedata copies are not sessions of the study."""
    from lsl_session.catalog import session_folders

    study = tmp_path / "study"
    crash = (  # a process that dies with its session open: `recover` has work
        "import os, sys; from lsl_session.manager import SessionManager;"
        "m = SessionManager(sys.argv[1]);"
        "m.create_session('sub-P01_ses-S01_task-t_run-001_eeg');"
        "print(m.session_dir); sys.stdout.flush(); os._exit(0)"
    )
    made = subprocess.run(
        [sys.executable, "-c", crash, str(study / "sub-P01" / "ses-S01")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    first = Path(made.stdout.strip())
    copy = study / "bids" / "sourcedata" / first.name
    copy.mkdir(parents=True)
    (study / "bids" / "dataset_description.json").write_text("{}")
    (copy / "session_metadata.json").write_text("{}")
    assert session_folders(study) == [first]
    listed = subprocess.run(
        [sys.executable, "-m", "lsl_session", "list", "--root", str(study)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0 and first.name in listed.stdout
    rec = subprocess.run(
        [sys.executable, "-m", "lsl_session", "recover", "--root", str(study), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    assert first.name in rec.stdout


def test_a_query_that_matches_nothing_is_said_on_the_page(served, uid):
    status, _, body = _request(
        served, "POST", "/api/select", {"queries": [f"nme='x{uid}'"]}, _csrf(served)
    )
    assert status == 200
    warnings = json.loads(body)["warnings"]
    assert len(warnings) == 1 and "did you mean name" in warnings[0]
    status, _, body = _request(served, "POST", "/api/stop", {}, _csrf(served))
    assert status == 400 and b"nothing is recording" in body
