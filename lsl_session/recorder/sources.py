"""Which outlet a recorded stream's data comes from, and when that changes.

liblsl's inlet recovery re-attaches an inlet whose outlet vanished to any outlet
answering the same query (same name, type and source_id): a restarted device, or
another process, host or rig publishing that source_id. The inlet's own info
keeps the first outlet's uid, so the recorder compares its streams with what its
resolves see: when a stream's current outlet (uid) no longer answers and another
outlet with its source_id does, the data now comes from that one. The change is
logged as a ``stream_source_changed`` event with the stamp discontinuity it made.
"""

from __future__ import annotations

import logging
from typing import Any

import pylsl

from lsl_session.lsl import sort_key, stream_key

logger = logging.getLogger(__name__)


def source_changes(
    streams: list[Any], found: list[pylsl.StreamInfo], now: float, *, fresh: bool
) -> list[dict[str, Any]]:
    """The streams whose outlet changed, as ``stream_source_changed`` details.

    Parameters
    ----------
    streams : list of PooledStream
        The open streams (only those with a source_id can change source: a
        stream without one that returns is a new stream).
    found : list of pylsl.StreamInfo
        The outlets a resolve just saw.
    now : float
        The recorder's ``local_clock()``.
    fresh : bool
        Whether ``found`` is one fresh resolve (every outlet in it is alive
        now); a continuous resolver's results may hold an outlet that vanished
        seconds ago, so they never make two outlets rivals.
    """
    by_key: dict[str, list[pylsl.StreamInfo]] = {}
    for info in found:
        by_key.setdefault(stream_key(info), []).append(info)
    changes = []
    for stream in streams:
        if not stream.source_id:
            continue
        visible = by_key.get(f"source:{stream.source_id}")
        current = stream.sources[-1]["uid"]
        if not visible:
            continue  # nothing answers (yet): nothing changed
        if any(i.uid() == current for i in visible):
            # still there; other outlets with its source_id are rivals: if the
            # data moves to one of them it is no restart of this device
            if fresh and len(stream.rivals) < 32:
                stream.rivals.update(i.uid() for i in visible if i.uid() != current)
            continue
        visible = sorted(
            visible, key=lambda i: (i.uid() not in stream.rivals, *sort_key(i))
        )
        rival = visible[0].uid() in stream.rivals
        change = stream.note_source(visible[0], now)
        if change is None:
            continue
        if rival:  # it ran alongside the old outlet: another device or process
            change["restart"] = False
            change["concurrent"] = True
        if len(visible) > 1:
            change["candidates"] = [
                {"uid": i.uid(), "hostname": i.hostname()} for i in visible[:8]
            ]
        changes.append(change)
    return changes


def shared_source_ids(found: list[pylsl.StreamInfo]) -> list[str]:
    """Lines naming every source_id (or name) more than one outlet publishes.

    Several outlets with one source_id: the recorder records one, and liblsl may
    switch to another when it vanishes. Several hosts with one stream name: a
    query by name records them all, each as its own stream.
    """
    lines = []
    by_source: dict[str, list[pylsl.StreamInfo]] = {}
    by_name: dict[str, list[pylsl.StreamInfo]] = {}
    for info in found:
        if info.source_id():
            by_source.setdefault(info.source_id(), []).append(info)
        by_name.setdefault(info.name(), []).append(info)
    for sid, infos in sorted(by_source.items()):
        if len(infos) > 1:
            hosts = ", ".join(sorted({i.hostname() for i in infos}))
            lines.append(
                f"source_id {sid!r} is published by {len(infos)} outlets"
                f" (host {hosts}): one is recorded; if it vanishes liblsl may"
                " switch to another (logged as stream_source_changed)"
            )
    for name, infos in sorted(by_name.items()):
        hosts = sorted({i.hostname() for i in infos})
        if len(hosts) > 1:
            lines.append(
                f"stream name {name!r} comes from {len(hosts)} hosts"
                f" ({', '.join(hosts)}): select by hostname or source_id"
                " to record only one"
            )
    return lines
