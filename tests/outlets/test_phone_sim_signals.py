"""The simulated phone's signal values and sync-pulse flags."""

from __future__ import annotations

import numpy as np
import pytest

from outlets.phone import protocol as P
from outlets.phone.sim_signals import pulse_flags, signal_values


def test_pulse_flags_mark_samples_inside_each_pulse():
    t = np.arange(0, 3, 0.01)
    flags = pulse_flags(np.array([1.0, 2.0]), t, 0.25, "gsr", 100.0)
    expected = ((t >= 1.0) & (t < 1.25)) | ((t >= 2.0) & (t < 2.25))
    assert np.array_equal(flags, expected)


def test_pulse_lights_the_frame_whose_exposure_holds_the_onset():
    rate = 10.0
    t = np.arange(0, 2, 1 / rate)  # frame stamps = exposure mid-points
    flags = pulse_flags(np.array([1.04]), t, 0.25, "rgb_frames", rate)
    # frame 10 (stamp 1.0) covers [0.95, 1.05) and holds the onset at 1.04; the
    # flash lasts until 1.29, so frames 11 and 12 end while it is still on
    assert np.flatnonzero(flags).tolist() == [10, 11, 12]


def test_no_pulses_no_flags():
    assert not pulse_flags(np.empty(0), np.arange(5.0), 0.25, "gsr", 1.0).any()
    assert pulse_flags(np.array([1.0]), np.empty(0), 0.25, "gsr", 1.0).shape == (0,)


@pytest.mark.parametrize("stream", ["motion", "gsr", "rgb_frames", "thermal_frames"])
def test_values_have_the_stream_channel_count(stream):
    k = np.arange(50)
    values = signal_values(stream, k, k / 50.0, np.zeros(50, dtype=bool))
    assert values.shape == (50, P.STREAMS[stream].channel_count)
    assert np.isfinite(values).all()


def test_gsr_steps_up_during_a_pulse():
    k = np.arange(4)
    pulse = np.array([False, True, True, False])
    base = signal_values("gsr", k, np.zeros(4), np.zeros(4, dtype=bool))
    stepped = signal_values("gsr", k, np.zeros(4), pulse)
    assert np.allclose(stepped[:, 0] - base[:, 0], 5.0 * pulse)


def test_frame_streams_carry_the_frame_index():
    k = np.arange(7, 12)
    assert (
        signal_values("rgb_frames", k, k / 30.0, np.zeros(5, bool))[:, 0].tolist()
        == k.tolist()
    )
    assert (
        signal_values("thermal_frames", k, k / 9.0, np.zeros(5, bool))[:, 0].tolist()
        == k.tolist()
    )
