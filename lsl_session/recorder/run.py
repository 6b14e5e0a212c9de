"""One stream inside one run: the samples stamped in the run's window, and how it ended.

A run records the samples stamped in ``[start, cutoff)`` on the recorder's clock
(the sender's stamp plus the stream's latest clock offset). At ``stop`` each
stream is drained until it delivers a sample stamped at or after the cutoff, or
its grace runs out; the reason it ended goes into its footer and the metadata.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from lsl_session.recorder.output import OutputFailed, XdfOutput
from lsl_session.recorder.stream import PooledStream

logger = logging.getLogger(__name__)

#: Why a stream's part of a run ended (footer ``end_reason``, metadata).
END_CUTOFF = "cutoff_reached"  # it delivered a sample stamped at/after the cutoff
END_GRACE = "grace_expired"  # it was delivering, but not past the cutoff in time
END_SILENT = "silent"  # nothing arrived from it during the grace
END_QUIET = "quiet"  # irregular: nothing arrived within its longest delivery delay
END_LOST = "lost"  # the source vanished and cannot come back
END_FAILED = "failed"  # the run's file failed (disk full, I/O error)

#: The session's own event stream ends this long after the cutoff (local delivery).
INTERNAL_QUIET = 0.05
#: An interval longer than this many sample periods holds missing samples
#: (``round(interval * rate) - 1`` of them; the verdict's formula).
GAP_PERIODS = 1.5
#: Discontinuities kept per stream in the metadata (all are counted).
MAX_DISCONTINUITIES = 100


class RunStream:
    """The part of one pooled stream that belongs to one run (one XDF stream id).

    Parameters
    ----------
    stream_id : int
        Its XDF stream id in the run's file.
    source : PooledStream
        The open stream.
    output : XdfOutput
        The run's file.
    start : float
        First recorder-clock stamp of the run (``-inf``: everything pulled).
    on_failure : callable
        ``on_failure(message)`` when a write to the run's file failed.
    """

    def __init__(
        self,
        stream_id: int,
        source: PooledStream,
        output: XdfOutput,
        start: float,
        on_failure: Callable[[str], None],
    ) -> None:
        self.stream_id = stream_id
        self.source = source
        self.output = output
        self.start = start
        self.end = math.inf
        self.ended = False
        self.end_reason: str | None = None
        #: the session's own event stream: pushed by this process, so all it
        #: logged before the cutoff is delivered within milliseconds
        self.internal = False
        self._newest_at_cut: float | None = None
        #: seconds a sample waits before it is written (0: at once); see `take`
        self.hold = 0.0
        self._pending: list[tuple[np.ndarray, Any, np.ndarray]] = []
        self._pending_samples = 0
        self._on_failure = on_failure
        srate = source.nominal_srate
        self._gap_limit = GAP_PERIODS / srate if srate > 0 else 0.0
        self.gaps = 0
        #: samples missing in stamp gaps (regular streams), backward stamp jumps
        self.samples_lost = 0
        self.backward_jumps = 0
        self.discontinuities: list[dict[str, Any]] = []
        # what the rest of the recorder reads, as for any recorded stream
        self.info = source.info
        self.name = source.name
        self.type = source.type
        self.source_id = source.source_id
        self.hostname = source.hostname
        self.channel_count = source.channel_count
        self.nominal_srate = srate
        self.channel_format = source.channel_format

    # ------------------------------------------------------------- samples
    def take(self, stamps: np.ndarray, values: Any, local: np.ndarray) -> None:
        """Write the samples of a chunk stamped inside the run's window.

        ``local`` holds the stamps on the recorder's clock; the file keeps the
        sender's own ``stamps``. With a `hold`, samples are written once they
        are that old (or the cutoff is known): a stop's arrival stamp may
        precede the moment it is applied.
        """
        if self.ended or not len(stamps):
            return
        if not self.hold:
            self._write(stamps, values, local, self.end)
            return
        self._pending.append((stamps, values, local))
        self._pending_samples += len(stamps)
        self.settle(self.source.last_arrival or -math.inf)

    def settle(self, now: float) -> None:
        """Write the held samples older than ``now - hold``; all of them once cut."""
        if not self._pending or self.ended:
            return
        cut = not math.isinf(self.end)
        limit = self.end if cut else now - self.hold
        keep = []
        for stamps, values, local in self._pending:
            if cut or local.max() < limit:
                self._write(stamps, values, local, limit)
            elif local.min() < limit:
                self._write(stamps, values, local, limit)
                later = local >= limit
                keep.append((stamps[later], _rows(values, later), local[later]))
            else:
                keep.append((stamps, values, local))
        self._pending = keep
        self._pending_samples = sum(len(c[0]) for c in keep)

    def _write(
        self, stamps: np.ndarray, values: Any, local: np.ndarray, hi: float
    ) -> None:
        lo = self.start
        if local.min() < lo or local.max() >= hi:
            keep = (local >= lo) & (local < hi)
            if not keep.any():
                return
            stamps, values = stamps[keep], _rows(values, keep)
        try:
            self._check_stamps(stamps)
            self.output.write_samples(self.stream_id, stamps, values)
        except OutputFailed as exc:
            self.ended, self.end_reason = True, END_FAILED
            self._on_failure(str(exc))

    def _check_stamps(self, stamps: np.ndarray) -> None:
        """Count gaps (regular streams) and backward jumps (any) in one chunk.

        Vectorised over the chunk; only the (rare) discontinuities are looked
        at one by one.
        """
        last = self.output.stats(self.stream_id).last
        steps = np.diff(stamps, prepend=stamps[0] if last is None else last)
        # a regular stream's chunks stamped at push time overlap by up to about a
        # period: only a step back beyond the gap limit (2 periods) is a jump
        backward = steps < -self._gap_limit
        gap = steps > self._gap_limit if self._gap_limit else np.zeros_like(backward)
        if not (gap.any() or backward.any()):
            return
        for i in np.flatnonzero(gap | backward):
            step = float(steps[i])
            lost = max(0, round(step * self.nominal_srate) - 1) if step > 0 else 0
            if step > 0:
                self.gaps += 1
                self.samples_lost += lost
            else:
                self.backward_jumps += 1
            if len(self.discontinuities) < MAX_DISCONTINUITIES:
                self.discontinuities.append(
                    {
                        "kind": "gap" if step > 0 else "backward",
                        "after_stamp": float(stamps[i] - step),
                        "stamp": float(stamps[i]),
                        "step_s": round(step, 6),
                        "samples_lost": lost,
                        "source_uid": self.source.sources[-1]["uid"],
                    }
                )

    def discontinuity_of(self, uid: str) -> dict[str, Any] | None:
        """The latest stamp gap or backward jump seen while ``uid`` was the source."""
        for entry in reversed(self.discontinuities):
            if entry.get("source_uid") == uid:
                return dict(entry)
        return None

    def offset(self, collection: float, value: float) -> None:
        """Write a ClockOffset measured by the pooled stream into the run's file."""
        if self.ended and self.end_reason == END_FAILED:
            return
        self.output.write_clock_offset(self.stream_id, collection, value)

    # ---------------------------------------------------------------- stop
    def cut(self, cutoff: float) -> None:
        """Keep only samples stamped before ``cutoff`` from now on (earliest wins)."""
        self.end = min(self.end, cutoff)

    def check_end(self, now: float, grace: float) -> bool:
        """End the stream's part of the run if it passed the cutoff or ran out of time.

        Parameters
        ----------
        now : float
            The recorder's ``local_clock()``.
        grace : float
            Seconds after the cutoff a stream may still deliver.

        Returns
        -------
        bool
            True once ended.
        """
        if self.ended:
            return True
        if math.isinf(self.end):
            return False
        src = self.source
        cutoff = self.end
        if self._newest_at_cut is None:  # the first round after the cut pulled all
            self._newest_at_cut = -math.inf if src.newest is None else src.newest
        reason = None
        if src.lost:
            reason = END_LOST
        elif src.newest is not None and src.newest >= cutoff:
            reason = END_CUTOFF
        elif self.internal and now - cutoff >= INTERNAL_QUIET:
            reason = END_QUIET
        elif (
            not src.regular
            and now - max(cutoff, src.last_arrival or -math.inf) >= src.allowance()
        ):
            reason = END_QUIET
        elif now - cutoff >= grace:
            # silent: nothing newer arrived since the stop's first pull
            moved = src.newest is not None and src.newest > self._newest_at_cut
            reason = END_GRACE if moved else END_SILENT
        if reason is not None:
            self.settle(now)  # cut: everything held before the cutoff goes in
            self.ended, self.end_reason = True, reason
            self.output.set_footer_extra(
                self.stream_id, {"cutoff": cutoff, "end_reason": reason}
            )
            if reason in (END_GRACE, END_SILENT):
                logger.warning(
                    "stream %s: %s at stop (nothing stamped after the cutoff"
                    " arrived within %.1f s)",
                    self.name,
                    reason.replace("_", " "),
                    grace,
                )
        return self.ended

    def force_end(self, reason: str) -> None:
        """End now (the recording failed or is torn down)."""
        if not self.ended:
            if not math.isinf(self.end):
                self.settle(math.inf)
            self.ended, self.end_reason = True, reason
            if not math.isinf(self.end):
                self.output.set_footer_extra(
                    self.stream_id, {"cutoff": self.end, "end_reason": reason}
                )

    # ----------------------------------------------------------------- status
    def last_stamp(self) -> float | None:
        """The last recorded stamp on the recorder's clock (None before any sample)."""
        last = self.output.stats(self.stream_id).last
        return None if last is None else last + self.source.last_offset

    @property
    def lost(self) -> bool:
        """True if the source vanished for good."""
        return self.source.lost

    def status(self, now: float) -> dict:
        """Live figures for the status display."""
        stats = self.output.stats(self.stream_id)
        rate = 0.0
        if stats.count > 1 and stats.last is not None and stats.first is not None:
            span = stats.last - stats.first
            rate = (stats.count - 1) / span if span > 0 else 0.0
        age = None if stats.last is None else now - self.last_stamp()
        # lag means something only for a regular stream: an irregular one (markers,
        # the session's own events) is quiet between events by design
        lag = age if self.nominal_srate > 0 else None
        recent = [value for _, value in stats.offsets[-10:]]
        return {
            "stream_id": self.stream_id,
            "name": self.name,
            "type": self.type,
            "samples": stats.count,
            "nominal_srate": self.nominal_srate,
            "effective_srate": round(rate, 3),
            "lag_s": None if lag is None else round(lag, 3),
            "last_sample_age_s": None if age is None else round(age, 3),
            "clock_offset": recent[-1] if recent else None,
            "clock_offset_spread_ms": (
                round(float(np.std(recent)) * 1e3, 4) if len(recent) > 1 else None
            ),
            "clock_offsets": len(stats.offsets),
            "gaps": self.gaps,
            "samples_lost": self.samples_lost,
            "backward_jumps": self.backward_jumps,
            "sources": len(self.source.sources),
            "lost": self.lost,
        }

    def summary(self) -> dict:
        """The stream's entry in the session metadata."""
        stats = self.output.stats(self.stream_id)
        return {
            "stream_id": self.stream_id,
            "name": self.name,
            "type": self.type,
            "source_id": self.source_id,
            "hostname": self.hostname,
            "channel_count": self.channel_count,
            "channel_format": self.channel_format,
            "nominal_srate": self.nominal_srate,
            "sample_count": stats.count,
            "first_timestamp": stats.first,
            "last_timestamp": stats.last,
            "clock_offsets": len(stats.offsets),
            "gaps": self.gaps,
            "samples_lost": self.samples_lost,
            "backward_jumps": self.backward_jumps,
            "discontinuities": list(self.discontinuities),
            "sources": [dict(s) for s in self.source.sources],
            "end_reason": self.end_reason,
        }


def _rows(values: Any, keep: np.ndarray) -> Any:
    """``values[keep]`` for a numpy block or a list of strings."""
    if isinstance(values, np.ndarray):
        return values[keep]
    return [values[i] for i in np.flatnonzero(keep)]
