"""`record --config` honours an explicit --root over the config's own root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.toml"


def test_command_line_root_wins_over_the_configs(tmp_path):
    config = tmp_path / "lab.toml"  # the demo, with a root of its own
    text = CONFIG.read_text().replace(
        "[session]\n", '[session]\nroot = "configroot"\n', 1
    )
    assert 'root = "configroot"' in text
    config.write_text(text)
    root = tmp_path / "here"
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "record", "--config", str(config),
         "--simulate", "--root", str(root), "--duration", "1", "--no-process"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (folder,) = root.iterdir()
    assert (folder / "session_metadata.json").is_file()
    assert Path(proc.stdout.strip().splitlines()[-1]).resolve() == folder.resolve()
    assert not (tmp_path / "configroot").exists()
