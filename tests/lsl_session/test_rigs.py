"""Rig identity (#23 items 2 and 3): several rigs on one network never mix.

Two lab runs at the same time on this machine, under the same LSL SessionID and
with different roots, each record only their own rig's streams: the demo config
with ``--simulate`` twice, and two copies of one config differing only in ``rig``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from lsl_session.config import load_config
from lsl_session.errors import ConfigError
from lsl_session.lab.run import build_devices
from lsl_session.rig import default_rig, this_host

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLI = [sys.executable, "-m", "lsl_session"]
#: The demo's streams: webcam, markers, Shimmer, session events and 2 phones x 7.
DEMO_STREAMS = 18


def test_rig_from_config_default_and_simulated(tmp_path):
    lab = load_config(CONFIGS / "lab_session.toml")
    assert lab.rig == "room-a"
    plain = tmp_path / "room b.toml"
    plain.write_text('[session]\nname = "x"\n')
    assert (
        load_config(plain).rig == default_rig("room b") == (f"{default_rig()}-room-b")
    )
    # --simulate, and a config of simulated devices only: a rig unique to the run
    one, two = (load_config(CONFIGS / "demo.toml", simulate=True).rig for _ in "12")
    assert one != two and one.startswith(default_rig("demo") + "-sim-")
    assert load_config(CONFIGS / "demo.toml").rig.startswith(default_rig("demo"))
    assert load_config(CONFIGS / "lab_session.toml", simulate=True).rig.startswith(
        "room-a-sim-"
    )


@pytest.mark.parametrize("rig", ["", "a b", "x'y", "-x", "a" * 65, 3])
def test_invalid_rig_is_a_one_line_config_error(tmp_path, rig):
    path = tmp_path / "lab.toml"
    value = f'"{rig}"' if isinstance(rig, str) and "'" not in rig else repr(rig)
    path.write_text(f"[lab]\nrig = {value}\n")
    with pytest.raises(ConfigError, match=r"lab\.rig"):
        load_config(path)


def test_every_device_stream_carries_the_rig_and_is_selected_exactly(tmp_path):
    config = load_config(CONFIGS / "demo.toml", simulate=True)
    devices, _ = build_devices(config)
    for dev in devices:
        ids = dev.own_source_ids()
        assert ids and all(s.startswith(f"lsl_session/{config.rig}/") for s in ids)
        (query,) = dev.queries()
        assert "starts-with" not in query and "contains" not in query
        assert f"hostname='{this_host()}'" in query
        for sid in ids:
            assert f"source_id='{sid}'" in query


# ------------------------------------------------------- two rigs at once
def _lab(config: Path, root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "record", "--config", str(config), "--root", str(root),
         "--duration", "6", "--no-process", "--status-interval", "30", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _rig_of(err: str) -> str:
    (line,) = [ln for ln in err.splitlines() if ln.startswith("rig ")]
    return line.split()[1]


def _xdf_streams(out: str) -> list[dict]:
    folder = Path(out.strip().splitlines()[-1])
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    # nothing was taken over by the other rig's outlets mid-recording
    assert not [e for e in events if e["event"] == "stream_source_changed"]
    streams, _ = pyxdf.load_xdf(
        str(folder / f"{folder.name}.xdf"),
        synchronize_clocks=False,
        dejitter_timestamps=False,
    )
    return streams


def _run_two(procs: list[subprocess.Popen]) -> list[tuple[str, list[dict]]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append((_rig_of(err), _xdf_streams(out)))
    return results


def _check_only_own(results: list[tuple[str, list[dict]]], expected: int) -> None:
    rigs = [rig for rig, _ in results]
    assert len(set(rigs)) == len(rigs)
    for rig, streams in results:
        ids = [s["info"]["source_id"][0] for s in streams]
        assert len(ids) == expected, ids
        assert len(set(ids)) == len(ids)  # one XDF stream per source
        assert all(i.startswith(f"lsl_session/{rig}/") for i in ids), (rig, ids)
        for s in streams:
            stamps = np.asarray(s["time_stamps"])
            assert len(stamps), s["info"]["name"]
            # never a second source interleaved: stamps only move forward
            assert np.all(np.diff(stamps) >= 0), s["info"]["name"]


def test_two_simulated_demos_at_once_record_only_their_own(tmp_path):
    config = CONFIGS / "demo.toml"
    procs = [_lab(config, tmp_path / f"r{i}", "--simulate") for i in range(2)]
    results = _run_two(procs)
    _check_only_own(results, DEMO_STREAMS)


def test_two_copies_of_a_lab_config_differing_in_rig(tmp_path):
    text = (CONFIGS / "demo.toml").read_text()
    procs = []
    for rig in ("room-x", "room-y"):
        copy = tmp_path / f"{rig}.toml"
        copy.write_text(f'[lab]\nrig = "{rig}"\n\n{text}')
        procs.append(_lab(copy, tmp_path / rig))
    results = _run_two(procs)
    assert [rig for rig, _ in results] == ["room-x", "room-y"]
    _check_only_own(results, DEMO_STREAMS)
