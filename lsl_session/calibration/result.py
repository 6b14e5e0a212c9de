"""``processing/calibration/<device>.json``: writing a solution, loading it back.

Layout (all lengths in mm, image positions in px)::

    {"schema_version": 1, "device": "phone_1", "created": ISO, "board": {...},
     "model": "radtan",
     "cameras": {"rgb": {"image_size": [w, h], "camera_matrix": 3x3,
                         "distortion": [k1, k2, p1, p2, k3], "rms_px": 0.12,
                         "per_view_error_px": {"view_001": 0.1, ...},
                         "dropped_views": [{"view_id", "reason", "error_px"}]},
                 "thermal": {...}},
     "stereo": {"from": "rgb", "to": "thermal", "R": 3x3, "T_mm": [x, y, z],
                "baseline_mm": 30.0, "rms_px": 0.2, "per_view_error_px": {...},
                "dropped_views": [...]} | null,
     "views": [{"view_id", "source", "position", "captured", "lsl_time": {cam: t},
                "corners_detected", "edge_width_px": {cam: w},
                "reprojection_error_px": {cam: e}, "quality_score": 0..1}],
     "state": "processing/calibration/<device>.state.json"}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.calibration.solve import CameraSolution, DroppedView, StereoSolution
from lsl_session.calibration.state import CalibrationState
from lsl_session.fsutil import atomic_write_bytes, ensure_inside
from lsl_session.metadata import now_iso

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CALIBRATION_DIR = "processing/calibration"


@dataclass(frozen=True, slots=True)
class CameraCalibration:
    """One camera's intrinsics, as loaded from the result file."""

    camera: str
    camera_matrix: np.ndarray
    distortion: np.ndarray
    rms_px: float
    image_size: tuple[int, int]
    per_view_error_px: dict[str, float] = field(default_factory=dict)
    dropped_views: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StereoCalibration:
    """Second camera relative to the first: ``X_to = R @ X_from + T`` (mm)."""

    from_camera: str
    to_camera: str
    R: np.ndarray
    T: np.ndarray
    baseline_mm: float
    rms_px: float
    per_view_error_px: dict[str, float] = field(default_factory=dict)
    dropped_views: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeviceCalibration:
    """A device's calibration (``load_session(...).calibration[device]``)."""

    device: str
    path: str  # relative to the session folder
    board: dict[str, Any]
    cameras: dict[str, CameraCalibration]
    stereo: StereoCalibration | None
    views: list[dict[str, Any]]
    created: str


def quality_score(error_px: float, edge_width_px: float) -> float:
    """The seed's per-image quality in 0..1: sharpness times reprojection fit.

    ``min(1, 2 / edge_width) / (1 + (error / 0.25)²)``: 1 for a sharp view fitting
    to a small fraction of a pixel, 0.5 for one off by 0.25 px.
    """
    sharp = min(1.0, 2.0 / max(edge_width_px, 1e-6))
    return round(sharp / (1.0 + (error_px / 0.25) ** 2), 3)


def _dropped(items: list[DroppedView]) -> list[dict[str, Any]]:
    return [
        {"view_id": d.view_id, "reason": d.reason,
         "error_px": None if d.error_px is None else round(d.error_px, 4)}
        for d in items
    ]  # fmt: skip


def _camera_json(sol: CameraSolution) -> dict[str, Any]:
    return {
        "image_size": list(sol.image_size),
        "camera_matrix": np.asarray(sol.camera_matrix, float).tolist(),
        "distortion": np.asarray(sol.distortion, float).ravel().tolist(),
        "rms_px": round(sol.rms_px, 5),
        "views_used": len(sol.view_errors),
        "per_view_error_px": {k: round(v, 5) for k, v in sol.view_errors.items()},
        "dropped_views": _dropped(sol.dropped),
    }


def result_json(
    state: CalibrationState, solutions: dict[str, CameraSolution],
    stereo: StereoSolution | None, state_rel: str, model: str,
) -> dict[str, Any]:  # fmt: skip
    """Assemble the result document (see the module docstring)."""
    views = []
    for v in state.views:
        errors = {c: s.view_errors.get(v.view_id) for c, s in solutions.items()}
        widths = {c: round(cv.edge_width_px, 3) for c, cv in v.cameras.items()}
        used = [e for e in errors.values() if e is not None]
        worst = max(used) if used else None
        views.append({
            "view_id": v.view_id, "source": v.source, "position": v.position,
            "captured": v.captured,
            "lsl_time": {c: cv.lsl_time for c, cv in v.cameras.items()},
            "corners_detected": v.corners_detected, "edge_width_px": widths,
            "reprojection_error_px": {
                c: None if e is None else round(e, 5) for c, e in errors.items()
            },
            "used": worst is not None,
            "quality_score": None if worst is None else quality_score(worst, max(widths.values())),
        })  # fmt: skip
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "device": state.device, "created": now_iso(),
        "board": state.board.to_dict(), "model": model,
        "cameras": {c: _camera_json(s) for c, s in solutions.items()},
        "stereo": None, "views": views, "state": state_rel,
    }  # fmt: skip
    if stereo is not None:
        first, second = state.cameras[0], state.cameras[1]
        out["stereo"] = {
            "from": first, "to": second, "R": stereo.R.tolist(),
            "T_mm": stereo.T.tolist(), "baseline_mm": round(stereo.baseline_mm, 4),
            "rms_px": round(stereo.rms_px, 5),
            "per_view_error_px": {k: round(v, 5) for k, v in stereo.view_errors.items()},
            "dropped_views": _dropped(stereo.dropped),
        }  # fmt: skip
    return out


def write_result(root: Path, path: Path, doc: dict[str, Any]) -> None:
    """Write the result atomically, never through a symbolic link."""
    ensure_inside(root, path)
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode() + b"\n")


def parse_result(doc: dict[str, Any], rel: str) -> DeviceCalibration:
    """Turn a result document into a `DeviceCalibration`.

    Raises
    ------
    KeyError, TypeError, ValueError
        If the document lacks a required field.
    """
    cams = {
        name: CameraCalibration(
            camera=name,
            camera_matrix=np.asarray(c["camera_matrix"], float).reshape(3, 3),
            distortion=np.asarray(c["distortion"], float).ravel(),
            rms_px=float(c["rms_px"]),
            image_size=(int(c["image_size"][0]), int(c["image_size"][1])),
            per_view_error_px=dict(c.get("per_view_error_px") or {}),
            dropped_views=list(c.get("dropped_views") or []),
        )
        for name, c in doc["cameras"].items()
    }
    st = doc.get("stereo")
    stereo = None
    if st:
        stereo = StereoCalibration(
            from_camera=str(st["from"]), to_camera=str(st["to"]),
            R=np.asarray(st["R"], float).reshape(3, 3),
            T=np.asarray(st["T_mm"], float).ravel(),
            baseline_mm=float(st["baseline_mm"]), rms_px=float(st["rms_px"]),
            per_view_error_px=dict(st.get("per_view_error_px") or {}),
            dropped_views=list(st.get("dropped_views") or []),
        )  # fmt: skip
    return DeviceCalibration(
        device=str(doc["device"]), path=rel, board=dict(doc.get("board") or {}),
        cameras=cams, stereo=stereo, views=list(doc.get("views") or []),
        created=str(doc.get("created")),
    )  # fmt: skip


def load_calibrations(
    root: Path, meta: dict[str, Any] | None = None, problems: list[str] | None = None
) -> dict[str, DeviceCalibration]:
    """Every device calibration of a session folder, by device id.

    The files named in ``metadata["calibration"]`` come first; any other
    ``processing/calibration/*.json`` result is loaded too. An unreadable file is
    skipped and named in ``problems``.
    """
    root = Path(root)
    folder = root / CALIBRATION_DIR
    refs = ((meta or {}).get("calibration") or {}) if isinstance(meta, dict) else {}
    paths: list[str] = [
        str(r.get("file"))
        for r in refs.values()
        if isinstance(r, dict) and r.get("file")
    ]
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            rel = f"{CALIBRATION_DIR}/{p.name}"
            if not p.name.endswith(".state.json") and rel not in paths:
                paths.append(rel)
    out: dict[str, DeviceCalibration] = {}
    for rel in paths:
        path = (root / rel).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            continue
        try:
            cal = parse_result(json.loads(path.read_bytes()), rel)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            msg = f"{rel}: unreadable calibration ({type(exc).__name__}: {exc})"
            logger.warning("%s", msg)
            if problems is not None:
                problems.append(msg)
            continue
        out[cal.device] = cal
    return out
