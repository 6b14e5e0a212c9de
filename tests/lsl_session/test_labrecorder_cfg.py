"""LabRecorder.cfg: parsing, mapping, required streams (issue #13 item 2)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pyxdf
from lsl_helpers import RegularSource, wait_until
from test_control import Client, _samples

from lsl_session.errors import ConfigError
from lsl_session.labrecorder import (
    read_labrecorder_config,
    required_stream,
    split_list,
)

HOST = socket.gethostname()


def _cfg(tmp_path: Path, text: str, name: str = "LabRecorder.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_a_labrecorder_cfg(tmp_path):
    path = _cfg(
        tmp_path,
        "; a LabRecorder config as the lab has it\n"
        "StudyRoot=study\n"
        "PathTemplate=exp%n/block_%b.xdf\n"
        'SessionBlocks="GoNogo", "Test"\n'
        'RequiredStreams="BioSemi (lab-pc)", "Eye Tracker (lab-2)", "Odd (x y)"\n'
        'OnlineSync="BioSemi (lab-pc) post_ALL"\n'
        "RCSEnabled=1\nRCSPort=22346\nAutoStart=1\nFoo=bar\n",
    )
    cfg = read_labrecorder_config(path)
    assert cfg.root == tmp_path / "study"
    assert cfg.blocks == ("GoNogo", "Test")
    assert cfg.default_fields() == {"task": "GoNogo"}
    assert [r.query for r in cfg.required] == [
        "name='BioSemi' and hostname='lab-pc'",
        "name='Eye Tracker' and hostname='lab-2'",
        "name='Odd (x y)'",  # LabRecorder: no spaces inside the parentheses
    ]
    assert (cfg.rcs_enabled, cfg.rcs_port, cfg.auto_start) == (True, 22346, True)
    notes = " | ".join(cfg.not_honoured)
    assert "PathTemplate 'exp%n/block_%b.xdf'" in notes
    assert "OnlineSync" in notes
    assert "unknown key 'foo' ignored" in notes


def test_defaults_and_storage_location(tmp_path):
    cfg = read_labrecorder_config(_cfg(tmp_path, "[General]\n"))
    assert (cfg.root, cfg.required, cfg.rcs_enabled, cfg.rcs_port) == (
        None, (), True, 22345
    )  # fmt: skip
    assert cfg.auto_start is False
    loc = read_labrecorder_config(
        _cfg(tmp_path, f"StorageLocation={tmp_path}/data/sub-%p/x_%b.xdf\n", "b.cfg")
    )
    assert loc.root == tmp_path / "data"
    assert "StorageLocation file template 'sub-%p/x_%b.xdf'" in loc.not_honoured[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("StorageLocation=/a/%n.xdf\nStudyRoot=/b\n", "cannot be combined"),
        ("RCSPort=70000\n", "RCSPort must be 1-65535"),
        ("RCSPort=abc\n", "RCSPort must be 1-65535"),
        ("RCSEnabled=maybe\n", "RCSEnabled must be 1 or 0"),
        ("StudyRoot=C:/Recordings\n", "is a Windows path"),
        ('RequiredStreams="unterminated\n', "unterminated quote"),
        ("just some words\n", "not a key=value line"),
        ("StudyRoot=\n", "StudyRoot is empty"),
    ],
)
def test_bad_config_is_one_line_error(tmp_path, text, message):
    path = _cfg(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        read_labrecorder_config(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_hostile_files_are_refused(tmp_path):
    big = tmp_path / "big.cfg"
    big.write_bytes(b"a=" + b"x" * 2_000_000)
    with pytest.raises(ConfigError, match="larger than"):
        read_labrecorder_config(big)
    binary = tmp_path / "bin.cfg"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="not a LabRecorder config"):
        read_labrecorder_config(binary)
    with pytest.raises(ConfigError, match="no such"):
        read_labrecorder_config(tmp_path / "missing.cfg")


def test_list_and_required_stream_syntax():
    assert split_list('"a", "b, c" ,d,,') == ["a", "b, c", "d"]
    assert split_list(r'"x\"y"') == ['x"y']
    assert required_stream("O'Brien (h)").query == "name=\"O'Brien\" and hostname='h'"
    with pytest.raises(ValueError, match="both kinds"):
        required_stream("""a'b"c""")


def _record(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def _events(folder: Path) -> list[dict]:
    return json.loads((folder / f"{folder.name}_log.json").read_text())


def test_missing_required_stream_is_named_watched_and_exits_2(tmp_path, uid):
    present = RegularSource(f"Here_{uid}", f"here_{uid}", channels=1, srate=100)
    present.start()
    cfg = _cfg(
        tmp_path,
        f"StudyRoot={tmp_path / 'study'}\nRCSEnabled=0\n"
        f'RequiredStreams="Here_{uid} ({HOST})", "Late_{uid} ({HOST})"\n',
    )
    proc = _record(["--labrecorder-config", str(cfg), "--no-process",
                    "--duration", "3"])  # fmt: skip
    late = None
    try:
        seen = []
        while not any("required stream" in ln for ln in seen):
            seen.append(proc.stderr.readline())
            assert seen[-1], "".join(seen)
        # missing at start, reported: now it appears
        late = RegularSource(f"Late_{uid}", f"late_{uid}", channels=1, srate=100)
        late.start()
        out, rest = proc.communicate(timeout=60)
        err = "".join(seen) + rest
    finally:
        proc.kill()
        present.stop()
        if late is not None:
            late.stop()
    assert proc.returncode == 2, err
    folder = Path(out.splitlines()[-1])
    assert folder.parent == tmp_path / "study"
    (line,) = [ln for ln in err.splitlines() if "required stream" in ln]
    assert line == (
        f"Error: required stream(s) missing at start: Late_{uid} ({HOST});"
        " watching for them (recorded when they appear)"
    )
    (error,) = [e for e in _events(folder) if e["event"] == "error"]
    assert error["missing"] == [f"Late_{uid} ({HOST})"]
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    counts = {s["info"]["name"][0]: len(s["time_stamps"]) for s in streams}
    assert counts[f"Here_{uid}"] > 0
    assert counts[f"Late_{uid}"] > 0  # watched and recorded once it appeared


def test_allow_missing_exits_0(tmp_path, uid):
    cfg = _cfg(tmp_path, f'RCSEnabled=0\nRequiredStreams="Never_{uid} ({HOST})"\n')
    proc = _record(["--labrecorder-config", str(cfg), "--root", str(tmp_path / "r"),
                    "--no-process", "--duration", "1", "--allow-missing"])  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [ln for ln in err.splitlines() if ln.startswith("Warning: required")]
    folder = Path(out.splitlines()[-1])
    assert folder.parent == tmp_path / "r"  # an explicit --root wins over StudyRoot


def test_config_cfg_is_detected_rcs_autostart_and_blocks(tmp_path, uid):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = RegularSource(f"Auto_{uid}", f"auto_{uid}", channels=1, srate=100).start()
    cfg = _cfg(
        tmp_path,
        f"StudyRoot={tmp_path / 'study'}\nRCSEnabled=1\nRCSPort={port}\n"
        f'AutoStart=1\nSessionBlocks="Rest", "Task"\nPathTemplate=exp%n/b_%b.xdf\n'
        f'RequiredStreams="Auto_{uid} ({HOST})"\n',
    )
    proc = _record(["--config", str(cfg), "--no-process"])
    try:
        client = Client(("127.0.0.1", port)) if wait_until(
            lambda: _listening(port), 30) else None  # fmt: skip
        assert client is not None, "no control socket"
        assert wait_until(lambda: _samples(client.status(), f"Auto_{uid}") > 0, 20)
        assert client.send("stop") == b"OK"
        assert client.send("quit") == b"OK"
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        src.stop()
    assert proc.returncode == 0, err
    folder = Path(out.splitlines()[-1])
    assert folder.parent == tmp_path / "study"
    assert folder.name.startswith("task-Rest_")
    assert err.count("PathTemplate 'exp%n/b_%b.xdf'") == 1


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
