"""A phone that drops while the session records is ``disconnected`` with its time.

Real relay (in this process, following a real session), real phone simulators
over sockets, the real recorder. The phone that stays ends ``stopped`` with the
recording; metadata, verdict and report agree.
"""

from __future__ import annotations

import json
import time

from lsl_helpers import wait_until

from lsl_session.manager import SessionManager
from lsl_session.report.verdict import device_status_text
from outlets.phone import PhoneRelay, PhoneSimulator


def test_a_phone_dropped_during_recording_is_disconnected(tmp_path, uid):
    stays, drops = f"stays_{uid}", f"drops_{uid}"
    mgr = SessionManager(tmp_path / "rec")
    mgr.create_session("status")
    relay = PhoneRelay(tokens={stays: "t", drops: "t"}, session=mgr.session_dir)
    relay.start()
    sims = {
        d: PhoneSimulator("127.0.0.1", relay.port, d, "t", seed=i,
                          capabilities=("gsr_data",))
        for i, d in enumerate((stays, drops))
    }  # fmt: skip
    try:
        for sim in sims.values():
            sim.start()
        assert all(relay.wait_ready(d) for d in sims)
        mgr.start_recording([f"starts-with(source_id, 'lsl_session/{d}/')"
                             for d in sims])  # fmt: skip
        time.sleep(1.5)
        sims[drops].stop()  # the phone goes away while the session records

        def dropped() -> bool:
            info = mgr.session.metadata()["devices"].get(drops, {})
            return info.get("status") == "disconnected"

        assert wait_until(dropped, 10)
        time.sleep(0.5)
        mgr.stop_recording()
    finally:
        for sim in sims.values():
            sim.stop()
        relay.stop()
    mgr.end_session()
    folder = mgr.session_dir
    mgr.close()
    meta = json.loads((folder / "session_metadata.json").read_text())
    gone, kept = meta["devices"][drops], meta["devices"][stays]
    assert gone["status"] == "disconnected" and gone["disconnected_time"]
    assert kept["status"] == "stopped"  # its connection ended with the recording
    assert device_status_text(gone) == f"disconnected at {gone['disconnected_time']}"
    saved = json.loads((folder / "processing" / "verdict.json").read_text())
    assert "1 devices disconnected" in saved["verdict"]
    assert any(n.startswith(f"{drops}: disconnected at") for n in saved["notes"])
    assert not any(n.startswith(f"{stays}:") for n in saved["notes"])
    page = (folder / "processing" / "report.html").read_text()
    assert f"disconnected at {gone['disconnected_time']}" in page
    assert "<td>completed</td>" in page
