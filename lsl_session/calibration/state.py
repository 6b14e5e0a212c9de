"""The calibration state of one device, written atomically after each kept view.

``processing/calibration/<device>.state.json`` follows the seed's calibration
session state (``session_info``, ``pattern_config``, ``progress_tracking`` with
``completed_points`` / ``total_points`` and ``captured_images``) and adds what a
resume needs: each kept view's corners per camera, and the source position.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.calibration.board import BoardSpec, parse_board
from lsl_session.calibration.solve import Observation
from lsl_session.errors import LslSessionError
from lsl_session.fsutil import atomic_write_bytes, ensure_inside
from lsl_session.metadata import now_iso

STATE_VERSION = 1


class StateError(LslSessionError):
    """A state file that cannot be read or does not match the command."""


@dataclass(slots=True)
class CameraView:
    """One camera's part of a kept view."""

    corners: list[list[float]]
    ids: list[int]
    edge_width_px: float
    frame: int | None = None
    lsl_time: float | None = None
    image: str | None = None  # saved copy, relative to the session folder

    def observation(self) -> Observation:
        """The corners as a solver `Observation`."""
        return Observation(
            np.asarray(self.corners, np.float32).reshape(-1, 2),
            np.asarray(self.ids, np.int32),
        )


@dataclass(slots=True)
class KeptView:
    """A view kept for calibration (one per camera for a stereo pair)."""

    view_id: str
    source: str
    position: int  # index in the source (frame or file number)
    captured: str  # ISO time
    cameras: dict[str, CameraView]

    @property
    def corners_detected(self) -> int:
        """Corners of the first camera."""
        return len(next(iter(self.cameras.values())).ids)


@dataclass(slots=True)
class CalibrationState:
    """Everything a calibration of one device has gathered so far."""

    device: str
    board: BoardSpec
    cameras: list[str]  # ["rgb"], ["thermal"] or ["rgb", "thermal"]
    wanted: int
    source: str
    image_sizes: dict[str, list[int]] = field(default_factory=dict)
    views: list[KeptView] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    status: str = "capturing"  # capturing | solved | failed
    started: str = field(default_factory=now_iso)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    recovery_count: int = 0
    cursor: int = 0  # source positions below this were looked at
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def next_view_id(self) -> str:
        """``view_NNN`` for the next kept view."""
        return f"view_{len(self.views) + 1:03d}"

    def to_json(self) -> dict[str, Any]:
        """The seed's calibration session state, plus the views' corners."""
        return {
            "version": STATE_VERSION,
            "session_info": {
                "session_id": f"cal_{self.device}_{self.run_id}",
                "run_id": self.run_id, "device": self.device, "is_active": self.status == "capturing",
                "status": self.status, "start_time": self.started,
                "start_timestamp": self.started_ms,
                "last_update": int(time.time() * 1000),
                "recovery_count": self.recovery_count,
            },
            "pattern_config": {
                **self.board.to_dict(),
                "detection_parameters": {
                    "adaptive_threshold": True, "corner_refinement": "cornerSubPix",
                    "both_polarities": True,
                },
            },
            "progress_tracking": {
                "completed_points": len(self.views), "total_points": self.wanted,
                "completion_percentage": round(100 * len(self.views) / max(self.wanted, 1), 1),
                "refused": dict(self.refused),
                "captured_images": [
                    {"image_id": v.view_id, "timestamp": v.captured,
                     "corners_detected": v.corners_detected, "source": v.source,
                     "position": v.position,
                     "cameras": {c: asdict(cv) for c, cv in v.cameras.items()}}
                    for v in self.views
                ],
            },
            "cameras": self.cameras, "source": self.source, "cursor": self.cursor,
            "image_sizes": self.image_sizes,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibrationState:
        """Rebuild a state from `to_json` output.

        Raises
        ------
        StateError
            If the content is not a state of this version.
        """
        try:
            info, progress = data["session_info"], data["progress_tracking"]
            views = [
                KeptView(
                    view_id=v["image_id"], source=v["source"], position=int(v["position"]),
                    captured=v["timestamp"],
                    cameras={c: CameraView(**cv) for c, cv in v["cameras"].items()},
                )
                for v in progress["captured_images"]
            ]  # fmt: skip
            return cls(
                device=info["device"], board=parse_board(data["pattern_config"]["spec"]),
                cameras=list(data["cameras"]), wanted=int(progress["total_points"]),
                source=str(data["source"]), image_sizes=dict(data["image_sizes"]),
                views=views, refused={k: int(n) for k, n in progress["refused"].items()},
                status=str(info["status"]), started=info["start_time"],
                started_ms=int(info["start_timestamp"]),
                recovery_count=int(info["recovery_count"]), cursor=int(data["cursor"]),
                run_id=str(info["run_id"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, LslSessionError) as exc:
            raise StateError(f"calibration state unreadable ({exc})") from None


def state_path(calib_dir: Path, device: str) -> Path:
    """``processing/calibration/<device>.state.json``."""
    return calib_dir / f"{device}.state.json"


def save_state(root: Path, path: Path, state: CalibrationState) -> None:
    """Write the state atomically (temp + fsync + rename), never through a link."""
    ensure_inside(root, path)
    payload = json.dumps(state.to_json(), indent=1).encode() + b"\n"
    atomic_write_bytes(path, payload)


def load_state(path: Path) -> CalibrationState | None:
    """The saved state, or None when there is none.

    Raises
    ------
    StateError
        If the file exists but cannot be read.
    """
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{path.name}: unreadable calibration state ({exc})") from None
    if not isinstance(data, dict):
        raise StateError(f"{path.name}: not a calibration state")
    return CalibrationState.from_json(data)
