"""Helpers for the BIDS and batch tests: an EEG + markers session, the validator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from system_tools import missing
from test_processing_support import T0, Clock, stream_xml, write_xdf

from lsl_session.session import create_session_folder

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / ".ci" / "bids-validator" / "node_modules" / "bids-validator"
INSTALL = "npm ci --prefix .ci/bids-validator"
EEG_RATE = 250.0
EEG_CHANNELS = 4


def eeg_specs(session_id: str, duration: float = 4.0, gap: bool = False):
    """EEG (µV, 250 Hz, own drifting clock), GSR+accel, markers on a third clock."""
    rng = np.random.default_rng(7)
    eeg_clock, gsr_clock, stim_clock = (
        Clock(1.75, 35.0),
        Clock(-0.4, -20),
        Clock(2.1, 10),
    )
    Te = T0 + 0.021 + np.arange(int(duration * EEG_RATE)) / EEG_RATE
    if gap:  # 2.5 s of EEG samples lost (longer than pyxdf's dejitter break)
        Te = Te[(Te < T0 + 1.5) | (Te >= T0 + 4.0)]
    ve = (20 * np.sin(2 * np.pi * 10 * (Te - T0))[:, None]
          * np.arange(1, EEG_CHANNELS + 1)).astype(np.float32)  # fmt: skip
    eeg_ch = [(f"C{k}", "microvolts", "EEG") for k in range(1, EEG_CHANNELS + 1)]
    Tg = T0 + 0.3 + np.arange(int(duration * 64)) / 64.0
    vg = np.column_stack([5 + np.sin(Tg - T0), 0.1 * np.cos(Tg), np.sin(Tg),
                          np.full(len(Tg), 9.81)]).astype(np.float32)  # fmt: skip
    gsr_ch = [("gsr", "microsiemens", "GSR"), ("accel_x", "m/s^2", "Accelerometer"),
              ("accel_y", "m/s^2", "Accelerometer"), ("accel_z", "m/s^2", "Accelerometer")]  # fmt: skip
    Tm = T0 + np.array([0.5, 1.0, 1.733, 2.5, 3.2])
    events = json.dumps({"event": "marker", "label": "start"})
    return [
        (1, stream_xml("eeg_amp", "EEG", "float32", eeg_ch, EEG_RATE), "float32",
         eeg_clock.local(Te) + rng.normal(0, 1e-4, len(Te)), ve, eeg_clock, Te),
        (2, stream_xml("shimmer_x", "GSR", "float32", gsr_ch, 64), "float32",
         gsr_clock.local(Tg), vg, gsr_clock, Tg),
        (3, stream_xml("stim", "Markers", "string", [("m", "", "Markers")], 0), "string",
         stim_clock.local(Tm), [[f"stim_{k}"] for k in range(len(Tm))], stim_clock, Tm),
        (4, stream_xml(f"{session_id}_events", "Markers", "string",
                       [("event", "json", "Markers")], 0,
                       source_id=f"lsl_session/{session_id}/events"), "string",
         np.array([T0 + 0.25]), [[events]], Clock(0.0, 0.0), np.array([T0 + 0.25])),
    ], Tm  # fmt: skip


def make_eeg_session(root: Path, name: str, *, duration: float = 4.0, gap=False):
    """A session folder with the recording of `eeg_specs`; return (folder, marker true times)."""
    folder = create_session_folder(root, name)
    specs, Tm = eeg_specs(folder.name, duration, gap)
    paths = write_xdf(folder / f"{folder.name}.xdf", specs, duration=duration)
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"].update(
        xdf_files=[p.name for p in paths], start_lsl_time=T0,
        start_time="2025-01-01T10:00:00.000000+00:00",
    )  # fmt: skip
    meta_path.write_text(json.dumps(meta))
    return folder, Tm


def validator() -> list[str]:
    """The command running the official BIDS validator, or skip (with how to install)."""
    node = shutil.which("node")
    script = Path(
        os.environ.get("BIDS_VALIDATOR", VALIDATOR / "bin" / "bids-validator")
    )
    if node is None or not script.is_file():
        missing("the BIDS validator is not installed (needs node)", INSTALL)
    return [node, str(script)]


def validate(root: Path) -> dict:
    """Run the validator on ``root``; return its JSON report."""
    proc = subprocess.run(
        [*validator(), str(root), "--json"], capture_output=True, text=True, timeout=300
    )
    return json.loads(proc.stdout)


def errors(report: dict) -> list[str]:
    return [
        f"{e['key']}: {e['reason'][:120]} "
        + ", ".join(
            (f.get("file") or {}).get("relativePath", "") for f in e["files"][:3]
        )
        for e in report["issues"]["errors"]
    ]
