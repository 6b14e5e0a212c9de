"""Clean output (issue #13 item 5): liblsl and device libraries stay off stdout/stderr,
a closed pipe is no error, Ctrl-C during process is recorded."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time

from lsl_helpers import RegularSource, wait_until
from test_processing_support import make_session


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lsl_session", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def test_ctrl_c_during_process_logs_interrupted(session_root):
    folder, _, _ = make_session(session_root, name="longproc", duration=900.0)
    log = folder / f"{folder.name}_log.json"
    proc = _cli("process", str(folder), "--no-hand-segmentation")
    try:
        assert wait_until(lambda: "processing_start" in log.read_text(), 60)
        time.sleep(0.3)  # inside a step (the steps take > 2 s in all)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # 130, or killed by SIGINT when Python reports the interrupt that way
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    last = json.loads(log.read_text())[-1]
    assert last["event"] == "processing_end"
    assert last["status"] == "interrupted"
    meta = json.loads((folder / "session_metadata.json").read_text())
    run = meta["processing"]["runs"][-1]
    assert run["status"] == "interrupted"
    assert "error" not in [s["status"] for s in run["steps"].values()]


LIBLSL_RAW = re.compile(r"\.cpp:\d+\s+(INFO|WARN|ERR|FATL)\|")


def test_closed_stdout_pipe_exits_quietly(session_root):
    folder, _, _ = make_session(session_root, name="pipe")
    proc = _cli("info", str(folder))
    proc.stdout.close()  # the reader is gone before the first write (`| head`)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert "Broken pipe" not in err
    assert "Exception ignored" not in err
    assert "Error" not in err


def test_liblsl_log_goes_through_logging_only(session_root, uid):
    src = RegularSource(f"quiet_{uid}", f"quiet_{uid}", channels=1, srate=100).start()
    try:
        proc = _cli("record", "--root", str(session_root), "--no-process",
                    "--stream", f"source_id='quiet_{uid}'", "--duration", "1.5")  # fmt: skip
        out, err = proc.communicate(timeout=60)
    finally:
        src.stop()
    assert proc.returncode == 0, err
    assert not LIBLSL_RAW.search(err), err  # e.g. "api_config.cpp:126 INFO| Loaded…"
    assert "broke off" not in err  # our own stop closes its inlets first
    assert len(out.splitlines()) == 1  # stdout: the session folder only


def test_liblsl_log_pump_levels_cut_and_rate_limit(tmp_path, caplog):
    from lsl_session.liblsl_log import _LiblslLogPump

    caplog.set_level(logging.DEBUG, logger="lsl_session.liblsl")
    path = tmp_path / "liblsl.log"
    stamp = "2026-12-01 08:00:00.000 (   0.001s) [        277FAB80]"
    lines = [
        "File verbosity level: -1",
        f"{stamp}         api_config.cpp:126   INFO| Loaded default config",
        f"{stamp}      data_receiver.cpp:375    ERR| " + "x" * 1000,
        f"{stamp}       tcp_server.cpp:200   WARN| a warning",
    ]
    lines += [f"{stamp}           flood.cpp:1      ERR| again {i}" for i in range(30)]
    path.write_text("\n".join(lines) + "\n")
    pump = _LiblslLogPump.__new__(_LiblslLogPump)  # no thread: pump by hand
    pump.path, pump._pos, pump._window, pump._suppressed = str(path), 0, {}, {}
    pump.pump()
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records[0] == (logging.ERROR, "liblsl: " + "x" * 300 + "…")
    assert records[1] == (logging.WARNING, "liblsl: a warning")
    assert [m for _, m in records[2:]] == [f"liblsl: again {i}" for i in range(10)]
    assert not any("Loaded default config" in m for _, m in records)
    with path.open("a") as fh:  # a minute later the source may speak again
        fh.write(f"{stamp}           flood.cpp:1      ERR| later\n")
    pump._window = {k: [t - 61 for t in v] for k, v in pump._window.items()}
    pump.pump()
    assert caplog.records[-1].getMessage() == (
        "liblsl: later (20 similar messages suppressed)"
    )
