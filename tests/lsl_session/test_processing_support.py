"""Helpers for the processing tests: synthetic recordings and sessions (no tests here).

The synthetic recorder clock T is "true" time. Stream k's clock is
``s = T - off_k(T)`` with ``off_k(T) = o_k + drift_k * (T - T0)``; clock offsets are
written LabRecorder-style: CollectionTime = s, OffsetValue = off.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsl_session.session import create_session_folder
from lsl_session.xdf import XdfWriter

T0 = 5000.0
SINE_HZ = 1.5


def stream_xml(name, stype, fmt, channels, srate, source_id=None, extra_desc=""):
    chans = "".join(
        f"<channel><label>{lbl}</label><unit>{unit}</unit><type>{ctype}</type></channel>"
        for lbl, unit, ctype in channels
    )
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>{stype}</type>'
        f"<channel_count>{len(channels)}</channel_count>"
        f"<nominal_srate>{srate}</nominal_srate><channel_format>{fmt}</channel_format>"
        f"<source_id>{source_id or 'src_' + name}</source_id><hostname>h</hostname>"
        f"<desc><channels>{chans}</channels>{extra_desc}</desc></info>"
    )


class Clock:
    def __init__(self, offset, drift_ppm, reset_at=None, reset_by=0.0):
        self.offset, self.drift = offset, drift_ppm * 1e-6
        self.reset_at, self.reset_by = reset_at, reset_by

    def off(self, T):
        T = np.asarray(T, float)
        off = self.offset + self.drift * (T - T0)
        if self.reset_at is not None:
            off = off + np.where(T >= self.reset_at, self.reset_by, 0.0)
        return off

    def local(self, T):
        return np.asarray(T, float) - self.off(T)


def sine(T):
    return np.sin(2 * np.pi * SINE_HZ * (np.asarray(T) - T0))


def make_streams(duration=6.0, seed=0, session_id="sess_20250101_000000", reset=False):
    """Stream specs: (id, xml, fmt, local stamps, values, clock, true times)."""
    rng = np.random.default_rng(seed)
    specs = []
    clock_a = Clock(-2.5, 40.0)
    clock_b = Clock(
        3.25, -60.0, reset_at=T0 + duration / 2 if reset else None, reset_by=700.0
    )
    # stream A: GSR-like, 100 Hz, float32, sine + ppg
    Ta = T0 + 0.013 + np.arange(int(duration * 100)) / 100.0
    va = np.column_stack([5 + sine(Ta), 100 * sine(Ta)]).astype(np.float32)
    sa = clock_a.local(Ta) + rng.normal(0, 2e-4, len(Ta))
    specs.append(
        (
            1,
            stream_xml(
                "gsr_a",
                "GSR",
                "float32",
                [("GSR", "uS", "GSR"), ("PPG", "mV", "PPG")],
                100,
            ),
            "float32",
            sa,
            va,
            clock_a,
            Ta,
        )
    )
    # stream B: 250 Hz double, the same sine, another clock
    Tb = T0 + 0.002 + np.arange(int(duration * 250)) / 250.0
    vb = sine(Tb)[:, None]
    sb = clock_b.local(Tb) + rng.normal(0, 2e-4, len(Tb))
    specs.append(
        (
            2,
            stream_xml("sine_b", "Misc", "double64", [("sine", "a.u.", "misc")], 250),
            "double64",
            sb,
            vb,
            clock_b,
            Tb,
        )
    )
    # stream C: markers on clock A
    Tc = T0 + np.array([0.5, 1.25, 2.0, 4.5])
    specs.append(
        (
            3,
            stream_xml("stim", "Markers", "string", [("marker", "", "Markers")], 0),
            "string",
            clock_a.local(Tc),
            [[f"m{k}"] for k in range(len(Tc))],
            clock_a,
            Tc,
        )
    )
    # stream D: the session event stream, recorder clock (offset 0)
    Td = T0 + np.array([0.1, 3.0])
    events = [
        json.dumps({"event": "marker", "label": "block_1"}),
        json.dumps({"event": "stimulus_play", "file": "a.wav"}),
    ]
    specs.append(
        (
            4,
            stream_xml(
                f"{session_id}_events",
                "Markers",
                "string",
                [("event", "json", "Markers")],
                0,
                source_id=f"lsl_session/{session_id}/events",
            ),
            "string",
            Td,
            [[e] for e in events],
            Clock(0.0, 0.0),
            Td,
        )
    )
    return specs, (Ta, Tb, Tc, Td)


def write_xdf(path, specs, *, duration=6.0, parts=1, offset_noise=2e-5, seed=1):
    """Write ``specs`` as one file, or the same chunks split over ``parts`` files."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    ops = []
    for T in np.arange(T0 - 1, T0 + duration + 1, 0.5):
        for sid, _xml, _fmt, stamps, values, clock, true in specs:
            sel = (true >= T) & (true < T + 0.5)
            if sel.any():
                vals = (
                    values[sel]
                    if not isinstance(values, list)
                    else [values[i] for i in np.flatnonzero(sel)]
                )
                ops.append(("samples", sid, stamps[sel], vals))
            if abs((T - T0) % 2.0) < 1e-9:
                off = float(clock.off(T)) + rng.normal(0, offset_noise)
                ops.append(("offset", sid, float(clock.local(T)), off))
        if abs((T - T0) % 5.0) < 1e-9:
            ops.append(("boundary",))
    paths = [path] + [
        path.with_name(f"{path.stem}_part{k:03d}.xdf") for k in range(2, parts + 1)
    ]
    bounds = np.linspace(0, len(ops), parts + 1).astype(int)
    for k, p in enumerate(paths):
        with XdfWriter(p) as w:
            for sid, xml, *_ in specs:
                w.write_stream_header(sid, xml)
            for op in ops[bounds[k] : bounds[k + 1]]:
                if op[0] == "samples":
                    w.write_samples(op[1], op[2], op[3])
                elif op[0] == "offset":
                    w.write_clock_offset(op[1], op[2], op[3])
                else:
                    w.write_boundary()
            w.write_stream_footers()
    return paths


def make_session(
    root, *, name="proc", reset=False, parts=1, start_lsl=T0, duration=6.0
):
    """A session folder holding a synthetic recording; return (folder, specs, true times)."""
    folder = create_session_folder(root, name)
    sid = folder.name
    specs, true = make_streams(duration=duration, session_id=sid, reset=reset)
    paths = write_xdf(folder / f"{sid}.xdf", specs, duration=duration, parts=parts)
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"].update(
        xdf_files=[p.name for p in paths],
        start_lsl_time=start_lsl,
        start_time="2025-01-01T10:00:00.000000+00:00",
    )
    meta_path.write_text(json.dumps(meta))
    return folder, specs, true
