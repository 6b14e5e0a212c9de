"""``lsl-session new``, ``list`` and ``info``."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from lsl_session.cli import main


def test_new_list_info(session_root):
    runner = CliRunner()
    result = runner.invoke(main, ["new", "--root", str(session_root), "--name", "X"])
    assert result.exit_code == 0, result.output
    folder = result.stdout.strip().splitlines()[-1]
    assert folder.endswith(tuple("0123456789")) and "/X_" in folder
    listed = runner.invoke(main, ["list", "--root", str(session_root), "--json"])
    sessions = json.loads(listed.stdout)
    assert [s["path"] for s in sessions] == [folder]
    assert sessions[0]["status"] == "active"
    info = runner.invoke(main, ["info", folder])
    assert info.exit_code == 0
    assert "status    active" in info.stdout
    info_json = json.loads(runner.invoke(main, ["info", folder, "--json"]).stdout)
    assert info_json["session_id"] == folder.rsplit("/", 1)[-1]


def test_errors_are_one_line_and_nonzero(tmp_path):
    for args in (
        ["info", str(tmp_path / "missing")],
        ["info", str(tmp_path)],
        ["new", "--root", str(tmp_path), "--name", "///"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "lsl_session", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0, args
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
        assert len(errors) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_info_on_xdf_file(tmp_path):
    from lsl_session.xdf.writer import XdfWriter

    path = tmp_path / "f.xdf"
    with XdfWriter(path) as w:
        w.write_stream_header(
            1,
            '<?xml version="1.0"?><info><name>A</name><type>EEG</type>'
            "<channel_count>1</channel_count><nominal_srate>10</nominal_srate>"
            "<channel_format>float32</channel_format></info>",
        )
        import numpy as np

        w.write_samples(1, np.arange(5) / 10.0, np.zeros((5, 1), np.float32))
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "A (EEG" in result.stdout and "5 samples" in result.stdout
    assert "NO FOOTER" in result.stdout
