"""The lab's identified sync pulses in real runs: a delayed stream is caught, and only it.

The demo lab (real relay, phone simulators over sockets, the Shimmer emulator
through pyshimmer, the synthetic webcam, the marker stream; every pulse with an
id: ``sync_pulse k`` markers, ``sync_flash k`` from the phones) runs in this
process with one phone stamping its GSR 30 ms late, as an app that stamps at
send time instead of capture time would.
"""

from __future__ import annotations

import json
import re

import pytest

from lsl_session.config import load_config
from lsl_session.lab import LabOptions, LabRun, demo_toml
from lsl_session.signals import StopRequest


def _lab(tmp_path, uid, duration=10.0):
    text = demo_toml(phones=2, duration=duration)
    text = re.sub(r'id = "(phone_\d|shimmer_1)"', rf'id = "\1x{uid}"', text)
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return load_config(path, simulate=True)


@pytest.mark.parametrize("delayed", ["gsr"])
def test_a_phone_stream_delayed_by_30_ms_is_caught_and_no_other(tmp_path, uid, delayed):
    config = _lab(tmp_path, uid)
    phone = next(d for d in config.devices if d.device_id.startswith("phone_1"))
    phone.options["stamp_delay_ms"] = {delayed: 30.0}
    lines: list[str] = []
    result = LabRun(config, LabOptions(root=tmp_path / "rec"), lines.append).run(
        StopRequest()
    )
    folder = result.folder
    report = json.loads((folder / "processing/sync_check/sync_check.json").read_text())
    rows = {r["stream"]: r for r in report["streams"]}
    late = f"{phone.device_id}_{delayed}"
    assert rows[late]["aligned"] == "NO", rows[late]
    assert rows[late]["offset_ms"] == pytest.approx(30.0, abs=5.0)
    others = {n: r["aligned"] for n, r in rows.items() if n != late}
    assert set(others.values()) == {"yes"}, others
    # the phones' events carry the lab's pulse ids and were matched by them
    events = rows[f"{phone.device_id}_events"]
    assert events["matched_by"] == "id" and events["n_matched"] >= 1
    verdict = json.loads((folder / "processing" / "verdict.json").read_text())
    n = len(rows)
    assert f"{n - 1}/{n} sync-checked streams aligned" in verdict["verdict"]
    assert any(v.startswith(f"{late}: NOT aligned") for v in verdict["notes"])
