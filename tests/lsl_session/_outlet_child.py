"""Child process: a regular LSL outlet pushing a 4-channel sine until killed."""

from __future__ import annotations

import sys
import time

import numpy as np
import pylsl


def main() -> None:
    name, srate = sys.argv[1], float(sys.argv[2])
    info = pylsl.StreamInfo(name, "EEG", 4, srate, pylsl.cf_float32, f"{name}_sid")
    outlet = pylsl.StreamOutlet(info)
    t0 = pylsl.local_clock()
    sent = 0
    while True:
        n = int((pylsl.local_clock() - t0) * srate) - sent
        if n > 0:
            t = (sent + np.arange(n)) / srate
            data = np.sin(2 * np.pi * np.outer(t, [1, 2, 3, 4])).astype(np.float32)
            outlet.push_chunk(data, t0 + t)
            sent += n
        time.sleep(0.02)


if __name__ == "__main__":
    main()
