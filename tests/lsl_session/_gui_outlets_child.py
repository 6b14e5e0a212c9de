"""Child process: an 8-channel EEG outlet (labels, units, one label with markup)
and a marker stream whose name and texts carry markup, pushing until killed."""

from __future__ import annotations

import sys
import time

import numpy as np
import pylsl

LABELS = ["Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "<b>O2</b>"]


def main() -> None:
    uid = sys.argv[1]
    info = pylsl.StreamInfo(f"EEG_{uid}", "EEG", 8, 250, pylsl.cf_float32, f"eeg-{uid}")
    chans = info.desc().append_child("channels")
    for label in LABELS:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    eeg = pylsl.StreamOutlet(info)
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo(
            f"<img src=x onerror=alert(1)>Mk_{uid}", "Markers", 1, 0,
            pylsl.cf_string, f"mk-{uid}",
        )
    )  # fmt: skip
    t0 = pylsl.local_clock()
    sent, k = 0, 0
    while True:
        now = pylsl.local_clock()
        n = int((now - t0) * 250) - sent
        if n > 0:
            t = (sent + np.arange(n)) / 250
            data = 50 * np.sin(2 * np.pi * 10 * t[:, None] + np.arange(8))
            eeg.push_chunk(data.astype(np.float32), t0 + t)
            sent += n
        if now - t0 >= k * 0.25:
            markers.push_sample([f"<script>bad()</script>seq {k}"])
            k += 1
        time.sleep(0.01)


if __name__ == "__main__":
    main()
