"""The anchors the benchmarks compare against, in venvs under a cache folder.

LabRecorder (the ``labrecorder`` wheel's Python extension) runs in a venv of its
own so its liblsl never meets ours. The venv is created on first use under
``$LSL_SESSION_BENCH_CACHE``, else ``$XDG_CACHE_HOME/lsl-session-bench``, else
``~/.cache/lsl-session-bench``; nothing depends on where the repository lives.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

LABRECORDER_PACKAGES = ("labrecorder==1.0.0rc0", "pylsl", "pyxdf", "numpy")


def cache_dir() -> Path:
    """The folder that holds the anchor venvs."""
    explicit = os.environ.get("LSL_SESSION_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lsl-session-bench"


def default_labrecorder_venv() -> Path:
    """Where the LabRecorder venv lives unless ``--lr-venv`` says otherwise."""
    return cache_dir() / "labrecorder-1.0.0rc0"


def ensure_venv(venv: Path, packages: tuple[str, ...], probe: str) -> Path:
    """Create ``venv`` with ``packages`` unless ``python -c probe`` already works there.

    Returns
    -------
    Path
        The venv's python.
    """
    py = venv / "bin" / "python"
    check = [str(py), "-c", probe]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    print(f"creating {venv} with {' '.join(packages)}", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True)
    subprocess.run(check, check=True)
    return py


def ensure_labrecorder(venv: Path | None = None) -> Path:
    """The python of the LabRecorder venv, created if missing."""
    return ensure_venv(
        venv or default_labrecorder_venv(),
        LABRECORDER_PACKAGES,
        "import labrecorder, pylsl, numpy",
    )


def machine() -> str:
    """One line: kernel, CPU model, cores, memory, Python."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1e6:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    u = platform.uname()
    return (
        f"{u.system} {u.release} {u.machine}; {cpu or 'cpu ?'}; "
        f"{os.cpu_count()} cores{mem}; Python {platform.python_version()}"
    )


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
