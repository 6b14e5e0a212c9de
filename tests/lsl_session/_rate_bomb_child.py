"""Child process: an outlet advertising an implausible rate (never pushes)."""

from __future__ import annotations

import sys
import time

import pylsl


def main() -> None:
    name, srate, channels = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    info = pylsl.StreamInfo(name, "EEG", channels, srate, pylsl.cf_float32, name)
    outlet = pylsl.StreamOutlet(info, 0, 1)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while outlet is not None:
        time.sleep(1)


if __name__ == "__main__":
    main()
