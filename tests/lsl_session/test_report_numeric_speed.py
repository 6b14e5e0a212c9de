"""The report's per-channel figures without float64 copies of a whole stream (#28).

`finite_range` (row blocks) equals the per-column reference, and `channel_flags`
strides before converting, with the flags of the full float64 copy.
"""

from __future__ import annotations

import numpy as np

from lsl_session import channel_checks
from lsl_session.channel_checks import channel_flags, finite_range


def _reference_range(values: np.ndarray) -> list[tuple[float, float] | None]:
    out = []
    data = values.astype(np.float64)
    for k in range(data.shape[1]):
        col = data[:, k][np.isfinite(data[:, k])]
        out.append((col.min(), col.max()) if col.size else None)
    return out


def test_finite_range_equals_per_column_reference(monkeypatch):
    monkeypatch.setattr(channel_checks, "RANGE_BLOCK_ROWS", 1000)  # many blocks
    rng = np.random.default_rng(5)
    values = rng.normal(0, 50, (10_500, 5)).astype(np.float32)
    values[::7, 0] = np.nan
    values[5, 1], values[9000, 1] = np.inf, -np.inf  # ignored, not the range
    values[:, 2] = np.nan  # no finite value at all
    values[10_499, 3] = 1e6  # the extreme in the last, short block
    mins, maxs, present = finite_range(values)
    for k, ref in enumerate(_reference_range(values)):
        assert bool(present[k]) is (ref is not None)
        if ref is not None:
            assert (mins[k], maxs[k]) == ref, k
            assert f"{mins[k]:.6g}" == f"{ref[0]:.6g}"
    assert maxs[3] == 1e6
    ints = rng.integers(-(2**31), 2**31 - 1, (3000, 2), dtype=np.int32)
    mins, maxs, present = finite_range(ints)
    assert present.all() and list(mins) == list(ints.min(axis=0).astype(float))
    assert list(maxs) == list(ints.max(axis=0).astype(float))


def test_channel_flags_stride_first_same_flags():
    rng = np.random.default_rng(6)
    n = channel_checks.MAX_SAMPLES * 3 + 17
    values = rng.normal(0, 10, (n, 4)).astype(np.float32)
    values[:, 1] = 7.5  # flat
    values[::50, 2] = values[:, 2].max() + 100  # clipped at the top (2 %)
    flags = channel_flags(values)
    assert flags == channel_flags(values.astype(np.float64))
    assert [(f.channel, f.kind) for f in flags] == [(1, "flat"), (2, "clipped")]
