"""Pipeline: plugin discovery and isolation, CLI commands, malformed input."""

from __future__ import annotations

import importlib
import json
import textwrap

import click
import pytest
from click.testing import CliRunner
from test_processing_support import make_session

from lsl_session.cli import _Group
from lsl_session.cli.process import COMMANDS
from lsl_session.processing import plugins
from lsl_session.processing.pipeline import process_session
from lsl_session.session import Session, create_session_folder
from lsl_session.xdf import XdfWriter

PLUGIN = """
from pathlib import Path

class MyProcessor:
    name = "myproc"

    def run(self, context):
        out = Path(context.output_dir) / "streams.txt"
        out.write_text("\\n".join(s.name for s in context.streams))
        return {"file": str(out), "t0": context.t0, "n": len(context.streams)}

class Broken:
    name = "broken"

    def run(self, context):
        raise RuntimeError("boom")

def factory():
    return MyProcessor()
"""


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "lsl_session_test_plugin.py").write_text(PLUGIN)
    dist = site / "lsl_session_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lsl-session-test-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [lsl_session.processors]
        myproc = lsl_session_test_plugin:MyProcessor
        broken = lsl_session_test_plugin:Broken
        sync_check = lsl_session_test_plugin:factory
    """)
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    importlib.invalidate_caches()


@pytest.fixture
def cli():
    @click.group(cls=_Group)
    def group() -> None:
        pass

    for command in COMMANDS:
        group.add_command(command)
    return group


def test_entry_point_processor_discovered_and_isolated(tmp_path, plugin_dist):
    names = [s.name for s in plugins.discover(builtins=["sync_check"])]
    assert names.count("sync_check") == 1  # the built-in wins over the entry point
    assert {"myproc", "broken"} <= set(names)
    folder, _, _ = make_session(tmp_path)
    run = process_session(Session(folder), hand_segmentation=False)
    mine = run["steps"]["myproc"]
    assert mine["status"] == "ok"
    assert mine["report"]["outputs"] == ["processing/myproc/streams.txt"]
    assert mine["report"]["result"]["file"] == str(
        folder / "processing/myproc/streams.txt"
    )
    assert "gsr_a" in (folder / "processing/myproc/streams.txt").read_text()
    assert run["steps"]["broken"] == {
        "status": "error", "error": "RuntimeError: boom",
        "duration_s": run["steps"]["broken"]["duration_s"],
    }  # fmt: skip
    assert run["status"] == "partial"
    assert run["steps"]["sync_check"]["report"]["origin"] == "builtin"
    stored = Session(folder).metadata()["processing"]["runs"][-1]
    assert stored["steps"]["broken"]["error"] == "RuntimeError: boom"
    only = process_session(
        Session(folder), hand_segmentation=False, processors=["myproc"]
    )
    assert set(only["steps"]) == {
        "load",
        "synchronized_data",
        "csv",
        "matlab",
        "myproc",
        "report",  # the session report is a step of every run, not a processor
    }


def test_missing_builtin_module_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setitem(plugins.BUILTINS, "sync_check", "lsl_session_no_such_mod:X")
    folder, _, _ = make_session(tmp_path)
    run = process_session(Session(folder), hand_segmentation=False)
    assert run["steps"]["sync_check"]["status"] == "error"
    assert "ModuleNotFoundError" in run["steps"]["sync_check"]["error"]
    assert run["steps"]["synchronized_data"]["status"] == "ok"


def test_cli_process_and_export(tmp_path, cli):
    folder, _, _ = make_session(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["process", str(folder), "--rate", "100",
                                 "--no-hand-segmentation"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (folder / "processing/synchronized_data/aligned_100Hz.parquet").exists()
    assert "hand_segmentation" not in result.output
    result = runner.invoke(cli, ["export", str(folder), "--fif"])
    assert result.exit_code == 0, result.output
    assert (folder / "exports" / f"{folder.name}_raw.fif").exists()
    runs = Session(folder).metadata()["processing"]["runs"]
    assert [r["kind"] for r in runs] == ["process", "export"]
    assert set(runs[-1]["steps"]) == {"load", "fif"}


def _session_with(root, content: bytes | None):
    folder = create_session_folder(root, "bad")
    if content is not None:
        (folder / f"{folder.name}.xdf").write_bytes(content)
    return folder


def _empty_xdf() -> bytes:
    import io

    buf = io.BytesIO()
    XdfWriter(buf).close()
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "fails"),
    [(None, True), (b"XDF:\x07garbage" * 10, True), (b"PK\x03\x04zip", True),
     ("empty", False), ("truncated", False)],
    ids=["no-xdf", "corrupt", "not-xdf", "no-streams", "truncated"],
)  # fmt: skip
def test_cli_malformed_input(tmp_path, cli, content, fails):
    if content == "empty":
        content = _empty_xdf()
    elif content == "truncated":
        good, _, _ = make_session(tmp_path / "g", name="good")
        data = (good / f"{good.name}.xdf").read_bytes()
        content = data[: len(data) // 2]
    folder = _session_with(tmp_path, content)
    result = CliRunner().invoke(cli, ["process", str(folder), "--no-hand-segmentation"])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    )
    meta = json.loads((folder / "session_metadata.json").read_text())
    run = meta["processing"]["runs"][-1]
    if fails:
        assert result.exit_code != 0
        assert "Error: load failed:" in result.output
        assert run["steps"]["load"]["status"] == "error"
    else:
        assert result.exit_code == 0, result.output
        assert run["steps"]["synchronized_data"]["status"] == "ok"
        assert (folder / "processing/synchronized_data/sync_report.json").exists()


def test_cli_not_a_session(tmp_path, cli):
    result = CliRunner().invoke(cli, ["process", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "Error:" in result.output
