"""The JSON event log: validity, O(1) appends, threads, observers, LSL stream."""

from __future__ import annotations

import json
import threading

import pylsl
import pytest

from lsl_session.errors import LslSessionError
from lsl_session.events import EventLogFile, SessionLogger
from lsl_session.session import Session, create_session_folder


@pytest.fixture
def session(session_root):
    s = Session(create_session_folder(session_root, "events"))
    yield s
    s.close()


def test_event_fields_and_valid_after_every_event(session):
    for i in range(5):
        entry = session.log_event("marker", {"label": f"m{i}", "event": "ignored"})
        events = json.loads(session.paths.log.read_bytes())
        assert events[-1] == entry
        assert len(events) == i + 1
    assert entry["event"] == "marker"
    assert entry["session"] == session.session_id
    assert len(entry["time"]) == 12 and entry["time"][8] == "."
    assert "." in entry["timestamp"] and entry["lsl_time"] > 0


def test_unknown_event_and_error_category_rejected(session):
    before = session.paths.log.read_bytes()
    with pytest.raises(LslSessionError, match="unknown event type"):
        session.log_event("bogus")
    with pytest.raises(LslSessionError, match="category"):
        session.log_event("error", {"message": "x"})
    with pytest.raises(LslSessionError, match="category"):
        session.log_event("error", {"category": "cosmic"})
    assert session.paths.log.read_bytes() == before
    session.log_event("error", {"category": "device", "message": "lost"})


def test_torn_log_gives_clear_error(session):
    session.log_event("marker", {"label": "a"})
    data = session.paths.log.read_bytes()
    session.paths.log.write_bytes(data[:-5])
    with pytest.raises(LslSessionError, match="recover"):
        session.log_event("marker", {"label": "b"})


def test_sixteen_threads_lose_nothing(session):
    n_threads, per_thread = 16, 2000

    def work(t):
        for i in range(per_thread):
            session.log_event("marker", {"thread": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = json.loads(session.paths.log.read_bytes())
    assert len(events) == n_threads * per_thread
    seen = {(e["thread"], e["i"]) for e in events}
    assert len(seen) == n_threads * per_thread
    for t in range(n_threads):  # per-thread order is preserved
        mine = [e["i"] for e in events if e["thread"] == t]
        assert mine == sorted(mine)


def test_two_writers_on_one_file(session):
    other = EventLogFile(session.paths.log, session.paths.lock)
    session.log_event("marker", {"label": "a"})
    other.append({"event": "marker", "label": "b"})
    session.log_event("marker", {"label": "c"})
    labels = [e["label"] for e in json.loads(session.paths.log.read_bytes())]
    assert labels == ["a", "b", "c"]


def test_observers(session):
    seen, errors = [], []
    session.logger.subscribe("entry_added", lambda e: seen.append(e["event"]))
    session.logger.subscribe("error_logged", lambda e: errors.append(e["message"]))

    def broken(_):
        raise RuntimeError("observer bug")

    session.logger.subscribe("entry_added", broken)
    session.log_event("marker", {"label": "x"})
    session.log_event("error", {"category": "file", "message": "gone"})
    assert seen == ["marker", "error"]
    assert errors == ["gone"]
    with pytest.raises(LslSessionError):
        session.logger.subscribe("nope", print)


def test_events_arrive_on_lsl_marker_stream(session_root):
    folder = create_session_folder(session_root, "lslevents")
    session = Session(folder, lsl_outlet=True)
    found = pylsl.resolve_byprop("source_id", session.logger.stream_source_id, 1, 5.0)
    assert found, "session marker stream not visible"
    info = found[0]
    assert info.type() == "Markers"
    assert info.name() == f"{session.session_id}_events"
    inlet = pylsl.StreamInlet(info)
    inlet.open_stream(5.0)
    sent = [session.log_event("marker", {"label": f"m{i}"}) for i in range(50)]
    received = []
    while len(received) < 50:
        sample, ts = inlet.pull_sample(timeout=5.0)
        assert sample is not None, f"only {len(received)} of 50 events arrived"
        received.append((json.loads(sample[0]), ts))
    assert [e["label"] for e, _ in received] == [f"m{i}" for i in range(50)]
    assert [ts for _, ts in received] == [e["lsl_time"] for e in sent]
    inlet.close_stream()
    session.close()


def test_logger_without_outlet_does_not_import_side_effects(session):
    logger = SessionLogger(
        session.session_id, session.logger.log_file, lsl_outlet=False
    )
    logger.log_event("marker", {"label": "quiet"})
    assert logger.get_events()[-1]["label"] == "quiet"
