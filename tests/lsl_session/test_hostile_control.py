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

import pytest
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


# ------------------------------------------------------------------ fuzz

_SEEDS = [
    "filename {participant:P1} {session:S1} {task:Memory} {run:2}",
    "filename {run:²}",
    "filename {task:a} {acquisition:hi} {modality:EEG} {bogus:1} {template:%p.xdf}",
    "select name='EEG'",
    "select type='EEG' and hostname='lab1'",
    "select all",
    "select none",
    "auth token",
    "please select all",
    "frobnicate",
]
_PIECES = [
    "{", "}", ":", "{run:", "{participant:", "{task:", "²", "٣", "\0", "\r", "\t",
    "'", '"', "(", ")", "[", "]", "$", "\\", "é", "\u202e", "\ufffd", " or ", " and ",
    "9" * 5000, "x" * 300, "select ", "filename ", "{" * 500, "(" * 300,
]  # fmt: skip


def _fuzz_line(rng) -> bytes:
    text = rng.choice(_SEEDS)
    for _ in range(rng.randint(0, 5)):
        pos = rng.randint(0, len(text))
        op = rng.randrange(4)
        if op == 0:
            text = text[:pos] + rng.choice(_PIECES) + text[pos:]
        elif op == 1:
            text = text[:pos] + text[pos + rng.randint(1, 10) :]
        elif op == 2:
            text = (
                text[:pos]
                + "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 8)))
                + text[pos:]
            )
        else:
            text = text[:pos] + text[pos : pos + rng.randint(1, 40)] * 2 + text[pos:]
    data = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.05:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    if rng.random() < 0.01:
        data = b"select " + b"x" * 70_000  # over the 64 KiB line limit
    data = data.replace(b"\n", b" ")
    # no roots: a mutated path could make folders anywhere (tested apart, above)
    return data.replace(b"root", b"r00t").replace(b"ROOT", b"R00T")


class _Tracebacks(logging.Handler):
    """Counts log records that carry a traceback (keeps nothing else)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.first = ""

    def emit(self, record: logging.LogRecord) -> None:
        record.getMessage()  # every message is formatted (a bad format raises)
        if record.exc_info:
            self.count += 1
            self.first = self.first or record.getMessage()


def _fuzz_control(root: Path, uid: str, cases: int) -> dict[str, int]:
    import random
    import tracemalloc

    from lsl_session.control.protocol import parse_line

    name = f"fz_{uid}"
    src = RegularSource(name, f"fz_{uid}", channels=2, srate=200).start()
    manager = SessionManager(root)
    server = ControlServer(manager, host="127.0.0.1", port=0, process=False).start()
    client = Client(server.address)
    tracebacks = _Tracebacks()
    logger = logging.getLogger("lsl_session")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(tracebacks)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # pytest would keep every record (and its arguments)
    rng = random.Random(31)
    outcomes = {"OK": 0, "ERR": 0}
    tracemalloc.start()
    try:
        # only what our code holds (pytest keeps every log record of the test)
        ours = [tracemalloc.Filter(True, "*/lsl_session/*"),
                tracemalloc.Filter(True, "*/pylsl/*")]  # fmt: skip
        base = tracemalloc.take_snapshot().filter_traces(ours)
        for _ in range(cases):
            line = _fuzz_line(rng)
            kind = parse_line(line.decode("utf-8", errors="replace")).kind
            if kind in ("start", "stop", "quit", "update", "status"):
                continue  # the run itself is driven below
            client.sock.sendall(line + b"\n")
            reply = _reply(client.sock)
            assert reply == b"OK" or (
                reply.startswith(b"ERR ") and len(reply) <= 320
            ), reply[:100]
            outcomes["OK" if reply == b"OK" else "ERR"] += 1
        end = tracemalloc.take_snapshot().filter_traces(ours)
        grown = sum(d.size_diff for d in end.compare_to(base, "filename"))
        status = client.status()
        assert len(status["selection"]) <= MAX_SELECTION
        assert all(len(v) <= 256 for v in status["filename"].values())
        # the honest client goes on: a named run that records
        assert _send(client, "select none") == b"OK"
        assert _send(client, f"select source_id='fz_{uid}'") == b"OK"
        assert _send(client, "filename {participant:P9} {run:4}") == b"OK"
        assert _send(client, "start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 50, 20)
        folder = manager.session_dir
        assert _send(client, "stop") == b"OK"
        assert folder.name.startswith("sub-P9_")
        assert _xdf_samples(folder, name) > 50
    finally:
        tracemalloc.stop()
        logger.removeHandler(tracebacks)
        logger.setLevel(level)
        logger.propagate = propagate
        client.close()
        server.stop()
        manager.close()
        src.stop()
    assert tracebacks.count == 0, f"a traceback was logged: {tracebacks.first}"
    assert grown < 2**20, f"grew {grown / 2**20:.1f} MiB"
    outcomes["grown_kib"] = grown // 1024
    return outcomes


def test_control_fuzz_short(session_root, uid, monkeypatch):
    monkeypatch.chdir(session_root)
    outcomes = _fuzz_control(session_root, uid, 300)
    assert outcomes["OK"] and outcomes["ERR"]


@pytest.mark.slow
def test_control_fuzz_10000(session_root, uid, monkeypatch):
    monkeypatch.chdir(session_root)
    outcomes = _fuzz_control(session_root, uid, 10_000)
    print(f"\ncontrol fuzz 10,000: {outcomes}")  # noqa: T201
    assert outcomes["OK"] and outcomes["ERR"]
