"""Calibration boards: parsing ``--board`` specs, object points and detection.

A spec is ``chessboard:COLSxROWS:SQUAREmm`` (inner corners, OpenCV's pattern
size: the seed's 9 x 6 board of 25 mm squares is ``chessboard:9x6:25mm``) or
``charuco:COLSxROWS:SQUAREmm:MARKERmm[:DICT]`` (squares, as OpenCV's
``CharucoBoard``; default dictionary ``DICT_5X5_100``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from lsl_session.errors import LslSessionError

#: The seed's default board (``STEREO_CHECKERBOARD``, 9 x 6, 25 mm).
DEFAULT_BOARD = "chessboard:9x6:25mm"
DEFAULT_DICTIONARY = "DICT_5X5_100"

_SIZE = re.compile(r"(\d+)x(\d+)\Z")
_MM = re.compile(r"(\d+(?:\.\d+)?)\s*mm\Z")


class BoardSpecError(LslSessionError):
    """A ``--board`` spec that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class BoardSpec:
    """A planar calibration target.

    Attributes
    ----------
    kind : {"chessboard", "charuco"}
    cols, rows : int
        Chessboard: inner corners across and down. ChArUco: squares.
    square_mm : float
        Side of one square in millimetres.
    marker_mm : float | None
        ChArUco marker side.
    dictionary : str | None
        ChArUco ArUco dictionary name (``DICT_5X5_100``).
    """

    kind: Literal["chessboard", "charuco"]
    cols: int
    rows: int
    square_mm: float
    marker_mm: float | None = None
    dictionary: str | None = None

    @property
    def n_corners(self) -> int:
        """Number of corners a complete detection has."""
        if self.kind == "charuco":
            return (self.cols - 1) * (self.rows - 1)
        return self.cols * self.rows

    @property
    def pattern_name(self) -> str:
        """The seed's pattern name (``STEREO_CHECKERBOARD`` / ``CHARUCO``)."""
        return "STEREO_CHECKERBOARD" if self.kind == "chessboard" else "CHARUCO"

    def spec(self) -> str:
        """The spec string this board parses from."""
        base = f"{self.kind}:{self.cols}x{self.rows}:{self.square_mm:g}mm"
        if self.kind == "charuco":
            return f"{base}:{self.marker_mm:g}mm:{self.dictionary}"
        return base

    def object_points(self) -> np.ndarray:
        """``(n_corners, 3)`` float32 corner positions on the board plane, in mm.

        Row-major (x fastest), as OpenCV orders chessboard corners and ChArUco ids.
        """
        nx, ny = (
            (self.cols - 1, self.rows - 1) if self.kind == "charuco" else
            (self.cols, self.rows)
        )  # fmt: skip
        off = self.square_mm if self.kind == "charuco" else 0.0
        gx, gy = np.meshgrid(np.arange(nx), np.arange(ny))
        pts = np.zeros((nx * ny, 3), np.float32)
        pts[:, 0] = gx.ravel() * self.square_mm + off
        pts[:, 1] = gy.ravel() * self.square_mm + off
        return pts

    def extent_mm(self) -> tuple[float, float]:
        """Width and height of the squared area in mm."""
        if self.kind == "charuco":
            return self.cols * self.square_mm, self.rows * self.square_mm
        return (self.cols + 1) * self.square_mm, (self.rows + 1) * self.square_mm

    def charuco_board(self) -> cv2.aruco.CharucoBoard:
        """The OpenCV ``CharucoBoard`` (ChArUco only)."""
        if self.kind != "charuco":
            raise BoardSpecError(f"{self.spec()} is not a ChArUco board")
        dictionary = cv2.aruco.getPredefinedDictionary(
            getattr(cv2.aruco, str(self.dictionary))
        )
        return cv2.aruco.CharucoBoard(
            (self.cols, self.rows), self.square_mm, float(self.marker_mm or 0),
            dictionary,
        )  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        """JSON form (also the seed's ``pattern_config``)."""
        return {
            "spec": self.spec(), "kind": self.kind, "current_pattern": self.pattern_name,
            "pattern_size": [self.cols, self.rows], "square_size_mm": self.square_mm,
            "marker_size_mm": self.marker_mm, "dictionary": self.dictionary,
            "n_corners": self.n_corners,
        }  # fmt: skip


def _mm(text: str, what: str, spec: str) -> float:
    match = _MM.match(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise BoardSpecError(
            f"board {spec!r}: {what} must be a size like 25mm, got {text!r}"
        )
    return float(match.group(1))


def parse_board(spec: str) -> BoardSpec:
    """Parse a ``--board`` spec.

    Raises
    ------
    BoardSpecError
        With a one-line reason and the expected forms.
    """
    forms = "chessboard:9x6:25mm or charuco:5x7:30mm:22mm[:DICT_5X5_100]"
    parts = [p.strip() for p in str(spec).split(":")]
    kind = parts[0].lower()
    if kind not in ("chessboard", "charuco") or len(parts) < 3:
        raise BoardSpecError(f"board {spec!r} not understood; expected {forms}")
    size = _SIZE.match(parts[1].lower())
    if not size:
        raise BoardSpecError(f"board {spec!r}: size must be COLSxROWS like 9x6")
    cols, rows = int(size.group(1)), int(size.group(2))
    square = _mm(parts[2], "the square size", spec)
    if kind == "chessboard":
        if len(parts) != 3:
            raise BoardSpecError(f"board {spec!r}: expected {forms}")
        if min(cols, rows) < 3 or max(cols, rows) > 60:
            raise BoardSpecError(
                f"board {spec!r}: a chessboard needs 3 to 60 inner corners a side"
            )
        return BoardSpec("chessboard", cols, rows, square)
    if len(parts) not in (4, 5):
        raise BoardSpecError(f"board {spec!r}: expected {forms}")
    marker = _mm(parts[3], "the marker size", spec)
    if marker >= square:
        raise BoardSpecError(f"board {spec!r}: markers must be smaller than squares")
    if min(cols, rows) < 3 or max(cols, rows) > 40:
        raise BoardSpecError(f"board {spec!r}: ChArUco needs 3 to 40 squares a side")
    dictionary = parts[4].upper() if len(parts) == 5 else DEFAULT_DICTIONARY
    if not dictionary.startswith("DICT_") or not hasattr(cv2.aruco, dictionary):
        raise BoardSpecError(f"board {spec!r}: unknown ArUco dictionary {dictionary}")
    board = BoardSpec("charuco", cols, rows, square, marker, dictionary)
    n_markers = (cols * rows) // 2
    size_of = int(re.search(r"_(\d+)\Z", dictionary).group(1))  # type: ignore[union-attr]
    if n_markers > size_of:
        raise BoardSpecError(
            f"board {spec!r}: {n_markers} markers do not fit in {dictionary}"
        )
    return board
