"""SessionData.to_mne: channel types and units, annotations, meas_date, FIF round trip."""

from __future__ import annotations

import datetime as dt

import mne
import numpy as np
import pytest
from test_processing_support import T0, make_session

from lsl_session.processing import load_session


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder, _, _ = make_session(tmp_path_factory.mktemp("mne"), name="mne")
    return load_session(folder)


def test_types_units_and_scaling(data):
    raw = data.to_mne(channel_names="prefixed")
    assert raw.info["sfreq"] == 250
    types = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    assert types == {"gsr_a/GSR": "gsr", "gsr_a/PPG": "misc", "sine_b/sine": "misc"}
    gsr_ch = raw.info["chs"][raw.ch_names.index("gsr_a/GSR")]
    assert gsr_ch["unit"] == mne.io.constants.FIFF.FIFF_UNIT_S
    values = raw.get_data(picks=["gsr_a/GSR"])[0]
    finite = values[np.isfinite(values)]
    assert 3.9e-6 < finite.min()
    assert finite.max() < 6.1e-6
    assert "uS" in raw.info["description"]


def test_annotations_one_per_marker_within_one_sample(data):
    raw = data.to_mne()
    ann = raw.annotations
    ann = ann[[d != "BAD_ACQ_SKIP" for d in ann.description]]
    assert len(ann) == len(data.events) == 6
    first = min(float(s.time_stamps[0]) for s in data.streams if not s.is_string)
    expected = data.events["lsl_time"].to_numpy() - first
    assert np.max(np.abs(ann.onset - expected)) <= 1 / raw.info["sfreq"]
    assert list(ann.description) == data.events["description"].tolist()
    # the annotation's sample is where the marker falls on the grid
    sample = np.round(ann.onset * raw.info["sfreq"]).astype(int)
    grid = first + sample / raw.info["sfreq"]
    assert np.max(np.abs(grid - data.events["lsl_time"].to_numpy())) <= 0.5 / 250 + 1e-9


def test_meas_date(data):
    raw = data.to_mne()
    first = min(float(s.time_stamps[0]) for s in data.streams if not s.is_string)
    start = dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    expected = start + dt.timedelta(seconds=first - T0)
    assert abs((raw.info["meas_date"] - expected).total_seconds()) < 1e-6


def test_streams_and_sfreq_options(data):
    raw = data.to_mne(sfreq=50, streams=["sine_b"], stim=True)
    assert raw.ch_names == ["sine", "STI"]
    assert raw.info["sfreq"] == 50
    assert raw.get_channel_types() == ["misc", "stim"]
    assert np.count_nonzero(raw.get_data(picks="STI")) >= 1


def test_fif_round_trip(data, tmp_path):
    raw = data.to_mne()
    path = tmp_path / "x_raw.fif"
    raw.save(path, fmt="double", verbose="error")
    back = mne.io.read_raw_fif(path, preload=True, verbose="error")
    assert np.array_equal(back.get_data(), raw.get_data(), equal_nan=True)
    assert back.ch_names == raw.ch_names
    assert back.get_channel_types() == raw.get_channel_types()
    assert back.info["meas_date"] == raw.info["meas_date"]
    assert np.allclose(back.annotations.onset, raw.annotations.onset, atol=1e-9)
    assert list(back.annotations.description) == list(raw.annotations.description)
    assert [c["unit"] for c in back.info["chs"]] == [c["unit"] for c in raw.info["chs"]]


def test_marker_before_first_sample_is_kept(data):
    import pandas as pd

    from lsl_session.processing.to_mne import to_raw

    first = min(float(s.time_stamps[0]) for s in data.streams if not s.is_string)
    lsl = np.array([first - 1.0, first + 1.0])
    events = pd.DataFrame({
        "onset": lsl - data.t0, "lsl_time": lsl, "duration": 0.0,
        "description": ["early", "late"], "stream": "stim", "value": ["early", "late"],
    })  # fmt: skip
    raw = to_raw(data.streams, events, t0=data.t0, start_wall=data.start_wall)
    ann = raw.annotations
    # the second before the first sample holds no data: one BAD_ACQ_SKIP from 0
    bad = ann[[d == "BAD_ACQ_SKIP" for d in ann.description]]
    assert bad.onset[0] == 0
    assert bad.duration[0] == pytest.approx(1.0, abs=0.02)  # + the later stream's start
    ann = ann[[d != "BAD_ACQ_SKIP" for d in ann.description]]
    assert list(ann.description) == ["early", "late"]
    grid_first = first - 1.0
    assert np.allclose(ann.onset, lsl - grid_first, atol=1 / 250)
    assert np.isnan(raw.get_data()[:, 0]).all()


def test_gsr_device_resistance_channel_is_not_siemens():
    import numpy as np

    from lsl_session.processing.model import SyncedStream
    from lsl_session.processing.to_mne import channel_type

    stream = SyncedStream(
        stream_id=1, name="shimmer_1", type="GSR", source_id="s", channel_format="float32",
        channel_count=2, nominal_srate=128.0, effective_srate=128.0,
        time_stamps=np.zeros(0), time_series=np.zeros((0, 2)),
        channel_labels=["gsr_conductance", "gsr_resistance"],
        channel_units=["microsiemens", "kiloohms"], channel_types=["GSR", "GSR"],
    )  # fmt: skip
    assert channel_type(stream, 0) == "gsr"
    assert channel_type(stream, 1) == "misc"


# ------------------------------------------------------- analyst-grade MNE
def _synced(name, labels, *, sid, host="h", srate=250.0, n=2500, t0=100.0, gap=None,
            kind="EEG", unit="microvolts", fmt="float32"):  # fmt: skip
    from lsl_session.processing.model import SyncedStream

    ts = t0 + np.arange(n) / srate
    if gap is not None:  # drop samples [a, b) seconds: a real drop-out
        a, b = gap
        keep = ~((ts >= t0 + a) & (ts < t0 + b))
        ts = ts[keep]
    rng = np.random.default_rng(len(name))
    values = rng.normal(0, 10, (len(ts), len(labels))).astype(fmt)
    return SyncedStream(
        stream_id=len(name), name=name, type=kind, source_id=sid, channel_format=fmt,
        channel_count=len(labels), nominal_srate=srate, effective_srate=srate,
        time_stamps=ts, time_series=values, channel_labels=list(labels),
        channel_units=[unit] * len(labels), channel_types=[kind] * len(labels),
        info={"hostname": host}, segments=[(0, len(ts) - 1)],
    )  # fmt: skip


def _markers(name, labels, times, *, sid):
    from lsl_session.processing.model import SyncedStream

    return SyncedStream(
        stream_id=len(name) + 50, name=name, type="Markers", source_id=sid,
        channel_format="string", channel_count=1, nominal_srate=0.0,
        effective_srate=0.0, time_stamps=np.asarray(times, float),
        time_series=[[x] for x in labels], channel_labels=["marker"],
        channel_units=[""], channel_types=["Markers"],
    )  # fmt: skip


def _session(streams):
    from lsl_session.processing import tables
    from lsl_session.processing.session_data import SessionData

    t0 = 100.0
    events = tables.events_frame(streams, t0)
    return SessionData(
        root=None, session_id=None, metadata={}, streams=streams, events=events,
        t0=t0, start_wall=dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC),
    )  # fmt: skip


def test_gap_is_bad_acq_skip_and_filter_keeps_the_rest_finite():
    eeg = _synced("EEG", ["Fp1", "Fp2", "Cz"], sid="amp", gap=(4.0, 7.0))
    raw = _session([eeg]).to_mne()
    bad = raw.annotations[[d == "BAD_ACQ_SKIP" for d in raw.annotations.description]]
    assert len(bad) == 1
    assert bad.onset[0] == pytest.approx(4.0, abs=1 / 250)
    assert bad.duration[0] == pytest.approx(3.0, abs=2 / 250)
    data = raw.get_data()
    inside = np.zeros(raw.n_times, bool)
    start = raw.time_as_index(bad.onset[0])[0]
    inside[start : start + round(bad.duration[0] * 250)] = True
    assert np.isnan(data[:, inside]).all()
    assert np.isfinite(data[:, ~inside]).all()
    filtered = raw.copy().filter(1, 40, verbose="error").get_data()
    assert np.isfinite(filtered[:, ~inside]).all()  # not 100 % NaN
    assert np.isfinite(filtered).mean() > 0.65


@pytest.mark.filterwarnings("ignore:Montage name:FutureWarning")  # renamed in mne 1.13
def test_bare_labels_and_montage_prefixed_when_labels_repeat():
    eeg = _synced("EEG", ["Fp1", "Fp2", "C3", "C4", "O1", "O2"], sid="amp")
    gsr = _synced(
        "GSR", ["GSR"], sid="shimmer", kind="GSR", unit="uS", srate=128, n=1280
    )
    raw = _session([eeg, gsr]).to_mne()
    assert raw.ch_names == ["Fp1", "Fp2", "C3", "C4", "O1", "O2", "GSR"]
    raw.set_montage("standard_1020")
    assert raw.info["chs"][0]["loc"][:3].any()
    twin = _synced("EEG2", ["Fp1", "Fp2"], sid="amp2")
    raw = _session([eeg, twin]).to_mne()
    assert raw.ch_names[:2] == ["EEG/Fp1", "EEG/Fp2"]
    assert raw.ch_names[-2:] == ["EEG2/Fp1", "EEG2/Fp2"]
    with pytest.raises(ValueError, match="repeat"):
        _session([eeg, twin]).to_mne(channel_names="bare")


def test_same_name_streams_told_apart_by_source_id_then_hostname(tmp_path):
    from lsl_session.processing import tables
    from lsl_session.processing.to_parquet import stream_file_names

    a = _synced("x0", ["ch"], sid="dev_a")
    b = _synced("x0", ["ch"], sid="dev_b")
    data = _session([a, b])
    assert data.keys == ["x0@dev_a", "x0@dev_b"]
    raw = data.to_mne()
    assert raw.ch_names == ["x0@dev_a/ch", "x0@dev_b/ch"]
    assert data.stream("x0@dev_b") is b
    with pytest.raises(Exception, match="x0@dev_a"):
        data.stream("x0")
    assert data.to_mne(streams=["x0@dev_b"]).ch_names == ["ch"]
    assert list(stream_file_names([a, b]).values()) == ["x0_dev_a", "x0_dev_b"]
    c = _synced("x0", ["ch"], sid="", host="pc1")
    d = _synced("x0", ["ch"], sid="", host="pc2")
    assert tables.stream_keys([c, d]) == ["x0@pc1", "x0@pc2"]


def test_marker_prefix_auto_when_two_marker_streams_share_labels():
    eeg = _synced("EEG", ["Cz"], sid="amp")
    m1 = _markers("PsychoPy", ["go", "stop"], [101.0, 102.0], sid="pp")
    m2 = _markers("Button", ["go"], [103.0], sid="bt")
    raw = _session([eeg, m1, m2]).to_mne()
    marks = sorted(d for d in raw.annotations.description if d != "BAD_ACQ_SKIP")
    assert marks == ["Button/go", "PsychoPy/go", "PsychoPy/stop"]
    raw = _session([eeg, m1, m2]).to_mne(marker_prefix=False)
    assert sorted(raw.annotations.description) == ["go", "go", "stop"]
    m3 = _markers("Button", ["press"], [103.0], sid="bt")
    raw = _session([eeg, m1, m3]).to_mne()
    assert sorted(raw.annotations.description) == ["go", "press", "stop"]
    raw = _session([eeg, m1, m3]).to_mne(marker_prefix=True)
    assert "Button/press" in raw.annotations.description


def test_bookkeeping_session_events_are_annotations_only_when_asked(data):
    import dataclasses
    import json

    import pandas as pd

    key = next(k for k in data.keys if k.endswith("_events"))
    first = min(float(s.time_stamps[0]) for s in data.streams if not s.is_string)
    extra = [({"event": "start_record"}, key), ({"event": "device_connected",
              "device_id": "p1"}, key), ({"event": "processing_end"}, "session_log"),
             ({"event": "marker", "label": "logged"}, "session_log")]  # fmt: skip
    rows = pd.DataFrame({
        "onset": 0.5, "lsl_time": first + 0.5 + np.arange(len(extra)) * 0.1,
        "duration": 0.0, "description": [e["event"] for e, _ in extra],
        "stream": [s for _, s in extra], "value": [json.dumps(e) for e, _ in extra],
    })  # fmt: skip
    both = dataclasses.replace(data, events=pd.concat([data.events, rows],
                                                      ignore_index=True))  # fmt: skip

    def described(raw) -> list[str]:
        return [d for d in raw.annotations.description if d != "BAD_ACQ_SKIP"]

    plain = described(both.to_mne())
    assert not {"start_record", "device_connected", "processing_end"} & set(plain)
    assert {"m0", "marker/block_1", "stimulus_play", "marker"} <= set(plain)
    assert len(plain) == len(data.events) + 1  # the logged marker stays
    asked = described(both.to_mne(session_events=True))
    assert {"start_record", "device_connected", "processing_end"} <= set(asked)
    assert len(asked) == len(data.events) + len(extra)
