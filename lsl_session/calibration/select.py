"""Which views to keep: board found whole, sharp, still, and not a near-duplicate;
plus the coverage map of the image area the kept views' corners reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lsl_session.calibration.board import BoardSpec
from lsl_session.calibration.detect import Detection, Refusal, detect_board


@dataclass(frozen=True, slots=True)
class SelectorConfig:
    """Thresholds of the view selection (all documented in docs/calibration.md).

    Attributes
    ----------
    max_edge_px : float
        Refuse a view whose board edges are wider than this (blur).
    still_fraction : float
        A live/video view is still when its corners moved less than this
        fraction of the image diagonal since the previous frame (at least 1 px).
    duplicate_fraction : float
        A view is a near-duplicate of a kept one when its corners lie on average
        closer than this fraction of the diagonal to that view's.
    min_fraction : float
        ChArUco: fewest corners, as a fraction of the board's.
    """

    max_edge_px: float = 4.0
    still_fraction: float = 0.002
    duplicate_fraction: float = 0.02
    min_fraction: float = 0.75


def _diag(size: tuple[int, int]) -> float:
    return float(np.hypot(*size))


def mean_shift(a: Detection | tuple, b: Detection | tuple) -> float | None:
    """Mean distance (px) between the corners two detections share; None if < 4."""
    ca, ia = (a.corners, a.ids) if isinstance(a, Detection) else a
    cb, ib = (b.corners, b.ids) if isinstance(b, Detection) else b
    _, xa, xb = np.intersect1d(ia, ib, return_indices=True)
    if len(xa) < 4:
        return None
    return float(
        np.mean(np.linalg.norm(np.asarray(ca)[xa] - np.asarray(cb)[xb], axis=1))
    )


@dataclass(slots=True)
class ViewSelector:
    """Decides per frame (or stereo pair) whether it becomes a kept view.

    Parameters
    ----------
    board : BoardSpec
    config : SelectorConfig
    kept : list of tuple
        ``(view_id, corners, ids)`` of the first camera's kept views (resume).
    """

    board: BoardSpec
    config: SelectorConfig
    kept: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    _previous: dict[str, Detection | None] = field(default_factory=dict)

    def check(
        self, camera: str, image: np.ndarray, *, continuous: bool
    ) -> Detection | Refusal:
        """Detect and judge one camera's frame (no duplicate test)."""
        found = detect_board(image, self.board, min_fraction=self.config.min_fraction)
        previous = self._previous.get(camera)
        self._previous[camera] = found if isinstance(found, Detection) else None
        if isinstance(found, Refusal):
            return found
        if found.edge_width_px > self.config.max_edge_px:
            return Refusal(
                "blurred",
                f"blurred: board edges {found.edge_width_px:.1f} px wide "
                f"(at most {self.config.max_edge_px:g} px)",
            )
        if continuous:
            limit = max(1.0, self.config.still_fraction * _diag(found.image_size))
            moved = mean_shift(found, previous) if previous is not None else None
            if moved is None:
                return Refusal("moving", "board just came into view: hold it still")
            if moved > limit:
                return Refusal(
                    "moving",
                    f"board moving ({moved:.1f} px since the last frame, "
                    f"at most {limit:.1f} px)",
                )
        return found

    def forget(self, camera: str) -> None:
        """Drop the previous detection of ``camera`` (its frame was not looked at)."""
        self._previous[camera] = None

    def duplicate_of(self, found: Detection) -> Refusal | None:
        """A refusal when ``found`` nearly repeats a kept view, else None."""
        limit = self.config.duplicate_fraction * _diag(found.image_size)
        for view_id, corners, ids in self.kept:
            shift = mean_shift(found, (corners, ids))
            if shift is not None and shift < limit:
                return Refusal(
                    "duplicate",
                    f"near-duplicate of {view_id} (corners {shift:.0f} px away on "
                    f"average, {limit:.0f} px needed): move or tilt the board",
                )
        return None

    def keep(self, view_id: str, found: Detection) -> None:
        """Remember a kept view for later duplicate checks."""
        self.kept.append((view_id, found.corners, found.ids))


@dataclass(slots=True)
class Coverage:
    """Which cells of an image grid the kept views' corners reached."""

    size: tuple[int, int]
    grid: tuple[int, int] = (8, 6)
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.grid[::-1], np.int64)

    def add(self, corners: np.ndarray) -> None:
        """Count the corners of one kept view."""
        pts = np.asarray(corners, float).reshape(-1, 2)
        gx = np.clip(
            (pts[:, 0] / self.size[0] * self.grid[0]).astype(int), 0, self.grid[0] - 1
        )
        gy = np.clip(
            (pts[:, 1] / self.size[1] * self.grid[1]).astype(int), 0, self.grid[1] - 1
        )
        np.add.at(self.counts, (gy, gx), 1)

    @property
    def fraction(self) -> float:
        """Share of the cells holding at least one corner."""
        return float(np.count_nonzero(self.counts) / self.counts.size)

    def lines(self) -> list[str]:
        """The map as text: ``#`` a cell with corners, ``.`` one without."""
        return ["".join("#" if c else "." for c in row) for row in self.counts]
