"""MarkerOutlet: push string stimulus markers to an LSL ``Markers`` stream."""

from __future__ import annotations

import logging
import threading
import time

import pylsl

from outlets._base import BaseOutlet, OutletError

logger = logging.getLogger(__name__)

DEFAULT_NAME = "StimulusMarkers"


def marker_source_id(name: str) -> str:
    """Return the stable source id of the marker stream called ``name``.

    Parameters
    ----------
    name : str
        The stream name.

    Returns
    -------
    str
        ``lsl_session/markers/<name>``.
    """
    return f"lsl_session/markers/{name}"


class MarkerOutlet(BaseOutlet):
    """An LSL marker stream: one string channel, irregular rate.

    The LSL outlet is created by the constructor, so ``MarkerOutlet().push("go")``
    works without :meth:`start`; the context manager and :meth:`stop` (alias
    :meth:`close`) destroy it.

    Parameters
    ----------
    name : str
        Stream name (default ``StimulusMarkers``).
    source_id : str | None
        Stable source id; default ``lsl_session/markers/<name>``.
    manufacturer : str
        Written to ``desc/acquisition/manufacturer``.
    model : str
        Written to ``desc/acquisition/model``.

    Raises
    ------
    ValueError
        If ``name`` is empty.

    Notes
    -----
    Timestamps are LSL time (:func:`pylsl.local_clock`), always pushed explicitly.
    :meth:`push` is thread-safe.
    """

    _threaded = False

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        source_id: str | None = None,
        manufacturer: str = "lsl_session",
        model: str = "MarkerOutlet",
    ) -> None:
        super().__init__()
        if not name:
            raise ValueError(
                f"The argument 'name' must be a non-empty string, {name!r} is invalid."
            )
        self._name = name
        self._source_id = source_id or marker_source_id(name)
        info = pylsl.StreamInfo(
            name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, self._source_id
        )
        desc = info.desc()
        channel = desc.append_child("channels").append_child("channel")
        channel.append_child_value("label", "marker")
        channel.append_child_value("unit", "")
        channel.append_child_value("type", "Marker")
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", manufacturer)
        acq.append_child_value("model", model)
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
        self._push_lock = threading.Lock()
        self._count = 0
        self._opened = True
        logger.info("Marker outlet %r (source_id %r) created", name, self._source_id)

    def close(self) -> None:
        """Destroy the LSL outlet; same as :meth:`stop`, can be called twice."""
        self.stop()

    def have_consumers(self) -> bool:
        """Return True if at least one inlet is connected.

        Returns
        -------
        bool
            Whether the stream currently has consumers.
        """
        outlet = self._outlet
        return outlet is not None and bool(outlet.have_consumers())

    def push(self, label: str, timestamp: float | None = None) -> float:
        """Push one marker.

        Parameters
        ----------
        label : str
            The marker text (may be empty).
        timestamp : float | None
            LSL time of the event; default :func:`pylsl.local_clock` now.

        Returns
        -------
        float
            The timestamp that was pushed.

        Raises
        ------
        OutletError
            If the outlet was closed.
        TypeError
            If ``label`` is not a string.
        """
        if not isinstance(label, str):
            raise TypeError(
                f"The argument 'label' must be a str, {label!r} is invalid."
            )
        stamp = pylsl.local_clock() if timestamp is None else float(timestamp)
        with self._push_lock:
            if self._outlet is None:
                raise OutletError(f"Marker outlet {self._name!r} is closed.")
            self._outlet.push_sample([label], stamp)
            self._count += 1
        return stamp

    def wait_for_consumers(self, timeout: float) -> bool:
        """Wait until an inlet is connected.

        Parameters
        ----------
        timeout : float
            Seconds to wait at most.

        Returns
        -------
        bool
            True if a consumer is connected.
        """
        outlet = self._outlet
        if outlet is None:
            return False
        return bool(outlet.wait_for_consumers(max(0.0, timeout)))

    def linger(self, seconds: float) -> None:
        """Keep the outlet alive ``seconds`` if consumers are connected.

        liblsl has no "all data delivered" acknowledgement, and samples still in the
        send queue can be lost when the outlet is destroyed, so a short linger before
        :meth:`close` lets connected inlets receive the tail.

        Parameters
        ----------
        seconds : float
            Linger duration; nothing happens without consumers or if ``<= 0``.
        """
        if seconds > 0 and self.have_consumers():
            time.sleep(seconds)

    def _open(self) -> None:
        if self._outlet is None:
            raise OutletError(f"Marker outlet {self._name!r} is closed.")

    def _close(self) -> None:
        with self._push_lock:
            outlet, self._outlet = self._outlet, None
        del outlet
        logger.info("Marker outlet %r closed after %d markers", self._name, self._count)

    # ---------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of markers pushed."""
        return self._count

    @property
    def name(self) -> str:
        """Stream name."""
        return self._name

    @property
    def source_id(self) -> str:
        """Stream source id."""
        return self._source_id
