"""MarkerOutlet and the ``markers`` command, against real pylsl inlets."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading

import pylsl
import pytest
from click.testing import CliRunner
from lsl_helpers import wait_until

from outlets.markers import MarkerOutlet, OutletError, marker_source_id
from outlets.markers.cli import markers


def _inlet(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    assert found, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(found[0], recover=False)
    inlet.open_stream(10.0)
    return inlet


def _pull_markers(inlet: pylsl.StreamInlet, n: int, timeout: float = 15.0):
    labels: list[str] = []
    stamps: list[float] = []

    def more() -> bool:
        chunk, ts = inlet.pull_chunk(timeout=0.0)
        labels.extend(s[0] for s in chunk)
        stamps.extend(ts)
        return len(labels) >= n

    wait_until(more, timeout=timeout)
    return labels, stamps


def test_stream_info_read_back(uid):
    name = f"Markers_{uid}"
    with MarkerOutlet(name) as outlet:
        assert (
            outlet.source_id == marker_source_id(name) == f"lsl_session/markers/{name}"
        )
        inlet = _inlet(outlet.source_id)
        info = inlet.info(5.0)
        assert info.name() == name
        assert info.type() == "Markers"
        assert info.channel_count() == 1
        assert info.channel_format() == pylsl.cf_string
        assert info.nominal_srate() == pylsl.IRREGULAR_RATE
        assert info.source_id() == outlet.source_id
        channel = info.desc().child("channels").child("channel")
        assert channel.child_value("label") == "marker"
        acq = info.desc().child("acquisition")
        assert acq.child_value("manufacturer") == "lsl_session"
        del inlet


def test_push_explicit_and_default_stamps(uid):
    outlet = MarkerOutlet(f"M_{uid}", source_id=f"src_{uid}")
    inlet = _inlet(f"src_{uid}")
    assert wait_until(outlet.have_consumers)
    t_explicit = pylsl.local_clock() - 1.0
    assert outlet.push("stimulus_onset", t_explicit) == t_explicit
    before = pylsl.local_clock()
    t_default = outlet.push("")
    assert t_default >= before
    labels, stamps = _pull_markers(inlet, 2)
    assert labels == ["stimulus_onset", ""]
    assert stamps[0] == pytest.approx(t_explicit, abs=1e-6)
    assert stamps[1] == pytest.approx(t_default, abs=1e-6)
    assert outlet.count == 2
    del inlet
    outlet.close()
    outlet.close()  # twice is fine
    with pytest.raises(OutletError, match="closed"):
        outlet.push("late")


def test_push_is_thread_safe(uid):
    with MarkerOutlet(f"M_{uid}") as outlet:
        inlet = _inlet(outlet.source_id)
        threads = [
            threading.Thread(
                target=lambda t=t: [outlet.push(f"{t}:{i}") for i in range(50)]
            )
            for t in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        labels, _ = _pull_markers(inlet, 200)
        assert sorted(labels) == sorted(f"{t}:{i}" for t in range(4) for i in range(50))
        del inlet


def test_invalid_arguments():
    with pytest.raises(ValueError, match="name"):
        MarkerOutlet("")
    with MarkerOutlet(f"M_{id(object())}") as outlet, pytest.raises(TypeError):
        outlet.push(3)  # type: ignore[arg-type]


def _run_cli(
    uid: str, lines: list[str], newline: str = "\n"
) -> tuple[list[str], list[float]]:
    source_id = f"lsl_session/test/{uid}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outlets.markers.cli",
            "--name",
            f"CliMarkers_{uid}",
            "--source-id",
            source_id,
            "--wait-consumer",
            "20",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        assert proc.stdin is not None
        while True:  # liblsl may log first; wait for our line
            line = proc.stderr.readline().decode()
            assert line, "CLI exited before becoming ready"
            if line.startswith("ready:"):
                break
        assert source_id in line
        inlet = _inlet(source_id)
        proc.stdin.write("".join(s + newline for s in lines).encode())
        proc.stdin.close()
        labels, stamps = _pull_markers(inlet, len(lines))
        assert proc.wait(30) == 0
        del inlet
        return labels, stamps
    finally:
        if proc.poll() is None:  # pragma: no cover - failure path
            proc.kill()
            proc.wait()


def test_cli_1000_lines_in_order(uid):
    lines = [f"trial_{i:04d}" for i in range(1000)]
    labels, stamps = _run_cli(uid, lines)
    assert labels == lines
    assert all(b >= a for a, b in itertools.pairwise(stamps))


def test_cli_empty_lines_and_crlf(uid):
    lines = ["a", "", "  spaced  ", "b"]
    labels, _ = _run_cli(uid, lines, newline="\r\n")
    assert labels == lines


def test_cli_usage_error():
    result = CliRunner().invoke(markers, ["--name", ""])
    assert result.exit_code == 2
    assert "name" in result.output


def test_cli_help_has_examples():
    result = CliRunner().invoke(markers, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output
