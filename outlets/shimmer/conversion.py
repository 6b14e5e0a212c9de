"""Shimmer3 GSR+ raw values to physical units (GSR kΩ/µS, PPG mV, accel m/s²).

The GSR conversion is Shimmer's published amplifier equation (Java
``SensorGSR.calibrateGsrDataToKOhmsUsingAmplifierEq``): the range (feedback
resistor) actually used for each sample is carried in bits 15..14 of the raw
value, the 12-bit ADC reading in bits 11..0.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

#: Reference (feedback) resistors of the four GSR ranges, in kΩ.
GSR_RREF_KOHM = np.array([40.2, 287.0, 1000.0, 3300.0])
#: Published resistance limits per fixed range, in kΩ.
GSR_RANGE_LIMITS_KOHM = np.array(
    [[8.0, 63.0], [63.0, 220.0], [220.0, 680.0], [680.0, 4700.0]]
)
#: Range setting value meaning "auto range" (config byte 3, bits 3..1).
GSR_RANGE_AUTO = 4
ADC_VREF_V = 3.0
ADC_MAX = 4095
#: Below this ADC value range 3 is unreliable ("equation breaks down").
_RANGE3_MIN_ADC = 683
#: Default low-noise accelerometer calibration (±2 g): offset and LSB per m/s².
ACCEL_LN_OFFSET = 2047.0
ACCEL_LN_SENSITIVITY = 83.0


def gsr_range_bits(raw: ArrayLike) -> NDArray[np.int64]:
    """Return the per-sample GSR range index (bits 15..14 of the raw value)."""
    return (np.asarray(raw, dtype=np.int64) >> 14) & 0x3


def gsr_raw_to_kohm(
    raw: ArrayLike, *, range_setting: int = GSR_RANGE_AUTO
) -> NDArray[np.float64]:
    """Convert raw GSR words to skin resistance in kΩ.

    Parameters
    ----------
    raw : array_like of int
        Raw 16-bit GSR words as streamed (range bits + 12-bit ADC value).
    range_setting : int
        The configured range: 0-3 fixed (the result is clamped to the published
        limits of that range), or 4 = auto (clamped to at least 8 kΩ).

    Returns
    -------
    numpy.ndarray
        Resistance in kΩ; ``nan`` where the input voltage is at or below 0.5 V
        (open circuit, the equation has no solution).
    """
    raw = np.asarray(raw, dtype=np.int64)
    rng = (raw >> 14) & 0x3
    adc = (raw & 0x0FFF).astype(np.float64)
    adc = np.where((rng == 3) & (adc < _RANGE3_MIN_ADC), _RANGE3_MIN_ADC, adc)
    volts = adc * (ADC_VREF_V / ADC_MAX)
    denom = volts / 0.5 - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kohm = np.where(denom > 0, GSR_RREF_KOHM[rng] / denom, np.nan)
    if range_setting == GSR_RANGE_AUTO:
        kohm = np.where(np.isnan(kohm), kohm, np.maximum(kohm, 8.0))
    elif 0 <= range_setting <= 3:
        lo, hi = GSR_RANGE_LIMITS_KOHM[range_setting]
        kohm = np.where(np.isnan(kohm), kohm, np.clip(kohm, lo, hi))
    else:
        raise ValueError(f"range_setting must be 0-4, got {range_setting!r}")
    return kohm


def kohm_to_us(kohm: ArrayLike) -> NDArray[np.float64]:
    """Convert resistance in kΩ to conductance in µS (``1000 / R``)."""
    with np.errstate(divide="ignore"):
        return 1000.0 / np.asarray(kohm, dtype=np.float64)


def gsr_raw_to_us(
    raw: ArrayLike, *, range_setting: int = GSR_RANGE_AUTO
) -> NDArray[np.float64]:
    """Convert raw GSR words to skin conductance in µS (see `gsr_raw_to_kohm`)."""
    return kohm_to_us(gsr_raw_to_kohm(raw, range_setting=range_setting))


def gsr_kohm_to_raw(kohm: ArrayLike, rng: ArrayLike) -> NDArray[np.uint16]:
    """Encode resistance as the raw word a Shimmer3 would send (inverse equation).

    Used by the emulator and by tests. The ADC value is rounded and clipped to
    12 bits, so a resistance outside the range's span saturates.

    Parameters
    ----------
    kohm : array_like of float
        Skin resistance in kΩ.
    rng : array_like of int
        Range index (0-3) used for each sample.

    Returns
    -------
    numpy.ndarray of uint16
        ``rng << 14 | adc``.
    """
    rng = np.asarray(rng, dtype=np.int64)
    volts = 0.5 * (GSR_RREF_KOHM[rng] / np.asarray(kohm, dtype=np.float64) + 1.0)
    adc = np.clip(np.rint(volts * (ADC_MAX / ADC_VREF_V)), 0, ADC_MAX).astype(np.int64)
    return ((rng << 14) | adc).astype(np.uint16)


def gsr_auto_range(kohm: ArrayLike) -> NDArray[np.int64]:
    """Return the range whose published limits contain each resistance."""
    kohm = np.asarray(kohm, dtype=np.float64)
    edges = GSR_RANGE_LIMITS_KOHM[1:, 0]  # 63, 220, 680
    return np.searchsorted(edges, kohm, side="right").astype(np.int64)


def ppg_raw_to_mv(raw: ArrayLike) -> NDArray[np.float64]:
    """Convert the internal ADC A13 (PPG) reading to millivolts."""
    return np.asarray(raw, dtype=np.float64) * (ADC_VREF_V * 1000.0 / ADC_MAX)


def ppg_mv_to_raw(mv: ArrayLike) -> NDArray[np.uint16]:
    """Encode millivolts as a 12-bit A13 reading (inverse of `ppg_raw_to_mv`)."""
    raw = np.rint(np.asarray(mv, dtype=np.float64) * (ADC_MAX / (ADC_VREF_V * 1000.0)))
    return np.clip(raw, 0, ADC_MAX).astype(np.uint16)


def accel_raw_to_ms2(
    raw: ArrayLike,
    *,
    offset: float | ArrayLike = ACCEL_LN_OFFSET,
    sensitivity: float | ArrayLike = ACCEL_LN_SENSITIVITY,
) -> NDArray[np.float64]:
    """Convert low-noise accelerometer readings to m/s².

    Parameters
    ----------
    raw : array_like of int
        Raw 12-bit readings, shape ``(n,)`` or ``(n, 3)``.
    offset, sensitivity : float or array_like
        Per-axis offset (LSB) and sensitivity (LSB per m/s²). The defaults are
        Shimmer's nominal ±2 g values; use the device calibration when known.

    Returns
    -------
    numpy.ndarray
        Acceleration in m/s² (alignment matrix not applied).
    """
    return (np.asarray(raw, dtype=np.float64) - offset) / sensitivity


def accel_ms2_to_raw(
    ms2: ArrayLike,
    *,
    offset: float = ACCEL_LN_OFFSET,
    sensitivity: float = ACCEL_LN_SENSITIVITY,
) -> NDArray[np.int16]:
    """Encode m/s² as raw 12-bit readings (inverse of `accel_raw_to_ms2`)."""
    raw = np.rint(np.asarray(ms2, dtype=np.float64) * sensitivity + offset)
    return np.clip(raw, 0, ADC_MAX).astype(np.int16)
