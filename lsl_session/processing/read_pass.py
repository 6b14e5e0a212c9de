"""The sample pass of `load_xdf_files`: Samples chunks into preallocated arrays.

Chunks are read in windows of about `WINDOW_BYTES` (one ``readinto`` each, into a
reused buffer) instead of one read per chunk. In a window, the consecutive chunks
of one stream that hold fixed-size records (8-byte stamps, the layout every
recorder writes) are decoded together: their record bytes are joined, checked
and copied into the stream's arrays in one numpy operation each — no Python per
chunk beyond a slice. Anything else (string streams, deduced stamps, a chunk that
does not fit) goes through `fill_chunk`, one chunk at a time, as before.

Memory: the window buffer (≥ `WINDOW_BYTES`, or the largest chunk) plus one
window's joined records, and at most `WINDOW_CHUNKS` chunk entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.xdf import iter_chunks
from lsl_session.xdf._format import (
    ChunkError,
    ChunkTag,
    decode_varlen,
    sample_record_dtype,
)
from lsl_session.xdf._parse import decode_numeric, decode_strings
from lsl_session.xdf.compressed import open_xdf

#: Bytes of the file read at once (a chunk larger than this is read alone).
WINDOW_BYTES = 8 << 20
#: Chunks decoded per window at most (bounds the entry list of tiny chunks).
WINDOW_CHUNKS = 65_536


def fill_chunk(plan: Any, body: bytes | memoryview, state: dict[str, float]) -> int:
    """Decode one Samples body into the plan's arrays; return the sample count.

    ``body`` may be a view of a reused buffer: nothing decoded from it is kept
    without a copy.
    """
    nch = plan.info.get("channel_count") or 0
    last, tdiff = state["last"], state["tdiff"]
    pos = plan.filled
    if plan.fmt == "string":
        stamps, rows = decode_strings(bytes(body), nch, last, tdiff)
        plan.series.extend(rows)
    else:
        record = sample_record_dtype(plan.fmt, nch)
        n, p = decode_varlen(body)
        arr = None
        if len(body) - p == n * record.itemsize:
            arr = np.frombuffer(body, record, count=n, offset=p)
            if not bool((arr["tsbytes"] == 8).all()):
                arr = None
        if arr is not None:
            stamps, values = arr["stamp"], arr["values"]
        else:
            stamps, values, _ = decode_numeric(bytes(body), record, last, tdiff)
        n = len(stamps)
        if pos + n > plan.capacity:
            raise ChunkError("more samples than the header pass counted")
        plan.series[pos : pos + n] = values
    n = len(stamps)
    plan.stamps[pos : pos + n] = stamps
    if n:
        state["last"] = float(stamps[-1])
    plan.filled = pos + n
    return n


def _flush(plan: Any, state: dict[str, float], parts: list[memoryview], n: int) -> int:
    """Copy ``n`` fixed-size records (the joined ``parts``) into ``plan``.

    Returns the count copied, or -1 if they cannot go in one piece (a record
    without an 8-byte stamp, or more samples than counted): the caller then
    decodes those chunks one by one.
    """
    record = sample_record_dtype(plan.fmt, plan.info.get("channel_count") or 0)
    pos = plan.filled
    if pos + n > plan.capacity:
        return -1
    arr = np.frombuffer(b"".join(parts), record, count=n)
    if not bool((arr["tsbytes"] == 8).all()):
        return -1
    plan.series[pos : pos + n] = arr["values"]
    plan.stamps[pos : pos + n] = arr["stamp"]
    if n:
        state["last"] = float(arr["stamp"][-1])
    plan.filled = pos + n
    return n


def _decode_window(
    path: Path, region: memoryview, base: int, batch: list[tuple[int, int, int, int]],
    by_sid: dict[int, Any], state: dict[int, dict[str, float]],
    counts: dict[int, int], problems: list[str],
) -> None:  # fmt: skip
    """Decode the chunks ``batch`` ((sid, body start, end, chunk offset), in file
    order) whose bytes are ``region``, which starts at file position ``base``."""
    # per stream: its run of fixed-size chunks not yet copied (start, end, offset, p, n)
    pending: dict[int, list[tuple[int, int, int, int, int]]] = {}

    def one(sid: int, start: int, end: int, offset: int) -> None:
        body = region[start - base : end - base]
        try:
            counts[sid] += fill_chunk(by_sid[sid], body, state[sid])
        except ChunkError as err:
            problems.append(
                f"{path.name}: Samples chunk at byte {offset} skipped: {err}"
            )

    def flush(sid: int) -> None:
        items = pending.pop(sid, [])
        if not items:
            return
        parts = [region[a + p - base : b - base] for a, b, _, p, _ in items]
        got = _flush(by_sid[sid], state[sid], parts, sum(k for *_, k in items))
        if got >= 0:
            counts[sid] += got
            return
        for a, b, off, _, _ in items:  # one by one: the exact errors, as before
            one(sid, a, b, off)

    for sid, start, end, offset in batch:
        plan = by_sid[sid]
        if plan.fmt != "string":
            try:
                n, p = decode_varlen(region[start - base : min(end, start + 9) - base])
            except ChunkError:
                n, p = -1, 0
            nch = plan.info.get("channel_count") or 0
            if (
                n >= 0
                and end - start - p == n * sample_record_dtype(plan.fmt, nch).itemsize
            ):
                pending.setdefault(sid, []).append((start, end, offset, p, n))
                continue
        flush(sid)
        one(sid, start, end, offset)
    for sid in list(pending):
        flush(sid)


def read_samples(
    path: Path, by_sid: dict[int, Any], problems: list[str]
) -> dict[int, int]:
    """The sample pass over one file; return the decoded sample count per stream id.

    ``by_sid`` maps the file's stream ids to their plans (``fmt``, ``info``,
    ``capacity``, ``filled``, ``stamps``, ``series``); only Samples chunks after
    their stream's header are read.
    """
    counts = dict.fromkeys(by_sid, 0)
    seen: set[int] = set()
    state = {
        sid: {
            "last": 0.0,
            "tdiff": 1.0 / p.info["nominal_srate"]
            if p.info["nominal_srate"] > 0
            else 0.0,
        }
        for sid, p in by_sid.items()
    }
    buf = bytearray(WINDOW_BYTES)
    batch: list[tuple[int, int, int, int]] = []
    with open_xdf(path) as fh:

        def decode() -> None:
            nonlocal buf
            if not batch:
                return
            base, stop = batch[0][1], batch[-1][2]
            if stop - base > len(buf):  # one chunk larger than the window
                buf = bytearray(stop - base)
            fh.seek(base)
            got = fh.readinto(memoryview(buf)[: stop - base]) or 0
            region = memoryview(buf)[:got]
            _decode_window(path, region, base, batch, by_sid, state, counts, problems)
            batch.clear()

        for chunk in iter_chunks(fh):
            sid = chunk.stream_id
            if chunk.tag == ChunkTag.STREAM_HEADER:
                seen.add(sid)
            if chunk.tag != ChunkTag.SAMPLES or sid not in by_sid or sid not in seen:
                continue
            start = chunk.content_offset + 4
            if batch and (
                chunk.end - batch[0][1] > WINDOW_BYTES or len(batch) >= WINDOW_CHUNKS
            ):
                decode()
            batch.append((sid, start, chunk.end, chunk.offset))
        decode()
    return counts
