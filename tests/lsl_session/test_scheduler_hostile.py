"""``process --scheduler`` on bad addresses, a silent listener, a cluster with no
worker (issue #31): one line naming the address, exit 1, a bounded wait."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from lsl_session.scheduler import SchedulerError, parse_address
from lsl_session.session import create_session_folder


def _cli(*args, env=None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", *map(str, args)],
        capture_output=True, text=True, timeout=200,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return proc, time.monotonic() - started


def _root(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    create_session_folder(root, "a")
    create_session_folder(root, "b")
    return root


def _one_line_error(proc: subprocess.CompletedProcess, *parts: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("tcp://", "is not a scheduler address"),
        ("tls://127.0.0.1:8786", "TLS needs client certificates"),
        ("inproc://192.0.2.2/5879/1", "inproc:// only exists inside"),
        ("ws://127.0.0.1:1", "ws:// is not supported"),
        ("tcp://127.0.0.1:99999", "port 99999 is out of range"),
        ("tcp://a b:1", "is not a scheduler address"),
        ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler"),
    ],
)
def test_malformed_or_refused_address_is_one_line(tmp_path, address, says):
    proc, _took = _cli("process", "--root", _root(tmp_path), "--scheduler", address)
    _one_line_error(proc, says)


def test_silent_listener_ends_with_one_line(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # accepted, never a byte

    threading.Thread(target=accept, daemon=True).start()
    try:
        proc, took = _cli(
            "process",
            "--root",
            _root(tmp_path),
            "--scheduler",
            f"tcp://127.0.0.1:{port}",
        )
    finally:
        listener.close()
        for conn in held:
            conn.close()
    _one_line_error(proc, f"tcp://127.0.0.1:{port}", "sent no Dask handshake")
    assert held, "the CLI never connected"
    assert took < 120  # bounded (was > 240 s): handshake wait is 5 s


def test_cluster_with_no_worker_ends_with_one_line(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        proc, took = _cli(
            "process", "--root", _root(tmp_path), "--scheduler", address,
            env={"LSL_SESSION_SCHEDULER_WAIT": "3"},
        )  # fmt: skip
    _one_line_error(proc, address, "has no worker (none joined in 3 s)")
    assert took < 120


def test_parse_address_forms():
    assert parse_address("tcp://head:8786").url == "tcp://head:8786"
    assert parse_address("head:9000").url == "tcp://head:9000"
    assert parse_address("tcp://head").url == "tcp://head:8786"
    assert parse_address("tcp://[::1]:8786").url == "tcp://[::1]:8786"
    for bad in ("", "tcp://", "tcp://:1", "://x:1", "tcp://x:0", "x" * 10_000):
        with pytest.raises(SchedulerError) as err:
            parse_address(bad)
        assert len(str(err.value)) < 300 and "\n" not in str(err.value)
