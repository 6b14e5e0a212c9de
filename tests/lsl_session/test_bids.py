"""``export --bids``: files, sidecars, timing, the official validator, hostile input."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bids_support import EEG_RATE, errors, make_eeg_session, validate
from click.testing import CliRunner, Result
from test_processing_support import T0, make_session

from lsl_session.bids.entities import BidsEntityError, resolve
from lsl_session.cli import main
from lsl_session.processing import load_session


def cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a subprocess, the way a lab runs it."""
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def cli_here(*args: str) -> Result:
    """The CLI in this process (same code path; no interpreter start-up)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def eeg_export(tmp_path_factory):
    base = tmp_path_factory.mktemp("bids")
    folder, true_marks = make_eeg_session(
        base / "rec", "sub-P01_ses-S1_task-Rest_run-1"
    )
    proc = cli("export", folder, "--bids", base / "ds", "--line-freq", "50")
    assert proc.returncode == 0, proc.stderr
    return folder, base / "ds", true_marks


def _eeg_dir(ds: Path) -> Path:
    return ds / "sub-P01" / "ses-S1" / "eeg"


# ---------------------------------------------------------------- entities
def test_entities_from_remote_control_name_options_and_defaults(caplog):
    ents = resolve("sub-P003_ses-S001_task-Memory_run-002_eeg_20250731_143022")
    assert ents.prefix() == "sub-P003_ses-S001_task-Memory_run-002"
    ents = resolve("sub-P003_ses-S001_task-Memory_run-002_eeg")  # LabRecorder file stem
    assert ents.prefix() == "sub-P003_ses-S001_task-Memory_run-002"
    ents = resolve("sub-P003_task-Memory_20250731_143022", run="3", session="B")
    assert ents.prefix() == "sub-P003_ses-B_task-Memory_run-3"
    with caplog.at_level("WARNING"):
        ents = resolve("demo_20250731_143022_2")
    assert ents.prefix() == "sub-demo_ses-201507311430222_task-recording".replace(
        "201507311430222", "202507311430222"
    )
    assert "defaulted to sub-demo ses-202507311430222 task-recording" in caplog.text
    assert resolve("demo_20250731_143022", subject="P9").prefix() == (
        "sub-P9_ses-20250731143022_task-recording"
    )
    assert resolve("x_20250731_143022", subject="P-0_1").subject == "P01"
    with pytest.raises(BidsEntityError, match="--subject"):
        resolve("x_20250731_143022", subject="!!!")
    with pytest.raises(BidsEntityError, match="--run"):
        resolve("x_20250731_143022", run="one")


# ---------------------------------------------------------------- EEG session
def test_eeg_session_passes_the_official_validator(eeg_export):
    _, ds, _ = eeg_export
    report = validate(ds)
    assert errors(report) == []


def test_event_onsets_are_lsl_time_minus_first_eeg_sample(eeg_export):
    folder, ds, true_marks = eeg_export
    data = load_session(folder)
    first = float(data.stream("eeg_amp").time_stamps[0])
    rows = tsv(_eeg_dir(ds) / "sub-P01_ses-S1_task-Rest_run-1_events.tsv")
    stim = [r for r in rows if r["stream"] == "stim"]
    assert [r["trial_type"] for r in stim] == [f"stim_{k}" for k in range(5)]
    onsets = np.array([float(r["onset"]) for r in stim])
    recorded = data.events.loc[data.events["stream"] == "stim", "lsl_time"].to_numpy()
    assert np.max(np.abs(onsets - (recorded - first))) < 1 / EEG_RATE
    # and against the true (simulated) times: the markers had their own clock
    assert np.max(np.abs(onsets - (true_marks - first))) < 1 / EEG_RATE
    assert [int(r["sample"]) for r in stim] == list(
        np.round(onsets * EEG_RATE).astype(int)
    )
    session_events = [r for r in rows if r["trial_type"] == "marker/start"]
    assert len(session_events) == 1
    assert json.loads(session_events[0]["value"]) == {
        "event": "marker",
        "label": "start",
    }
    assert abs(float(session_events[0]["onset"]) - (T0 + 0.25 - first)) < 1 / EEG_RATE


def test_eeg_data_channels_and_annotations_read_back_with_mne_bids(eeg_export):
    from mne_bids import BIDSPath, read_raw_bids

    folder, ds, true_marks = eeg_export
    path = BIDSPath(subject="P01", session="S1", task="Rest", run="1", datatype="eeg",
                    root=ds)  # fmt: skip
    raw = read_raw_bids(path, verbose="error")
    assert raw.info["sfreq"] == EEG_RATE
    assert raw.get_channel_types() == ["eeg"] * 4
    data = raw.get_data()
    # 20 µV × k sine → volts, float32 µV in the file
    assert np.allclose(np.abs(data).max(axis=1), 20e-6 * np.arange(1, 5), rtol=0.01)
    first = float(load_session(folder).stream("eeg_amp").time_stamps[0])
    stim = [a for a in raw.annotations if a["description"].startswith("stim_")]
    onsets = np.array([a["onset"] for a in stim])
    assert np.max(np.abs(onsets - (true_marks - first))) <= 1 / EEG_RATE
    sidecar = json.loads(
        (_eeg_dir(ds) / "sub-P01_ses-S1_task-Rest_run-1_eeg.json").read_text()
    )
    assert sidecar["PowerLineFrequency"] == 50
    assert sidecar["SamplingFrequency"] == EEG_RATE
    chans = tsv(_eeg_dir(ds) / "sub-P01_ses-S1_task-Rest_run-1_channels.tsv")
    assert [(c["name"], c["type"], c["units"]) for c in chans] == [
        (f"C{k}", "EEG", "µV") for k in range(1, 5)
    ]


def test_physio_motion_scans_and_sourcedata(eeg_export):
    folder, ds, _ = eeg_export
    data = load_session(folder)
    eeg_first = float(data.stream("eeg_amp").time_stamps[0])
    shimmer = data.stream("shimmer_x")
    stem = _eeg_dir(ds) / "sub-P01_ses-S1_task-Rest_run-1_recording-shimmerx_physio"
    side = json.loads(stem.with_suffix(".json").read_text())
    assert side["Columns"] == ["gsr"]
    assert side["gsr"]["Units"] == "uS"  # the stream says "microsiemens"
    assert side["SamplingFrequency"] == 64
    assert side["StartTime"] == pytest.approx(
        float(shimmer.time_stamps[0]) - eeg_first, abs=1e-9
    )
    with gzip.open(stem.with_name(stem.name + ".tsv.gz"), "rt") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    assert all(len(r) == 1 for r in rows)  # no header row, one column
    assert abs(len(rows) - len(shimmer.time_stamps)) <= 1
    assert float(rows[0][0]) == pytest.approx(
        float(shimmer.time_series[0, 0]), rel=1e-6
    )
    mot = ds / "sub-P01" / "ses-S1" / "motion"
    prefix = "sub-P01_ses-S1_task-Rest_tracksys-shimmerx_run-1"
    chans = tsv(mot / f"{prefix}_channels.tsv")
    assert [(c["name"], c["component"], c["type"], c["tracked_point"], c["units"])
            for c in chans] == [(f"accel_{a}", a, "ACCEL", "shimmerx", "m/s^2")
                                for a in "xyz"]  # fmt: skip
    motion_rows = (mot / f"{prefix}_motion.tsv").read_text().splitlines()
    assert all(len(r.split("\t")) == len(chans) for r in motion_rows)
    mjson = json.loads((mot / f"{prefix}_motion.json").read_text())
    assert mjson["TaskName"] == "Rest"
    assert mjson["SamplingFrequency"] == 64
    assert mjson["ACCELChannelCount"] == 3
    scans = {
        r["filename"]: r for r in tsv(ds / "sub-P01/ses-S1/sub-P01_ses-S1_scans.tsv")
    }
    assert set(scans) == {
        "eeg/sub-P01_ses-S1_task-Rest_run-1_eeg.vhdr",
        "eeg/sub-P01_ses-S1_task-Rest_run-1_recording-shimmerx_physio.tsv.gz",
        f"motion/{prefix}_motion.tsv",
    }
    start = dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    for name, stream in (("eeg/sub-P01_ses-S1_task-Rest_run-1_eeg.vhdr", "eeg_amp"),
                         (f"motion/{prefix}_motion.tsv", "shimmer_x")):  # fmt: skip
        when = dt.datetime.fromisoformat(scans[name]["acq_time"].replace("Z", "+00:00"))
        expected = start + dt.timedelta(
            seconds=float(data.stream(stream).time_stamps[0]) - T0
        )
        assert abs((when - expected).total_seconds()) < 1e-5
    src = ds / "sourcedata" / "sub-P01" / "ses-S1" / folder.name
    assert (src / f"{folder.name}.xdf").read_bytes() == (
        folder / f"{folder.name}.xdf"
    ).read_bytes()
    assert (src / "session_metadata.json").is_file()
    participants = tsv(ds / "participants.tsv")
    assert [p["participant_id"] for p in participants] == ["sub-P01"]
    desc = json.loads((ds / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] == "1.9.0"


def test_second_session_of_the_subject_joins_the_dataset_and_reexport_replaces(
    eeg_export, tmp_path
):
    folder, ds, _ = eeg_export
    second, _ = make_eeg_session(
        tmp_path, "sub-P01_ses-S2_task-Rest_run-1", gap=True, duration=6.0
    )
    proc = cli_here("export", second, "--bids", ds, "--eeg-format", "edf")
    assert proc.exit_code == 0, proc.stderr
    eeg2 = ds / "sub-P01" / "ses-S2" / "eeg"
    assert (eeg2 / "sub-P01_ses-S2_task-Rest_run-1_eeg.edf").is_file()
    assert [p["participant_id"] for p in tsv(ds / "participants.tsv")] == ["sub-P01"]
    gaps = [r for r in tsv(eeg2 / "sub-P01_ses-S2_task-Rest_run-1_events.tsv")
            if r["trial_type"] == "BAD_ACQ_SKIP"]  # fmt: skip
    assert len(gaps) == 1
    first = float(load_session(second).stream("eeg_amp").time_stamps[0])
    assert abs(float(gaps[0]["onset"]) - (T0 + 1.5 - first)) < 2 / EEG_RATE
    assert float(gaps[0]["duration"]) == pytest.approx(2.5, abs=2 / EEG_RATE)
    # exporting the first session again replaces its files, adds no rows
    before = sorted(p.relative_to(ds) for p in ds.rglob("*") if p.is_file())
    proc = cli_here("export", folder, "--bids", ds, "--line-freq", "50")
    assert proc.exit_code == 0, proc.stderr
    after = sorted(p.relative_to(ds) for p in ds.rglob("*") if p.is_file())
    assert after == before
    assert len(tsv(ds / "sub-P01/ses-S1/sub-P01_ses-S1_scans.tsv")) == 3
    assert errors(validate(ds)) == []


def test_other_recording_with_the_same_entities_is_refused(eeg_export, tmp_path):
    _, ds, _ = eeg_export
    other, _ = make_eeg_session(tmp_path, "sub-P01_ses-S1_task-Rest_run-1")
    before = (ds / "sub-P01/ses-S1/sub-P01_ses-S1_scans.tsv").read_text()
    proc = cli_here("export", other, "--bids", ds)
    assert proc.exit_code == 1
    assert "already holds" in proc.stderr and "--run" in proc.stderr
    assert (ds / "sub-P01/ses-S1/sub-P01_ses-S1_scans.tsv").read_text() == before
    proc = cli_here("export", other, "--bids", ds, "--run", "2")
    assert proc.exit_code == 0, proc.stderr
    assert (ds / "sub-P01/ses-S1/eeg/sub-P01_ses-S1_task-Rest_run-2_eeg.vhdr").is_file()


def test_xdf_file_export_takes_entities_from_its_name(tmp_path):
    folder, _ = make_eeg_session(tmp_path / "rec", "x")
    xdf = tmp_path / "sub-P02_ses-S1_task-Oddball_run-001_eeg.xdf"
    xdf.write_bytes((folder / f"{folder.name}.xdf").read_bytes())
    proc = cli_here("export", xdf, "--bids", tmp_path / "ds")
    assert proc.exit_code == 0, proc.stderr
    eeg = tmp_path / "ds/sub-P02/ses-S1/eeg"
    assert (eeg / "sub-P02_ses-S1_task-Oddball_run-001_eeg.vhdr").is_file()
    src = tmp_path / "ds/sourcedata/sub-P02/ses-S1" / xdf.stem / xdf.name
    assert src.read_bytes() == xdf.read_bytes()
    assert errors(validate(tmp_path / "ds")) == []


def test_session_without_eeg_goes_to_beh_on_the_recorder_time_base(tmp_path, caplog):
    folder, _, true = make_session(tmp_path, name="pilot")
    with caplog.at_level("WARNING"):
        proc = cli_here("export", folder, "--bids", tmp_path / "ds")
    assert proc.exit_code == 0, proc.stderr
    assert "defaulted to sub-pilot" in caplog.text
    ses = next((tmp_path / "ds/sub-pilot").glob("ses-*"))
    beh = ses / "beh"
    events = tsv(next(beh.glob("*_events.tsv")))
    stim = np.array([float(r["onset"]) for r in events if r["stream"] == "stim"])
    assert (
        np.max(np.abs(stim - (true[2] - T0))) < 1e-3
    )  # onsets from the recorder start
    side = json.loads(next(beh.glob("*recording-gsra_physio.json")).read_text())
    assert side["Columns"] == ["GSR", "PPG"]
    assert side["StartTime"] == pytest.approx(true[0][0] - T0, abs=1e-3)
    assert errors(validate(tmp_path / "ds")) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"XDF:\x07garbage" * 10, "no stream could be read"),
     (b"PK\x03\x04zip", "Not an XDF file"), (None, "holds no XDF")],
    ids=["corrupt", "not-xdf", "no-xdf"],
)  # fmt: skip
def test_malformed_session_is_one_clear_error_and_writes_nothing(
    tmp_path, content, message
):
    from lsl_session.session import create_session_folder

    folder = create_session_folder(tmp_path, "bad")
    if content is not None:
        (folder / f"{folder.name}.xdf").write_bytes(content)
    proc = cli_here("export", folder, "--bids", tmp_path / "ds")
    assert proc.exit_code == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and message in failed[0]
    assert (
        not list((tmp_path / "ds").glob("sub-*"))
        if (tmp_path / "ds").exists()
        else True
    )


def test_bad_entity_option_is_a_usage_error(eeg_export, tmp_path):
    folder, _, _ = eeg_export
    proc = cli_here("export", folder, "--bids", tmp_path / "ds", "--subject", "../..")
    assert proc.exit_code == 1
    assert "--subject" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "ds").exists()


def test_interpolator_keeps_the_samples_before_a_gap():
    from lsl_session.processing.model import SyncedStream
    from lsl_session.processing.tables import Interpolator

    ts = np.concatenate([np.arange(10), np.arange(30, 40)]) / 10.0
    stream = SyncedStream(
        stream_id=1, name="s", type="EEG", source_id="s", channel_format="float32",
        channel_count=1, nominal_srate=10.0, effective_srate=10.0, time_stamps=ts,
        time_series=ts[:, None].astype(np.float32), channel_labels=["c"],
        channel_units=[""], channel_types=[""], segments=[(0, 9), (10, 19)],
    )  # fmt: skip
    grid = np.arange(40) / 10.0
    out = Interpolator(stream)(grid)[:, 0]
    assert np.allclose(out[:10], grid[:10])
    assert np.isnan(out[10:29]).all()
    assert np.allclose(out[30:], grid[30:])


def test_hostile_names_and_a_symlink_stay_inside_the_dataset(tmp_path):
    from test_processing_support import stream_xml

    from lsl_session.session import create_session_folder
    from lsl_session.xdf import XdfWriter

    folder = create_session_folder(tmp_path / "rec", "hostile")
    xml = stream_xml("../../evil&lt;x&gt;\tname", "GSR", "float32",
                     [("a\tb", "u\tS", "GSR"), ("c\nd", "", "GSR")], 10,
                     source_id="s1")  # fmt: skip
    stamps = 100.0 + np.arange(30) / 10.0
    with XdfWriter(folder / f"{folder.name}.xdf") as w:
        w.write_stream_header(1, xml)
        w.write_samples(1, stamps, np.ones((30, 2), np.float32))
        w.write_stream_footers()
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the dataset")
    (folder / "notes.txt").symlink_to(secret)
    ds = tmp_path / "ds"
    proc = cli_here("export", folder, "--bids", ds)
    assert proc.exit_code == 0, proc.stderr
    files = [p for p in ds.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(ds.resolve()) for p in files)
    assert not any(p.name == "notes.txt" for p in files)
    physio = next(ds.rglob("*_physio.json"))
    assert "recording-evilxname" in physio.name
    sidecar = json.loads(physio.read_text())
    assert sidecar["Columns"] == ["a b", "c d"]
    assert sidecar["a b"]["Units"] == "u S" and sidecar["c d"]["Units"] == "n/a"
    assert errors(validate(ds)) == []


def test_two_eeg_streams_become_two_acquisitions(tmp_path):
    from bids_support import eeg_specs
    from test_processing_support import Clock, stream_xml, write_xdf

    from lsl_session.session import create_session_folder

    folder = create_session_folder(tmp_path / "rec", "sub-P5_task-Two")
    specs, _ = eeg_specs(folder.name)
    T = T0 + 0.5 + np.arange(2 * 500) / 500.0
    xml = stream_xml("amp2", "EEG", "float32", [("Fz", "microvolts", "EEG")], 500)
    specs.append(
        (5, xml, "float32", T, np.ones((len(T), 1), np.float32), Clock(0, 0), T)
    )
    write_xdf(folder / f"{folder.name}.xdf", specs, duration=4.0)
    proc = cli_here("export", folder, "--bids", tmp_path / "ds")
    assert proc.exit_code == 0, proc.stderr
    eeg = tmp_path / "ds/sub-P5/eeg"
    amp2_first = float(load_session(folder).stream("amp2").time_stamps[0])
    for acq, first in (("eegamp", None), ("amp2", amp2_first)):
        assert (eeg / f"sub-P5_task-Two_acq-{acq}_eeg.vhdr").is_file()
        rows = tsv(eeg / f"sub-P5_task-Two_acq-{acq}_events.tsv")
        if first is not None:  # each file's events on its own first sample
            stim = [float(r["onset"]) for r in rows if r["stream"] == "stim"]
            lsl = [float(r["lsl_time"]) for r in rows if r["stream"] == "stim"]
            assert np.allclose(stim, np.array(lsl) - first, atol=1e-5)
    assert errors(validate(tmp_path / "ds")) == []


def test_an_onset_half_a_sample_before_the_end_is_outside_the_file():
    from lsl_session.bids.eeg import inside

    # 1450 samples at 100 Hz: 14.495 s rounds to sample 1450, past the last (pybv
    # refused the whole file for it)
    got = inside(np.array([-0.001, 0.0, 14.49, 14.495, 14.6]), 100.0, 1450)
    assert got.tolist() == [False, True, True, False, False]
