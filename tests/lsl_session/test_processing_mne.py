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
    raw = data.to_mne()
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
    assert raw.ch_names == ["sine_b/sine", "STI"]
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
    assert list(raw.annotations.description) == ["early", "late"]
    grid_first = first - 1.0
    assert np.allclose(raw.annotations.onset, lsl - grid_first, atol=1 / 250)
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
