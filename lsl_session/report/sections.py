"""Report sections a scientist reads: each data stream, internal streams, rates.

- **Data streams**: every channel with its name, unit, type, range and check (flat
  or clipped, `lsl_session.channel_checks`), drawn as small multiples with a y
  scale, in pages of `channel_figures.CHANNELS_PER_FIGURE` channels, each page a
  ``<details>`` element (the first open): a channel selector that needs no script.
  Marker streams: their labelled ticks and a table of the first `MAX_MARKER_ROWS`.
- **Internal streams** (the session's event stream, a phone's ``_clock`` and
  ``_clock_exchanges``): listed in their own section, never plotted as data.
- **Rates**: a regular stream whose delivered rate (median stamp interval) is
  within `RATE_OK` of nominal reads ``ok``, the others ``15 of 30 Hz (−50.00 %)``.

Every text from the recording is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import numpy as np

from lsl_session import channel_checks as checks
from lsl_session.channel_checks import ChannelFlag, channel_flags
from lsl_session.processing import tables
from lsl_session.report import channel_figures

#: What each internal stream type (`channel_checks.INTERNAL_TYPES`) is.
INTERNAL_TYPES = {"clockmapping": "phone clock mapping (live knots)",
                  "clockexchanges": "phone clock exchanges (t1–t4)"}  # fmt: skip
assert set(INTERNAL_TYPES) == set(checks.INTERNAL_TYPES)
#: Relative rate deviation shown as ``ok``.
RATE_OK = 0.001
#: Marker rows listed per marker stream.
MAX_MARKER_ROWS = 200
#: Data streams given a section (the rest are listed).
MAX_SECTIONS = 48


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="figure" alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    klass = f" class='{cls}'" if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def internal_kind(stream: Any, session_id: str | None) -> str | None:
    """What an internal stream is, or None for a data stream."""
    if tables.is_session_event_stream(stream, session_id):
        return "session events (the event log as an LSL stream)"
    return INTERNAL_TYPES.get((stream.type or "").strip().lower())


def _label(stream: Any, k: int) -> str:
    labels = stream.channel_labels
    return (labels[k] if k < len(labels) else "") or f"ch{k + 1}"


def _unit(stream: Any, k: int) -> str:
    return stream.channel_units[k] if k < len(stream.channel_units) else ""


def stream_flags(stream: Any) -> list[ChannelFlag]:
    """Flat and clipped channels of a numeric stream (none for others)."""
    if stream.is_string or not tables.is_numeric(stream) or not len(stream.time_stamps):
        return []
    return channel_flags(np.asarray(stream.time_series))


def flag_texts(streams: list[Any], session_id: str | None) -> list[str]:
    """``<stream> <channel>: flat at …`` for every flagged channel of a data stream."""
    out = []
    for s in streams:
        if internal_kind(s, session_id) is None:
            out += [f"{s.name} {f.text(_label(s, f.channel), _unit(s, f.channel))}"
                    for f in stream_flags(s)]  # fmt: skip
    return out


def measured_rate(stream: Any) -> float:
    """The rate a regular stream delivered: 1 / its median stamp interval (Hz).

    Gaps do not lower it (they are loss, counted apart); a steady shortfall does.
    """
    t = np.asarray(stream.time_stamps, dtype=np.float64)
    if t.size < 3:
        return 0.0
    step = float(np.median(np.diff(t)))
    return 1.0 / step if step > 0 else 0.0


def rate_text(stream: Any) -> str:
    """``ok`` within `RATE_OK` of nominal, else ``15.0 of 30 Hz (−50.0 %)``."""
    nominal, rate = stream.nominal_srate, measured_rate(stream)
    if nominal <= 0:
        return "irregular"
    if not rate:
        return "n/a"
    dev = rate / nominal - 1
    if abs(dev) < RATE_OK:
        return "ok"
    return f"{rate:.4g} of {nominal:g} Hz ({dev * 100:+.2f} %)"


def _numeric_section(s: Any, t0: float) -> str:
    values = np.asarray(s.time_series)
    mins, maxs, present = (checks.finite_range(values) if values.ndim == 2
                           else (np.zeros(0), np.zeros(0), np.zeros(0, bool)))  # fmt: skip
    flags = {f.channel: f for f in stream_flags(s)}
    rows = []
    for k in range(s.channel_count):
        fin = k < len(present) and bool(present[k])
        flag = flags.get(k)
        rows.append([
            k + 1, _label(s, k), _unit(s, k) or "—",
            (s.channel_types[k] if k < len(s.channel_types) else "") or s.type,
            f"{mins[k]:.6g}" if fin else "—",
            f"{maxs[k]:.6g}" if fin else "—",
            flag.text(_label(s, k), _unit(s, k)).split(": ", 1)[1] if flag else "ok",
        ])  # fmt: skip
    parts = [_table(["#", "channel", "unit", "type", "min", "max", "check"], rows,
                    "channels")]  # fmt: skip
    shown = list(range(min(s.channel_count, channel_figures.MAX_CHANNELS)))
    step = channel_figures.CHANNELS_PER_FIGURE
    pages = [shown[i : i + step] for i in range(0, len(shown), step)]
    for n, picks in enumerate(pages):
        first, last = _label(s, picks[0]), _label(s, picks[-1])
        title = (f"channels {picks[0] + 1}–{picks[-1] + 1} of {s.channel_count} "
                 f"({first} … {last})")  # fmt: skip
        png = channel_figures.channels(s, t0, picks)
        parts.append(f"<details{' open' if n == 0 else ''}><summary>{_esc(title)}"
                     f"</summary>{_img(png, f'{s.name} {title}')}</details>")  # fmt: skip
    if s.channel_count > len(shown):
        parts.append(f"<p>Channels beyond {len(shown)} are not drawn (the table lists "
                     "every channel).</p>")  # fmt: skip
    return "".join(parts)


def _marker_section(s: Any, t0: float) -> str:
    parts = [_img(channel_figures.markers(s, t0), f"{s.name} markers")]
    rows = [[f"{t - t0:.6f}", "/".join(map(str, v))]
            for t, v in zip(s.time_stamps[:MAX_MARKER_ROWS],
                            s.time_series[:MAX_MARKER_ROWS], strict=False)]  # fmt: skip
    more = f" (first {MAX_MARKER_ROWS})" if len(s.time_stamps) > MAX_MARKER_ROWS else ""
    parts.append(f"<details><summary>{len(s.time_stamps)} markers{more}</summary>"
                 f"{_table(['time (s)', 'marker'], rows)}</details>")  # fmt: skip
    return "".join(parts)


def data_sections(data: Any) -> str:
    """One section per data stream (see the module docstring)."""
    streams = [s for s in data.streams if internal_kind(s, data.session_id) is None]
    parts = []
    for s in streams[:MAX_SECTIONS]:
        rate = "irregular" if s.nominal_srate <= 0 else f"{s.nominal_srate:g} Hz"
        head = (f"<h3 id='stream-{_esc(tables.stream_keys([s])[0])}'>{_esc(s.name)}</h3>"
                f"<p class='meta'>type {_esc(s.type or '—')} · {_esc(rate)} · "
                f"{len(s.time_stamps)} samples · {s.channel_count} channel(s) · "
                f"rate {_esc(rate_text(s))}</p>")  # fmt: skip
        if not len(s.time_stamps):
            body = "<p>(no samples)</p>"
        elif s.is_string:
            body = _marker_section(s, data.t0)
        elif tables.is_numeric(s):
            body = _numeric_section(s, data.t0)
        else:
            body = "<p>(not drawn: not numeric)</p>"
        parts.append(f"<section class='stream'>{head}{body}</section>")
    if len(streams) > MAX_SECTIONS:
        rest = ", ".join(s.name for s in streams[MAX_SECTIONS:])
        parts.append(
            f"<p>Not drawn (more than {MAX_SECTIONS} streams): {_esc(rest)}</p>"
        )
    return "".join(parts)


def internal_section(data: Any) -> str:
    """The internal streams, listed (never plotted as data)."""
    rows = [[s.name, s.type, s.source_id, len(s.time_stamps), kind]
            for s in data.streams
            if (kind := internal_kind(s, data.session_id)) is not None]  # fmt: skip
    if not rows:
        return "<p>(none)</p>"
    return _table(["name", "type", "source_id", "samples", "what it is"], rows)


def rate_rows(streams: list[Any], session_id: str | None) -> list[list[Any]]:
    """Per regular data stream: nominal, delivered (median interval), pyxdf's
    effective rate, and ``ok`` or the deviation."""
    return [[s.name, f"{s.nominal_srate:g}", f"{measured_rate(s):.4f}",
             f"{s.effective_srate:.4f}", rate_text(s)]
            for s in streams
            if s.nominal_srate > 0 and internal_kind(s, session_id) is None]  # fmt: skip
