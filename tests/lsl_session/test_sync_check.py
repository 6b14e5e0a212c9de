"""Sync check: pulse detectors on synthetic arrays and the processor end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from lsl_session.layout import SessionPaths
from lsl_session.processing.model import ProcessingContext, SyncedStream
from lsl_session.processing.sync_check import (
    SyncCheckProcessor,
    detect_flashes,
    detect_steps,
    device_of,
    match_pulses,
    sync_marker_times,
)
from outlets.webcam.synthetic import SyntheticVideo

T0 = 5000.0
PULSES = np.array([2.0, 5.0, 8.0, 11.0, 14.0])  # s after T0


def make_stream(name, stype, stamps, series, *, srate=0.0, fmt="double64"):
    n_ch = (
        1 if fmt == "string" else np.asarray(series).reshape(len(stamps), -1).shape[1]
    )
    return SyncedStream(
        stream_id=abs(hash(name)) % 1000,
        name=name,
        type=stype,
        source_id=f"test/{name}",
        channel_format=fmt,
        channel_count=n_ch,
        nominal_srate=srate,
        effective_srate=srate,
        time_stamps=np.asarray(stamps, float),
        time_series=series if fmt == "string" else np.asarray(series, float),
        channel_labels=[f"ch{i}" for i in range(n_ch)],
        channel_units=[""] * n_ch,
        channel_types=[""] * n_ch,
    )


def gsr_signal(t, onsets, *, rng, width=0.25, height=2.0, noise=0.02, drift=0.05):
    """Baseline with drift and a slow wave, noise, rectangular pulses at ``onsets``."""
    x = 5.0 + drift * (t - t[0]) + 0.3 * np.sin(2 * np.pi * 0.05 * t)
    x += rng.normal(0.0, noise, t.size)
    for on in onsets:
        x[(t >= on) & (t < on + width)] += height
    return x


def first_sample_at_or_after(t, onsets):
    return t[np.searchsorted(t, onsets)]


@pytest.mark.parametrize("srate", [32.0, 128.0, 512.0])
def test_detect_steps_finds_pulse_onsets_with_noise_and_drift(srate):
    rng = np.random.default_rng(int(srate))
    t = 100.0 + np.arange(int(20 * srate)) / srate
    onsets = 100.0 + PULSES + rng.uniform(0, 1 / srate, PULSES.size)
    x = gsr_signal(t, onsets, rng=rng)
    idx = detect_steps(t, x)
    np.testing.assert_allclose(t[idx], first_sample_at_or_after(t, onsets))


def test_detect_steps_polarity_sustained_steps_and_spikes():
    rng = np.random.default_rng(1)
    t = np.arange(2000) / 100.0
    x = rng.normal(0, 0.01, t.size) + 1.0 * (t >= 4.0) - 1.0 * (t >= 12.0)
    x[700] += 5.0  # a one-sample spike is not a step
    assert t[detect_steps(t, x)].tolist() == [4.0, 12.0]
    assert t[detect_steps(t, x, polarity="rising")].tolist() == [4.0]
    assert t[detect_steps(t, x, polarity="falling")].tolist() == [12.0]
    assert detect_steps(t, x, min_step=2.0).size == 0
    with pytest.raises(ValueError, match="polarity"):
        detect_steps(t, x, polarity="up")


def test_detect_steps_clean_signal_nan_and_empty():
    t = np.arange(1000) / 50.0
    x = np.where(t >= 7.3, 3.0, 1.0)  # MAD of the difference is 0
    x[100:110] = np.nan
    assert t[detect_steps(t, x)].tolist() == [pytest.approx(7.3)]
    assert detect_steps(t, np.ones_like(t)).size == 0
    assert detect_steps(t[:2], x[:2]).size == 0


def test_detect_flashes_ignores_slow_exposure_changes():
    rng = np.random.default_rng(2)
    b = 80 + 20 * np.sin(np.arange(300) / 40) + rng.normal(0, 1.5, 300)
    b[[30, 100, 101, 200]] = 250
    assert detect_flashes(b).tolist() == [30, 100, 200]
    assert detect_flashes(np.zeros(0)).size == 0


def test_match_pulses_one_to_one_within_window():
    ref = np.array([1.0, 2.0, 3.0, 10.0])
    det = np.array([1.02, 1.05, 2.9, 6.0])
    di, ri = match_pulses(det, ref, window=0.5)
    assert di.tolist() == [0, 2]
    assert ri.tolist() == [0, 2]
    assert match_pulses(np.zeros(0), ref)[0].size == 0


def test_sync_marker_times_and_device_names():
    s = make_stream(
        "StimulusMarkers",
        "Markers",
        [1.0, 2.0, 3.0],
        [["sync"], ["stim_on"], ["sync_7"]],
        fmt="string",
    )
    assert sync_marker_times(s).tolist() == [1.0, 3.0]
    assert device_of("phone_1_gsr") == "phone_1"
    assert device_of("phone_1_rgb_frames") == "phone_1"
    assert device_of("webcam_1_frames") == "webcam_1"
    assert device_of("shimmer_A1") == "shimmer_A1"


FPS = 30.0
GSR_RATE = 128.0
LAGS = {"phone_1_gsr": 0.040, "shimmer_A1": -0.025, "webcam_1_frames": 0.020}


@pytest.fixture
def context(session_root):
    """Streams whose pulses lag the reference markers by LAGS."""
    rng = np.random.default_rng(3)
    root = session_root / "S_20250731_143022"
    root.mkdir()
    paths = SessionPaths(root)
    ref = T0 + PULSES
    streams = [
        make_stream(
            "StimulusMarkers", "Markers", ref, [["sync"] for _ in ref], fmt="string"
        )
    ]
    for name, n_ch in (("phone_1_gsr", 1), ("shimmer_A1", 6)):
        t = T0 + rng.uniform(0, 0.01) + np.arange(int(17 * GSR_RATE)) / GSR_RATE
        data = rng.normal(0, 1, (t.size, n_ch))
        data[:, 0] = gsr_signal(t, ref + LAGS[name], rng=rng)
        streams.append(make_stream(name, "GSR", t, data, srate=GSR_RATE))
    # Webcam: flash frames at the pulse times, frame k stamped k / FPS after the
    # video start plus the lag, so a flash is seen LAGS later than the marker.
    video = SyntheticVideo(fps=FPS, flash_times=PULSES)
    n = int(16 * FPS)
    (root / "webcam").mkdir()
    writer = cv2.VideoWriter(
        str(root / "webcam" / "webcam_1_20250731_143022.mp4"),
        cv2.VideoWriter.fourcc(*"mp4v"),
        FPS,
        (video.width, video.height),
    )
    for frame in video.frames(n):
        writer.write(frame)
    writer.release()
    k = np.arange(n)
    stamps = T0 + k / FPS + LAGS["webcam_1_frames"]
    streams.append(make_stream("webcam_1_frames", "VideoFrames", stamps, k, srate=FPS))
    streams.append(
        make_stream(
            "phone_1_events",
            "Markers",
            ref + 0.0005,
            [["sync"]] * ref.size,
            fmt="string",
        )
    )
    streams.append(
        make_stream("phone_2_rgb_frames", "VideoFrames", stamps, k, srate=FPS)
    )
    streams.append(
        make_stream("phone_1_motion", "Accelerometer", t, data, srate=GSR_RATE)
    )
    return ProcessingContext(
        paths=paths,
        streams=streams,
        output_dir=root / "processing" / "sync_check",
        t0=T0,
    )


def test_processor_measures_injected_lags(context):
    report = SyncCheckProcessor().run(context)
    assert report["reference"] == {
        "stream": "StimulusMarkers",
        "n_pulses": 5,
        "identified": False,
    }
    rows = {r["stream"]: r for r in report["streams"]}
    assert set(rows) == {*LAGS, "phone_1_events", "phone_2_rgb_frames"}
    for name, lag in LAGS.items():
        row = rows[name]
        period = 1 / (FPS if name.endswith("frames") else GSR_RATE)
        assert row["n_reference"] == row["n_detected"] == row["n_matched"] == 5, row
        errors = np.array([p[2] for p in row["pulses"]]) / 1e3
        # Sampled signals see a pulse at the first sample after it: within a sample.
        assert np.all(np.abs(errors - lag) <= period + 1e-9), (name, errors)
        assert row["sample_period_ms"] == pytest.approx(period * 1e3, abs=1e-3)
        expected = bool(np.abs(errors).max() <= period + 1e-9)
        assert row["within_one_sample"] is expected
    assert rows["phone_1_gsr"]["within_one_sample"] is False  # 40 ms > 7.8 ms
    assert rows["webcam_1_frames"]["within_one_sample"] is True  # 20 ms < 33 ms
    assert rows["webcam_1_frames"]["offset_ms"] == pytest.approx(20.0, abs=0.01)
    assert rows["phone_1_events"]["max_error_ms"] == pytest.approx(0.5)
    assert rows["phone_1_events"]["within_one_sample"] is True
    assert rows["phone_2_rgb_frames"]["note"] == "video not found"
    assert rows["phone_2_rgb_frames"]["n_detected"] == 0

    out = context.output_dir
    assert json.loads((out / "sync_check.json").read_text()) == report
    table = pd.read_csv(out / "sync_check.csv")
    assert table["stream"].tolist() == [r["stream"] for r in report["streams"]]
    assert {"n_matched", "p95_error_ms", "within_one_sample"} <= set(table.columns)


def test_without_reference_pulses_nothing_is_checked(context):
    """No consensus of the other streams: without reference pulses, no verdict."""
    context.streams = [s for s in context.streams if s.name != "StimulusMarkers"]
    context.options = {"sync_reference": "Photodiode"}  # not recorded
    report = SyncCheckProcessor().run(context)
    assert report["reference"]["n_pulses"] == 0
    rows = report["streams"]
    assert rows and all(r["checked"] is False for r in rows)
    assert {r["aligned"] for r in rows} == {"not checked (no reference pulses)"}
    assert not any(r["within_one_sample"] for r in rows)


def test_processor_with_numeric_reference(context):
    context.options = {"sync_reference": "shimmer_A1"}
    report = SyncCheckProcessor().run(context)
    assert report["reference"]["stream"] == "shimmer_A1"
    rows = {r["stream"]: r for r in report["streams"]}
    assert "shimmer_A1" not in rows
    assert rows["StimulusMarkers"]["offset_ms"] == pytest.approx(25, abs=8)


def test_pulse_outside_a_stream_is_not_held_against_it(context):
    """A pulse after a stream's last sample (stopped just after it) is not a miss."""
    gsr = next(s for s in context.streams if s.name == "phone_1_gsr")
    keep = gsr.time_stamps < T0 + PULSES[-1] - 0.01  # data ends before the last pulse
    gsr.time_stamps = gsr.time_stamps[keep]
    gsr.time_series = gsr.time_series[keep]
    rows = {r["stream"]: r for r in SyncCheckProcessor().run(context)["streams"]}
    row = rows["phone_1_gsr"]
    assert row["n_reference"] == row["n_matched"] == 4
    assert row["n_reference_outside"] == 1
    assert rows["shimmer_A1"]["n_reference"] == 5
    assert rows["shimmer_A1"]["n_reference_outside"] == 0
    # markers are irregular: every reference pulse counts, so a missing one shows
    assert rows["phone_1_events"]["n_reference"] == 5


def test_pulse_inside_a_stream_that_is_missed_still_counts(context):
    """Flattening a pulse inside the recorded span is reported as unmatched."""
    gsr = next(s for s in context.streams if s.name == "phone_1_gsr")
    on = T0 + PULSES[2] + LAGS["phone_1_gsr"]
    flat = (gsr.time_stamps >= on - 0.01) & (gsr.time_stamps < on + 0.3)
    gsr.time_series[flat, 0] = np.interp(
        gsr.time_stamps[flat],
        gsr.time_stamps[~flat],
        gsr.time_series[~flat, 0],
    )
    row = next(
        r
        for r in SyncCheckProcessor().run(context)["streams"]
        if r["stream"] == "phone_1_gsr"
    )
    assert row["n_reference"] == 5
    assert row["n_matched"] == 4
    assert row["n_reference_outside"] == 0


def test_phone_markers_are_held_to_the_phone_clock_tolerance():
    from lsl_session.processing.sync_check import (
        IRREGULAR_TOLERANCE,
        PHONE_MARKER_TOLERANCE,
        alignment_row,
    )

    reference = np.array([1.0, 5.0, 9.0])
    detected = reference + np.array([0.2e-3, -0.4e-3, 1.5e-3])
    local = alignment_row("m", "markers", detected, reference, None)
    phone = alignment_row(
        "p_events", "markers", detected, reference, None,
        tolerance=PHONE_MARKER_TOLERANCE,
    )  # fmt: skip
    assert local["within_one_sample"] is False
    assert local["tolerance_ms"] == IRREGULAR_TOLERANCE * 1e3
    assert phone["within_one_sample"] is True
    assert phone["tolerance_ms"] == PHONE_MARKER_TOLERANCE * 1e3
    # a regular stream keeps its sample period whatever the marker tolerance
    gsr = alignment_row("g", "steps", detected, reference, 1 / 128, tolerance=1.0)
    assert gsr["tolerance_ms"] == round(1000 / 128, 3)
