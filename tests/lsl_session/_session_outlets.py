"""Child process: N regular outlets pushing one constant value until stdin closes.

``python _session_outlets.py PREFIX N VALUE [SRATE]`` creates streams
``PREFIX_s0`` … (source_id ``PREFIX_s<i>_sid``), prints ``ready`` and pushes
``VALUE`` on every sample. Run it with ``LSLAPICFG`` naming a config with
``[lab] SessionID = X`` to publish the same names under another SessionID.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pylsl


def main() -> None:
    prefix, count, value = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    srate = float(sys.argv[4]) if len(sys.argv) > 4 else 50.0
    shift = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0  # added to stamps
    outlets = [
        pylsl.StreamOutlet(
            pylsl.StreamInfo(
                f"{prefix}_s{i}",
                "EEG",
                1,
                srate,
                pylsl.cf_float32,
                f"{prefix}_s{i}_sid",
            )
        )
        for i in range(count)
    ]
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    uids = " ".join(o.get_info().uid() for o in outlets)
    sys.stdout.write(f"ready {uids}\n" if len(sys.argv) > 5 else "ready\n")
    sys.stdout.flush()
    t0, sent = pylsl.local_clock(), 0
    while not done.is_set():
        n = int((pylsl.local_clock() - t0) * srate) - sent
        if n > 0:
            data = np.full((n, 1), value, dtype=np.float32)
            stamps = t0 + shift + (sent + np.arange(n)) / srate
            for outlet in outlets:
                outlet.push_chunk(data, stamps)
            sent += n
        time.sleep(0.02)


if __name__ == "__main__":
    main()
