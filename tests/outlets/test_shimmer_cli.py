"""The ``shimmer`` click command (run directly, as the lead wires it into the group)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from outlets.shimmer.cli import shimmer_command


@pytest.mark.timeout(60)
def test_emulate_runs_for_duration_and_registers(uid, session_root):
    from lsl_session.session import create_session_folder

    folder = create_session_folder(session_root, name="shimmer_cli")
    args = ["--emulate", "--device-id", uid, "--duration", "1.5", "--rate", "256"]
    args += ["--drift-ppm", "30", "--sync-every", "0.5", "--session", str(folder)]
    result = CliRunner().invoke(shimmer_command, args)
    assert result.exit_code == 0, result.output
    assert f"streaming shimmer_{uid} (lsl_session/shimmer_{uid})" in result.output
    meta = json.loads((folder / "session_metadata.json").read_text())
    device = meta["devices"][f"shimmer_{uid}"]
    assert device["device_type"] == "shimmer_gsr"
    assert device["capabilities"] == ["gsr_data"]


def test_missing_port_is_one_line_error():
    result = CliRunner().invoke(shimmer_command, ["--port", "/dev/no-such-shimmer"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [
        "Error: cannot open Shimmer port '/dev/no-such-shimmer': No such file or directory"
    ]


@pytest.mark.parametrize("args", [[], ["--emulate", "--port", "/dev/x"]])
def test_port_xor_emulate(args):
    result = CliRunner().invoke(shimmer_command, args)
    assert result.exit_code == 2
    assert "exactly one of --port DEVICE or --emulate" in result.output
