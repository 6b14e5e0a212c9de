"""``export FILE.xdf --bids`` of a plain LabRecorder layout, recorded by LabRecorder.

EEG at 250 Hz + an auxiliary stream typed EEG at 100 Hz that starts late and ends
early + markers from before the EEG's first sample to after the auxiliary's last:
the official validator finds 0 errors, every events file lies inside its data file,
and no onset is negative.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import mne
import numpy as np
import pylsl
import pytest
from bids_support import errors, validate
from labrecorder_support import start_labrecorder


def _outlet(name, kind, labels, rate, fmt, sid, unit="microvolts"):
    info = pylsl.StreamInfo(name, kind, len(labels), rate, fmt, sid)
    chans = info.desc().append_child("channels")
    for label in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", kind)
    return pylsl.StreamOutlet(info)


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def lr_recording(tmp_path_factory):
    """A LabRecorder recording: EEG 250 Hz, aux EEG 100 Hz (late, early end), markers."""
    import uuid

    uid = uuid.uuid4().hex[:10]
    out = tmp_path_factory.mktemp("lr") / "sub-01_task-rest_eeg.xdf"
    eeg = _outlet(f"EEG_{uid}", "EEG", ["Fp1", "Fp2", "C3", "C4"], 250,
                  pylsl.cf_float32, f"eeg_{uid}")  # fmt: skip
    aux = _outlet(f"AUX_{uid}", "EEG", ["x1", "x2"], 100, pylsl.cf_float32,
                  f"aux_{uid}")  # fmt: skip
    mk = pylsl.StreamOutlet(pylsl.StreamInfo(f"Mk_{uid}", "Markers", 1, 0,
                                             pylsl.cf_string, f"mk_{uid}"))  # fmt: skip
    secs = 5.0
    child = start_labrecorder(out, secs, f"eeg_{uid}", f"aux_{uid}", f"mk_{uid}")
    for o in (eeg, aux, mk):
        assert o.wait_for_consumers(20)
    time.sleep(0.5)  # all three inlets connected (LabRecorder opens them in turn)
    t0 = pylsl.local_clock()
    sent = {"eeg": 0, "aux": 0}
    k = 0
    while child.poll() is None:
        now = pylsl.local_clock() - t0
        if now > 0.4:  # the EEG starts after the first markers
            n = int((now - 0.4) * 250) - sent["eeg"]
            if n > 0:
                eeg.push_chunk(np.random.default_rng(k).normal(0, 20, (n, 4))
                               .astype(np.float32))  # fmt: skip
                sent["eeg"] += n
        if 1.2 < now < secs - 2.0:  # the auxiliary starts late and ends early
            n = int((now - 1.2) * 100) - sent["aux"]
            if n > 0:
                aux.push_chunk(np.ones((n, 2), np.float32))
                sent["aux"] += n
        if now > 0.1 * k and now < secs - 0.6:
            mk.push_sample([f"stim {k % 3}"])
            k += 1
        time.sleep(0.005)
    assert child.returncode == 0, child.stderr.read()
    return out, k


def test_labrecorder_layout_exports_to_valid_bids_with_events_inside(
    lr_recording, tmp_path
):
    xdf, n_markers = lr_recording
    ds = tmp_path / "ds"
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "export", str(xdf), "--bids", str(ds)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    eeg_dir = ds / "sub-01" / "eeg"
    headers = sorted(eeg_dir.glob("*_eeg.vhdr"))
    assert len(headers) == 2, sorted(p.name for p in eeg_dir.iterdir())
    late_seen = False
    for vhdr in headers:
        raw = mne.io.read_raw_brainvision(vhdr, verbose="error")
        span = raw.n_times / raw.info["sfreq"]
        rows = _tsv(Path(str(vhdr).replace("_eeg.vhdr", "_events.tsv")))
        stim = [r for r in rows if r["trial_type"].startswith("stim")]
        assert stim, vhdr.name
        onsets = np.array([float(r["onset"]) for r in rows])
        samples = np.array([int(r["sample"]) for r in rows])
        assert (onsets >= 0).all(), (vhdr.name, onsets.min())
        assert (onsets < span).all(), (vhdr.name, onsets.max(), span)
        assert ((samples >= 0) & (samples < raw.n_times)).all(), vhdr.name
        if raw.info["sfreq"] == 100:  # the late auxiliary: fewer markers than sent
            late_seen = True
            assert len(stim) < n_markers - 5
    assert late_seen
    assert errors(validate(ds)) == []
