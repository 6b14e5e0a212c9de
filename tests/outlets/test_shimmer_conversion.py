"""Pure tests of the Shimmer3 GSR/PPG/accel conversions."""

from __future__ import annotations

import numpy as np
import pytest

from outlets.shimmer.conversion import (
    GSR_RANGE_LIMITS_KOHM,
    accel_ms2_to_raw,
    accel_raw_to_ms2,
    gsr_auto_range,
    gsr_kohm_to_raw,
    gsr_range_bits,
    gsr_raw_to_kohm,
    gsr_raw_to_us,
    ppg_mv_to_raw,
    ppg_raw_to_mv,
)


def test_published_formula_by_hand():
    # range 2 (1 MΩ), adc 2048: V = 2048*3/4095, R = 1000 / (V/0.5 - 1)
    raw = (2 << 14) | 2048
    v = 2048 * 3.0 / 4095
    assert gsr_raw_to_kohm(raw)[()] == pytest.approx(1000.0 / (v / 0.5 - 1))
    assert gsr_raw_to_us(raw)[()] == pytest.approx((v / 0.5 - 1) / 1000.0 * 1000.0)
    assert gsr_range_bits([raw, 0x3FFF, 0xC000]).tolist() == [2, 0, 3]


@pytest.mark.parametrize("rng", [0, 1, 2, 3])
def test_round_trip_within_quantisation_each_range(rng):
    lo, hi = GSR_RANGE_LIMITS_KOHM[rng]
    # stay where the 12-bit ADC resolves the range to better than 0.1 %
    kohm = np.geomspace(lo * 1.05, min(hi, 1.6 * lo if rng == 0 else hi) * 0.95, 500)
    raw = gsr_kohm_to_raw(kohm, np.full(kohm.size, rng))
    assert (gsr_range_bits(raw) == rng).all()
    err = np.abs(gsr_raw_to_kohm(raw) / kohm - 1)
    assert err.max() <= 1e-3


def test_auto_range_and_guards():
    assert gsr_auto_range([10, 62.9, 63.1, 219, 221, 679, 681, 4000]).tolist() == [
        0, 0, 1, 1, 2, 2, 3, 3,
    ]  # fmt: skip
    # open circuit (V <= 0.5 V) has no solution
    assert np.isnan(gsr_raw_to_kohm(0x0100))
    # range 3 below adc 683 is clamped to 683
    assert gsr_raw_to_kohm((3 << 14) | 700) < gsr_raw_to_kohm((3 << 14) | 683)
    assert gsr_raw_to_kohm((3 << 14) | 600) == gsr_raw_to_kohm((3 << 14) | 683)
    # auto: at least 8 kΩ; fixed range: clamped to its limits
    assert gsr_raw_to_kohm(4095) == pytest.approx(40.2 / 5)  # full scale, range 0
    assert gsr_raw_to_kohm((1 << 14) | 4000, range_setting=1) == pytest.approx(63.0)
    with pytest.raises(ValueError, match="range_setting"):
        gsr_raw_to_kohm(1, range_setting=7)


def test_ppg_and_accel():
    assert ppg_raw_to_mv(4095)[()] == pytest.approx(3000.0)
    mv = np.linspace(100, 2900, 50)
    assert np.abs(ppg_raw_to_mv(ppg_mv_to_raw(mv)) - mv).max() <= 3000 / 4095 / 2 + 1e-9
    acc = np.array([[0.0, -9.81, 9.81]])
    back = accel_raw_to_ms2(accel_ms2_to_raw(acc))
    assert np.abs(back - acc).max() <= 0.5 / 83 + 1e-9
    assert accel_raw_to_ms2(2047)[()] == 0.0
