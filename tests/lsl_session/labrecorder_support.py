"""A real LabRecorder-engine recording in a test (the ``labrecorder`` wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

LR_VERSION = "labrecorder==1.0.0rc0"

#: Child: resolve the given source ids, record them for ``secs`` into ``out``.
LR_CHILD = textwrap.dedent(
    """
    import sys, time
    import labrecorder, pylsl
    out, secs, *ids = sys.argv[1:]
    infos = []
    for sid in ids:
        found = pylsl.resolve_bypred(f"source_id='{sid}'", 1, 10.0)
        if not found:
            raise SystemExit(f"stream {sid} not found")
        infos += found
    rec = labrecorder.Recording(out, infos, [], {}, True)
    time.sleep(float(secs))
    rec.stop()
    del rec
    """
)


def labrecorder_python() -> str | None:
    """A Python that imports ``labrecorder``: ours, else a cached venv made for it."""
    probe = [sys.executable, "-c", "import labrecorder"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return sys.executable
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "lsl_session" / "labrecorder-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        made = subprocess.run(
            f'"{sys.executable}" -m venv "{venv}" && "{py}" -m pip install -q'
            f' "{LR_VERSION}" pylsl', shell=True, capture_output=True, timeout=600,
        )  # fmt: skip
        if made.returncode != 0:
            return None
    ok = subprocess.run([str(py), "-c", "import labrecorder"], capture_output=True)
    return str(py) if ok.returncode == 0 else None


def start_labrecorder(out: Path, secs: float, *source_ids: str) -> subprocess.Popen:
    """Start LabRecorder's engine recording ``source_ids`` into ``out`` (or skip)."""
    from system_tools import missing

    python = labrecorder_python()
    if python is None:
        missing("LabRecorder's engine", f"pip install {LR_VERSION} (Python 3.11/3.12)")
    return subprocess.Popen(
        [python, "-c", LR_CHILD, str(out), str(secs), *source_ids],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
