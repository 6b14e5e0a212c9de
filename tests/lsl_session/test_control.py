"""LabRecorder-compatible remote control: protocol, real sockets, real recorder."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import pyxdf
from click.testing import CliRunner
from lsl_helpers import RegularSource, wait_until

from lsl_session.control import ControlServer, parse_line, session_name_from_fields
from lsl_session.control.protocol import parse_filename_options
from lsl_session.errors import LslSessionError
from lsl_session.lifecycle import State
from lsl_session.manager import SessionManager


class Client:
    """A raw-socket client that checks every reply byte."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)

    def send(self, line: bytes | str) -> bytes:
        """Send one line; return its reply: ``OK`` or a whole ``ERR …\\n`` line."""
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\n")
        reply = self._recv_exact(2)
        while reply[:2] == b"ER" and not reply.endswith(b"\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply

    def status(self) -> dict:
        self.sock.sendall(b"status\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            buf += chunk
        assert buf.count(b"\n") == 1
        return json.loads(buf)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(session_root):
    mgr = SessionManager(session_root)
    yield mgr
    mgr.close()


@pytest.fixture
def server(manager):
    srv = ControlServer(manager, host="127.0.0.1", port=0, process=False).start()
    yield srv
    srv.stop()


def _xdf_names(session_dir: Path) -> set[str]:
    streams, _ = pyxdf.load_xdf(str(session_dir / f"{session_dir.name}.xdf"))
    return {s["info"]["name"][0] for s in streams}


def _samples(status: dict, name: str) -> int:
    return sum(s["samples"] for s in status["streams"] if s["name"] == name)


# ---------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    ("line", "kind", "arg"),
    [
        ("start", "start", None),
        ("  stop \r", "stop", None),
        ("update", "update", None),
        ("status", "status", None),
        ("select all", "select_all", None),
        ("select none", "select_none", None),
        ("please select all", "select_all", None),  # LabRecorder's contains rule
        ("selectnone", "select_none", None),
        ('select name="Small"', "select_query", 'name="Small"'),
        ("filename {task:select all}", "filename", None),
        ("auth abc", "auth", "abc"),
        ("", "empty", None),
        ("frobnicate", "unknown", "frobnicate"),
        ("START", "start", None),
    ],
)
def test_parse_line(line, kind, arg):
    command = parse_line(line)
    assert command.kind == kind
    if arg is not None:
        assert command.arg == arg


def test_filename_options_match_labrecorder():
    opts = parse_filename_options(
        r"filename {root:C:\Data\} {Template:exp%n\%p_block_%b.xdf} {run:2} "
        "{PARTICIPANT:P003} {task:Memory Guided} {bogus:1} {session:S1"
    )
    assert opts == {
        "root": "C:\\Data\\",
        "template": r"exp%n\%p_block_%b.xdf",
        "run": "2",
        "participant": "P003",
        "task": "Memory Guided",
        "bogus": "1",
    }  # the unterminated {session:S1 is ignored


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        (
            {"participant": "P003", "session": "S001", "task": "Memory", "run": "2"},
            "sub-P003_ses-S001_task-Memory_run-002",
        ),
        (
            {
                "participant": "P_01",
                "task": "Rest",
                "run": "1",
                "acquisition": "hi",
                "modality": "EEG",
            },
            "sub-P01_task-Rest_acq-hi_run-001_eeg",
        ),
        ({"run": "x/1"}, "run-x1"),
        ({"template": "a.xdf", "root": "/tmp"}, None),
        ({"participant": "__"}, None),
    ],
)
def test_session_name_from_fields(fields, name):
    assert session_name_from_fields(fields) == name


# ------------------------------------------------------------ end to end


def test_raw_socket_flow_records_selection_into_named_sessions(
    manager, server, session_root, uid
):
    a = RegularSource(f"A_{uid}", f"a_{uid}", channels=4, srate=200).start()
    b = RegularSource(f"B_{uid}", f"b_{uid}", channels=4, srate=200).start()
    root = session_root / "study"
    client = Client(server.address)
    try:
        replies = [
            client.send(
                f"filename {{root:{root}}} {{template:x.xdf}} {{participant:P003}} "
                "{session:S001} {task:Memory} {run:2}"
            ),
            client.send(f'select name="A_{uid}"'),
        ]
        status = client.status()
        assert status["state"] == "idle"
        assert status["selection"] == [f'name="A_{uid}"']
        assert status["next_session_name"] == "sub-P003_ses-S001_task-Memory_run-002"
        replies.append(client.send("start"))
        assert wait_until(lambda: _samples(client.status(), f"A_{uid}") > 50, 10)
        status = client.status()
        assert status["state"] == "recording"
        assert {s["name"] for s in status["streams"]} >= {f"A_{uid}"}
        replies.append(client.send("stop"))
        first = manager.session_dir
        assert client.status()["state"] == "completed"
        # a second run: a later start creates a new session
        replies += [client.send("filename {run:3}"), client.send("start")]
        assert wait_until(lambda: _samples(client.status(), f"A_{uid}") > 0, 10)
        replies.append(client.send("stop"))
        second = manager.session_dir
    finally:
        client.close()
        a.stop()
        b.stop()
    assert replies == [b"OK"] * len(replies)
    assert first.parent == root
    assert second.parent == root
    assert first.name.startswith("sub-P003_ses-S001_task-Memory_run-002_")
    assert second.name.startswith("sub-P003_ses-S001_task-Memory_run-003_")
    names = _xdf_names(first)
    assert f"A_{uid}" in names
    assert f"B_{uid}" not in names
    meta = json.loads((first / "session_metadata.json").read_text())
    assert meta["status"] == "completed"


def test_labrecorder_controller_client_drives_the_flow(
    manager, server, session_root, uid
):
    lrc = pytest.importorskip("labrecorder_controller")
    src = RegularSource(f"C_{uid}", f"c_{uid}", channels=2, srate=200).start()
    root = session_root / "lrc"
    rcs = lrc.labrecrcs(ip="127.0.0.1", port=server.address[1])
    try:
        rcs.filename(
            root=str(root),
            template="sub-%p_%b.xdf",
            task="Rest",
            run=1,
            participant="P01",
            session="S02",
            acquisition="X",
            modality="EEG",
        )
        rcs.send(f"select source_id='c_{uid}'\n".encode())
        rcs.start()
        assert wait_until(lambda: manager.state is State.RECORDING, 10)
        recorder = manager.recorder
        assert wait_until(lambda: _samples(recorder.status(), f"C_{uid}") > 20, 10)
        rcs.stop()
        assert wait_until(lambda: manager.state is State.COMPLETED, 10)
        rcs.s.settimeout(5)
        got = b""
        while len(got) < 8:
            got += rcs.s.recv(64)
        assert got == b"OK" * 4  # the client never reads; replies wait in its buffer
    finally:
        rcs.s.close()
        src.stop()
    folder = manager.session_dir
    assert folder.parent == root
    assert folder.name.startswith("sub-P01_ses-S02_task-Rest_acq-X_run-001_eeg_")
    assert f"C_{uid}" in _xdf_names(folder)


def test_update_lists_visible_streams(server, uid):
    src = RegularSource(f"U_{uid}", f"u_{uid}", channels=1, srate=10).start()
    client = Client(server.address)
    try:
        assert wait_until(
            lambda: (
                client.send("update") == b"OK"
                and any(
                    v["source_id"] == f"u_{uid}" for v in client.status()["visible"]
                )
            ),
            10,
        )
    finally:
        client.close()
        src.stop()


# -------------------------------------------------------------- security


def test_non_loopback_without_token_is_refused(manager):
    with pytest.raises(LslSessionError, match="non-loopback") as info:
        ControlServer(manager, host="0.0.0.0", port=0)
    assert "\n" not in str(info.value)
    ControlServer(manager, host="0.0.0.0", port=0, token="t")  # constructs
    ControlServer(manager, host="localhost", port=0)
    ControlServer(manager, host="::1", port=0)


def test_cli_non_loopback_without_token_fails(session_root):
    from lsl_session.cli import main

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(
            main,
            [
                "record",
                "--root",
                str(session_root),
                "--control-port",
                "0",
                "--control-host",
                "0.0.0.0",
            ],
        )
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "non-loopback" in lines[0]
    assert not [p for p in session_root.iterdir() if not p.name.startswith(".")]


def test_token_required_as_first_line(manager, caplog):
    srv = ControlServer(manager, host="127.0.0.1", port=0, token="s3cret").start()
    try:
        bad = Client(srv.address)
        bad.sock.sendall(b"status\n")
        assert bad._recv_exact(1) == b""  # closed without a reply
        bad.close()
        good = Client(srv.address)
        assert good.send("auth s3cret") == b"OK"
        assert good.status()["state"] == "idle"
        good.close()
    finally:
        srv.stop()
    assert "failed to authenticate" in caplog.text


# ------------------------------------------------------------ robustness


def test_bad_input_neither_crashes_nor_blocks(server, manager, session_root, caplog):
    caplog.set_level(logging.INFO, logger="lsl_session.control")
    idle = [socket.create_connection(server.address) for _ in range(5)]  # silent
    (session_root / "file.txt").write_text("not a folder")
    client = Client(server.address)
    replies = [
        client.send("frobnicate"),
        client.send(b"x" * 1_000_000),
        client.send(bytes(b for b in range(256) if b != 10) * 3),
        client.send("filename {participant:P0"),
        client.send('select name="unterminated'),
        client.send("filename {root:" + str(session_root / "file.txt" / "sub") + "}"),
        client.send(""),
        client.send(r"filename {root:C:\Data\}"),
    ]
    refused = [replies.pop(7), replies.pop(5), replies.pop(4)]  # root, root, select
    assert replies == [b"OK"] * len(replies)
    assert refused[2].startswith(b"ERR select: invalid stream query")
    assert refused[1].startswith(b"ERR filename: cannot create recordings root")
    assert refused[0].startswith(b"ERR filename: unusable recordings root")
    assert manager.base_recordings_dir == session_root
    # a client leaving mid-line, and many clients at once
    leaver = socket.create_connection(server.address)
    leaver.sendall(b"sta")
    leaver.close()
    results: list[str] = []

    def one() -> None:
        c = Client(server.address)
        results.append(c.status()["state"])
        c.close()

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["idle"] * 20
    status = client.status()
    assert status["state"] == "idle"
    assert status["selection"] == []
    client.close()
    for s in idle:
        s.close()
    assert wait_until(lambda: "left mid-line" in caplog.text, 3)
    text = caplog.text
    assert "unknown command 'frobnicate'" in text
    assert "exceeds" in text
    assert "filename line without" in text
    assert "selection unchanged" in text
    assert "cannot create recordings root" in text
    assert "unusable recordings root" in text


def test_too_many_clients_are_refused(manager, caplog):
    caplog.set_level(logging.INFO, logger="lsl_session.control")
    srv = ControlServer(manager, port=0, max_clients=2).start()
    try:
        first, second = Client(srv.address), Client(srv.address)
        assert first.send("") == second.send("") == b"OK"
        third = Client(srv.address)
        third.sock.sendall(b"status\n")
        assert third._recv_exact(1) == b""
        first.close()
        assert wait_until(lambda: "disconnected" in caplog.text, 3)
        assert Client(srv.address).status()["state"] == "idle"
    finally:
        srv.stop()
    assert "too many clients" in caplog.text


def test_quit_calls_on_quit_and_stop_is_idempotent(manager):
    quit_event = threading.Event()
    srv = ControlServer(manager, port=0, on_quit=quit_event.set).start()
    client = Client(srv.address)
    assert client.send("stop") == b"OK"  # nothing to stop
    assert client.send("quit") == b"OK"
    assert quit_event.wait(5)  # called once the reply was sent
    client.close()
    srv.stop()
    srv.stop()


# ------------------------------------------- silent connections (#15 item 6)


def _closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_silent_connections_cannot_hold_every_slot(manager, caplog):
    caplog.set_level(logging.INFO, logger="lsl_session.control")
    srv = ControlServer(manager, port=0).start()  # the default 32 slots
    silent = [socket.create_connection(srv.address) for _ in range(32)]
    try:
        # wait until all 32 hold a slot, so the next ones find the server full
        assert wait_until(lambda: len(srv._clients) == 32, 10)
        served = []
        for _ in range(5):  # each stays connected, so each needs a slot
            client = Client(srv.address)
            assert client.status()["state"] == "idle"  # served, not refused
            served.append(client)
        closed = [s for s in silent if _closed_by_server(s, timeout=0.05)]
        assert len(closed) == 5  # five silent ones made room; the rest stay
        assert all(c.send("") == b"OK" for c in served)
    finally:
        for sock in silent:
            sock.close()
        srv.stop()
    assert caplog.text.count("(silent for") == 5
    assert "too many clients" not in caplog.text


def test_active_clients_are_kept_until_idle(manager, caplog):
    caplog.set_level(logging.INFO, logger="lsl_session.control")
    srv = ControlServer(manager, port=0, max_clients=2, evict_idle_after=1.0).start()
    try:
        first, second = Client(srv.address), Client(srv.address)
        assert first.send("") == second.send("") == b"OK"
        third = Client(srv.address)
        assert _closed_by_server(third.sock)  # both are active: refused
        assert second.send("") == b"OK"  # first is now the longer idle
        time.sleep(1.1)  # first idle > evict_idle_after; second just a bit less
        assert second.send("") == b"OK"
        fourth = Client(srv.address)
        assert fourth.status()["state"] == "idle"
        assert _closed_by_server(first.sock)
        assert second.send("") == b"OK"
    finally:
        srv.stop()
    assert "too many clients; refusing" in caplog.text
    assert "(idle for" in caplog.text


def test_unauthenticated_connection_times_out(manager, caplog):
    srv = ControlServer(manager, port=0, token="t0k", auth_timeout=0.5).start()
    try:
        silent = socket.create_connection(srv.address)
        slow = socket.create_connection(srv.address)
        slow.sendall(b"auth t0")  # never finishes its line
        assert _closed_by_server(silent)
        assert _closed_by_server(slow)
        good = Client(srv.address)
        assert good.send("auth t0k") == b"OK"
        assert good.status()["state"] == "idle"
    finally:
        srv.stop()
    assert caplog.text.count("sent no auth line within") == 2


def test_refused_flood_is_logged_in_summary(manager, caplog):
    caplog.set_level(logging.INFO, logger="lsl_session.control")
    srv = ControlServer(manager, port=0, max_clients=1).start()
    try:
        holder = Client(srv.address)
        assert holder.send("") == b"OK"
        for _ in range(50):
            extra = socket.create_connection(srv.address)
            assert _closed_by_server(extra)
            extra.close()
    finally:
        srv.stop()
    assert caplog.text.count("too many clients; refusing") == 1
