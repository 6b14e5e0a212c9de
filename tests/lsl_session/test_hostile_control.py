"""Hostile control lines (#31): bad ``filename`` fields and selection floods.

Over the real socket of ``record --control-port`` (a subprocess) or of a
`ControlServer`: a refused line is answered ``ERR …`` and changes nothing, and
the honest client's next ``start`` still records.
"""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

import pyxdf
from lsl_helpers import RegularSource, wait_until
from test_control import Client, _samples
from test_control_runs import start_server

from lsl_session.control import ControlServer
from lsl_session.control.protocol import MAX_QUERY, MAX_SELECTION
from lsl_session.manager import SessionManager


def _reply(sock: socket.socket) -> bytes:
    """One reply: ``OK`` (2 bytes) or an ``ERR …\\n`` line."""
    head = b""
    while len(head) < 2:
        chunk = sock.recv(2 - len(head))
        assert chunk, "server closed the connection"
        head += chunk
    if head == b"OK":
        return head
    while not head.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection"
        head += chunk
    return head


def _send(client: Client, line: str) -> bytes:
    client.sock.sendall(line.encode() + b"\n")
    return _reply(client.sock)


def _xdf_samples(folder: Path, name: str) -> int:
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    return sum(len(s["time_stamps"]) for s in streams if s["info"]["name"][0] == name)


def test_bad_run_field_is_refused_and_later_runs_record(session_root, uid):
    """``filename {run:²}`` (isdigit true, int fails) once made every later
    ``start`` answer OK and record nothing: now it is an ``ERR`` reply, the
    fields stay as they were and the next start records."""
    name = f"run_{uid}"
    src = RegularSource(name, f"run_{uid}", channels=2, srate=200).start()
    proc, port = start_server(
        session_root, "--no-process", "--stream", f"source_id='run_{uid}'"
    )
    client = Client(("127.0.0.1", port))
    try:
        assert _send(client, "filename {participant:P1} {run:2}") == b"OK"
        for bad in ("{run:²}", "{run:٣}", "{run:" + "9" * 5000 + "}", "{run:-1}"):
            reply = _send(client, f"filename {bad}")
            assert reply.startswith(b"ERR filename {run:"), reply[:80]
            assert len(reply) <= 320
        for bad in (
            "{task:%%%}",
            "{participant:a\x01b}",
            "{session:" + "x" * 300 + "}",
        ):
            assert _send(client, f"filename {bad}").startswith(b"ERR filename")
        status = client.status()
        assert status["filename"] == {"participant": "P1", "run": "2"}
        assert status["next_session_name"] == "sub-P1_run-002"
        assert _send(client, "start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 50, 20)
        folder = Path(client.status()["session_dir"])
        assert _send(client, "stop") == b"OK"
        assert folder.name.startswith("sub-P1_run-002_")
        assert _xdf_samples(folder, name) > 50
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        src.stop()
    assert "Traceback" not in err
    assert proc.returncode == 0, err[-2000:]


def test_selection_is_bounded_and_start_still_records(session_root, uid, caplog):
    """1,500 ``select`` lines: the first MAX_SELECTION are taken, the rest are
    ``ERR``; ``status`` stays small, the log grows linearly, ``start`` records."""
    name = f"sel_{uid}"
    src = RegularSource(name, f"sel_{uid}", channels=2, srate=200).start()
    manager = SessionManager(session_root)
    server = ControlServer(manager, host="127.0.0.1", port=0, process=False).start()
    client = Client(server.address)
    caplog.set_level(logging.DEBUG, logger="lsl_session")
    try:
        assert _send(client, f"select source_id='sel_{uid}'") == b"OK"
        replies = [
            _send(client, f"select name='never_{uid}_{i:05d}'") for i in range(1500)
        ]
        assert replies[: MAX_SELECTION - 1] == [b"OK"] * (MAX_SELECTION - 1)
        refused = replies[MAX_SELECTION - 1 :]
        assert all(r.startswith(b"ERR select: the selection holds") for r in refused)
        too_long = "name='" + "x" * MAX_QUERY + "'"
        assert _send(client, f"select {too_long}").startswith(b"ERR select: query")
        assert _send(client, "select name='unclosed").startswith(b"ERR select:")
        client.sock.sendall(b"status\n")
        raw = b""
        while not raw.endswith(b"\n"):
            raw += client.sock.recv(65536)
        assert len(raw) < 100_000
        logged = sum(len(r.getMessage()) for r in caplog.records)
        assert logged < 1500 * 1000  # linear: each line logs O(1) text
        assert _send(client, "start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 50, 20)
        folder = manager.session_dir
        assert _send(client, "stop") == b"OK"
        assert _xdf_samples(folder, name) > 50
        assert _send(client, "select none") == b"OK"
        assert _send(client, f"select name='again_{uid}'") == b"OK"
        assert client.status()["selection"] == [f"name='again_{uid}'"]
    finally:
        client.close()
        server.stop()
        manager.close()
        src.stop()
