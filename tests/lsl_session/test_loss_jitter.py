"""Loss is loss even when stamps jitter: chunks pushed with pylsl's default stamp
(the push time) are late one chunk and early the next; no sample is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lsl_session.processing.loss import measured_rate, missing_in_stamps
from lsl_session.report.verdict import backward_jumps

RATE = 250.0


def _chunk_stamped(seed: int, n: int = 5000) -> np.ndarray:
    """Stamps as pylsl gives them to chunks pushed at irregular times."""
    rng = np.random.default_rng(seed)
    stamps: list[float] = []
    now, sent = 0.0, 0
    while sent < n:
        now += rng.uniform(0.01, 0.06)  # the pushing thread's sleeps
        want = int(now * RATE)
        if want > sent:
            k = want - sent
            push = now + rng.uniform(0.0, 0.002)  # stamped when pushed
            stamps.extend(push - (k - 1 - np.arange(k)) / RATE)
            sent = want
    return np.asarray(stamps[:n])


def _lost(t: np.ndarray) -> int:
    return missing_in_stamps(t, measured_rate(t))


@pytest.mark.parametrize("seed", range(6))
def test_push_time_jitter_is_not_loss_and_a_dropout_is(seed):
    t = _chunk_stamped(seed)
    assert _lost(t) == 0
    assert backward_jumps(t, RATE).size == 0
    assert backward_jumps(t).size > 0  # without the rate, every overlap counts
    assert _lost(np.delete(t, np.arange(2000, 2100))) == 100
    # one sample is at the jitter's own size: it may go unseen, never doubles
    assert _lost(np.delete(t, [2000])) <= 2


def test_exact_stamps_count_every_missing_sample():
    t = np.arange(10_000) / RATE
    assert _lost(t) == 0
    assert _lost(np.delete(t, [700])) == 1
    assert _lost(np.delete(t, [700, 720])) == 2  # close gaps counted once each
    assert _lost(np.delete(t, np.arange(3000, 3125))) == 125
    slow = np.arange(100_000) / (RATE * 0.999)  # a slow clock is not loss
    assert _lost(slow) == 0


def test_a_real_outlet_pushing_chunks_at_push_time_loses_nothing(tmp_path, uid):
    child = textwrap.dedent(
        f"""
        import random, time
        import numpy as np, pylsl
        info = pylsl.StreamInfo("jit_{uid}", "EEG", 4, {RATE}, "float32", "jit_{uid}")
        out = pylsl.StreamOutlet(info)
        t0, sent = time.monotonic(), 0
        while True:
            time.sleep(random.uniform(0.01, 0.06))
            want = int((time.monotonic() - t0) * {RATE})
            if want > sent:  # pushed with the default stamp: now
                out.push_chunk(np.zeros((want - sent, 4), np.float32))
                sent = want
        """
    )
    outlet = subprocess.Popen([sys.executable, "-c", child])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lsl_session", "record", "--root", str(tmp_path),
             "--stream", f"source_id='jit_{uid}'", "--duration", "6"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        outlet.kill()
        outlet.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "samples lost" in ln]
    assert " 0 samples lost" in line, proc.stderr[-2000:]
    assert "jump back" not in proc.stderr
