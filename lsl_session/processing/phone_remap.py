"""Offline re-mapping of phone streams from their recorded clock exchanges.

The phone relay stamps each phone sample live, with the mapping it had then
(causal: a trailing window, slewed). It also publishes, per phone,
``<device>_clock`` (the knots of that live mapping) and
``<device>_clock_exchanges`` (every four-timestamp exchange), so the recording
holds everything needed to do better afterwards:

1. each sample's phone time is recovered exactly by inverting the live mapping
   (`lsl_session.clocksync.PiecewiseMapping.invert`) on its recorded stamp;
2. a non-causal fit over the whole session (`lsl_session.clocksync.fit_offline`:
   both envelopes in a centred window around knots every 5 s, split at clock
   steps) maps it again;
3. the new stamps go through the stream's own clock-offset sync and dejitter,
   exactly as the live ones did in loading.

Sessions whose exchanges span less than `MIN_REMAP_SPAN_S` keep the live stamps
(the report says why). ``mode="live"`` keeps the relay's stamps (they are the
ones pyxdf shows). The
report (in the ``phone_clock`` processing step, the sync report and the sync
check) states per phone which mapping was used, the live mapping's evidence and
how far the re-mapping moved the stamps.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lsl_session.clocksync import (
    PRIOR_DRIFT,
    PiecewiseMapping,
    exchange_terms,
    find_steps,
    fit_offline,
)
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.sync import (
    ClockFit,
    apply_clock_sync,
    can_drop_samples,
    dejitter,
)

logger = logging.getLogger(__name__)

MODES = ("remap", "live")
CLOCK_TYPE = "ClockMapping"
EXCHANGES_TYPE = "ClockExchanges"
#: Least span of recorded exchanges for a re-mapping. Shorter sessions keep the
#: live stamps: over ~30 s the best exchanges bound the drift only to ±20–30 ppm,
#: and a whole-session line is then no better than the live mapping, which
#: re-anchors its offset at every exchange.
MIN_REMAP_SPAN_S = 60.0
#: Least standard deviation of the prior the live slope gives the offline fit.
MIN_LIVE_PRIOR = 2e-6


def _column(stream: SyncedStream, label: str) -> np.ndarray:
    values = np.asarray(stream.time_series, dtype=np.float64)
    if label not in stream.channel_labels or values.size == 0:
        return np.zeros(0)
    return values[:, stream.channel_labels.index(label)]


def phone_clocks(streams: list[SyncedStream]) -> dict[str, dict[str, Any]]:
    """Per phone with recorded clock evidence: its clock streams and data streams."""
    by_name = {s.name: s for s in streams}
    found = {}
    for s in streams:
        if s.type != EXCHANGES_TYPE or not s.name.endswith("_clock_exchanges"):
            continue
        device = s.name[: -len("_clock_exchanges")]
        knots = by_name.get(f"{device}_clock")
        if knots is not None and knots.type != CLOCK_TYPE:
            knots = None
        # lsl_session/[<rig>/]<device>/clock_exchanges: the device's own prefix
        prefix = s.source_id.rsplit("/", 1)[0] + "/"
        if not s.source_id.endswith("/clock_exchanges"):
            prefix = f"lsl_session/{device}/"
        data = [
            d
            for d in streams
            if d.raw_time_stamps is not None
            and d.source_id.startswith(prefix)
            and d.type not in (CLOCK_TYPE, EXCHANGES_TYPE)
        ]
        found[device] = {"exchanges": s, "knots": knots, "data": data}
    return found


def live_summary(knots: SyncedStream | None) -> dict[str, Any]:
    """What the ``<device>_clock`` stream says about the live mapping."""
    if knots is None or len(knots.time_stamps) == 0:
        return {"knots": 0}
    unc = _column(knots, "uncertainty_s") * 1e3
    band = _column(knots, "band_s") * 1e3
    slope = _column(knots, "fit_slope")
    used = _column(knots, "exchanges_used")
    return {
        "knots": len(knots.time_stamps),
        "offset_s": float(_column(knots, "offset_s")[-1]),
        "drift_ppm": float((1.0 / (1.0 + slope[-1]) - 1.0) * 1e6),  # latest fit
        "uncertainty_ms_median": float(np.median(unc)),
        "uncertainty_ms_max": float(np.max(unc)),
        "band_ms_median": float(np.median(band)),
        "exchanges_used_median": float(np.median(used)),
        "clock_steps": int(np.max(_column(knots, "resets"), initial=0)),
    }


def _live_mapping(knots: SyncedStream) -> PiecewiseMapping:
    p = _column(knots, "phone_time")
    order = np.argsort(p, kind="stable")
    return PiecewiseMapping(
        p[order], _column(knots, "offset_s")[order], _column(knots, "slope")[order]
    )


def _resync(stream: SyncedStream, raw: np.ndarray) -> None:
    """Clock-sync and dejitter new raw stamps as loading did (in place on stream)."""
    stamps = np.array(raw, dtype=np.float64)
    n = len(stamps)
    ranges = (stream.fit or {}).get("ranges") or []
    if n and ranges and len(stream.clock_times):
        fits = [ClockFit(**r) for r in ranges]
        stream.clock_segments = apply_clock_sync(stamps, stream.clock_times, fits)
    srate = stream.nominal_srate
    if n and srate == 0:
        stream.segments = [(0, n - 1)]
    elif n and can_drop_samples(stream.info):
        stream.segments = [(0, n - 1)]
        duration = stamps[-1] - stamps[0] if n > 1 else 0.0
        stream.effective_srate = (n - 1) / duration if duration > 0 else 0.0
    elif n:
        stream.segments, stream.effective_srate = dejitter(stamps, srate)
    stream.time_stamps = stamps


def remap_phone_streams(
    streams: list[SyncedStream], mode: str = "remap"
) -> dict[str, Any]:
    """Re-map every phone stream from its recorded exchanges (``mode="remap"``).

    Streams are changed in place; each phone data stream gets
    ``fit["phone_clock"]`` saying which mapping its stamps use.

    Returns
    -------
    dict
        ``{"mode": mode, "phones": {device: {...}}}``: per phone the live
        mapping's evidence (`live_summary`), the exchange count, and for a
        re-mapping ``remap`` (status, clock steps found, knots, and the
        remapped − live stamp shift in ms per stream).

    Raises
    ------
    ValueError
        For an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"phone clock mode must be one of {MODES}, got {mode!r}")
    phones: dict[str, Any] = {}
    for device, found in phone_clocks(streams).items():
        ex = np.asarray(found["exchanges"].time_series, dtype=np.float64)
        ex = ex[:, :4] if ex.ndim == 2 and ex.shape[1] >= 4 else np.zeros((0, 4))
        entry: dict[str, Any] = {
            "exchanges": len(ex),
            "live": live_summary(found["knots"]),
            "streams": [d.name for d in found["data"]],
            "used": "live",
        }
        phones[device] = entry
        for d in found["data"]:
            d.fit["phone_clock"] = {"device": device, "mapping": "live"}
        if mode == "live":
            continue
        if found["knots"] is None or len(found["knots"].time_stamps) == 0:
            entry["remap"] = {"status": "skipped", "reason": "no live-mapping knots"}
            continue
        x, up, down, keep = exchange_terms(ex)
        span = float(np.ptp(x[keep])) if keep.any() else 0.0
        if span < MIN_REMAP_SPAN_S:
            entry["remap"] = {
                "status": "skipped",
                "reason": f"exchanges span {span:.0f} s < {MIN_REMAP_SPAN_S:.0f} s: "
                "the live mapping is as good",
            }
            continue
        # the live fit saw the exchanges before the recording too: its latest
        # slope (± its error) is the prior of the whole-session fit
        slopes = _column(found["knots"], "fit_slope")
        errs = _column(found["knots"], "slope_err")
        sigma = max(float(errs[-1]) if errs.size else PRIOR_DRIFT, MIN_LIVE_PRIOR)
        try:
            offline = fit_offline(ex, prior_slope=float(slopes[-1]), prior_drift=sigma)
        except ValueError as err:
            entry["remap"] = {"status": "skipped", "reason": str(err)}
            continue
        steps = len(find_steps(x[keep], up[keep], down[keep]))
        live = _live_mapping(found["knots"])
        shifts = {}
        for d in found["data"]:
            raw = d.raw_time_stamps
            if raw is None or len(raw) == 0:
                continue
            new = offline(live.invert(raw, ordered=True))
            shift = (new - raw) * 1e3
            _resync(d, new)
            shifts[d.name] = {
                "median_ms": float(np.median(shift)),
                "p99_abs_ms": float(np.percentile(np.abs(shift), 99)),
                "max_abs_ms": float(np.max(np.abs(shift))),
            }
            d.fit["phone_clock"] = {
                "device": device,
                "mapping": "remapped",
                "shift_remapped_minus_live": shifts[d.name],
            }
        entry["used"] = "remapped"
        entry["remap"] = {
            "status": "ok",
            "method": "non-causal lower/upper envelope, 120 s centred windows",
            "knots": len(offline.p),
            "clock_steps": steps,
            "shift_remapped_minus_live": shifts,
        }
        logger.info(
            "%s: %d streams re-mapped from %d clock exchanges",
            device,
            len(shifts),
            len(ex),
        )
    return {"mode": mode, "phones": phones}


def phone_clock_section(streams: list[SyncedStream]) -> dict[str, Any]:
    """Per phone, for the sync check: which mapping the stamps use and the evidence.

    ``mapping`` is ``remapped``, ``live`` or ``mixed`` (from each data stream's
    ``fit["phone_clock"]``; ``live`` when ``process`` did not touch them).
    """
    out = {}
    for device, found in phone_clocks(streams).items():
        used = {
            d.name: (d.fit.get("phone_clock") or {}).get("mapping", "live")
            for d in found["data"]
        }
        kinds = set(used.values())
        out[device] = {
            "mapping": kinds.pop()
            if len(kinds) == 1
            else ("mixed" if kinds else "live"),
            "streams": used,
            "exchanges": len(found["exchanges"].time_stamps),
            "live": live_summary(found["knots"]),
            "shift_remapped_minus_live": {
                d.name: d.fit["phone_clock"]["shift_remapped_minus_live"]
                for d in found["data"]
                if "shift_remapped_minus_live" in (d.fit.get("phone_clock") or {})
            },
        }
    return out
