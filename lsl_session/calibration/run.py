"""One calibration of one device: frames in, kept views, state, solution, result.

Every kept view is written to the state file at once (atomically) and logged as
a ``calibration_capture`` event, so a run killed at any moment resumes with the
views it kept (`CalibrationRun` reloads the state and continues the source from
its cursor).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lsl_session.calibration.board import BoardSpec
from lsl_session.calibration.detect import Detection, Refusal
from lsl_session.calibration.result import CALIBRATION_DIR, result_json, write_result
from lsl_session.calibration.select import Coverage, SelectorConfig, ViewSelector
from lsl_session.calibration.solve import (
    MIN_VIEWS,
    CalibrationError,
    calibrate_camera,
    calibrate_stereo,
)
from lsl_session.calibration.sources import Frame, FrameSource, pair_by_time
from lsl_session.calibration.state import (
    CalibrationState,
    CameraView,
    KeptView,
    StateError,
    load_state,
    save_state,
    state_path,
)
from lsl_session.fsutil import atomic_write_bytes, ensure_inside
from lsl_session.metadata import now_iso

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Options of a calibration run.

    Attributes
    ----------
    wanted : int
        Views to keep before solving (the seed's ``total_points``).
    model : str
        Lens model (see `lsl_session.calibration.solve.MODELS`).
    selector : SelectorConfig
    pair_tolerance_s : float
        Largest LSL time difference of a stereo pair.
    fresh : bool
        Start over even when a state exists.
    """

    wanted: int = 15
    model: str = "radtan"
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    pair_tolerance_s: float = 0.02
    fresh: bool = False


@dataclass(slots=True)
class Progress:
    """What a progress display gets after each frame."""

    kept: int
    wanted: int
    position: int
    label: str
    refusal: Refusal | None
    coverage: dict[str, Coverage]
    refused: dict[str, int]
    resumed: int = 0


class CalibrationRun:
    """Capture views for one device and solve its calibration.

    Parameters
    ----------
    session : lsl_session.session.Session
    device : str
    board : BoardSpec
    cameras : list of str
        ``["rgb"]``, ``["thermal"]`` or ``["rgb", "thermal"]`` (stereo).
    source : FrameSource
        Frames of the first camera.
    second : FrameSource | None
        Frames of the second camera (stereo), paired by LSL time.
    options : RunOptions
    progress : callable | None
        Called with a `Progress` after every frame.
    """

    def __init__(
        self, session: Any, device: str, board: BoardSpec, cameras: list[str],
        source: FrameSource, second: FrameSource | None = None,
        options: RunOptions | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:  # fmt: skip
        if (second is None) != (len(cameras) == 1):
            raise CalibrationError("a stereo calibration needs two sources")
        self.session = session
        self.root = Path(session.root)
        self.device = device
        self.board = board
        self.cameras = cameras
        self.source = source
        self.second = second
        self.options = options or RunOptions()
        self.progress = progress
        self.dir = ensure_inside(self.root, self.root / CALIBRATION_DIR)
        self.state_file = state_path(self.dir, device)
        self.result_file = self.dir / f"{device}.json"
        self.state = self._open_state()
        self.selector = ViewSelector(board, self.options.selector)
        self.coverage: dict[str, Coverage] = {}
        for v in self.state.views:
            self.selector.kept.append((v.view_id, *self._arrays(v.cameras[cameras[0]])))
            for cam, cv in v.cameras.items():
                self._coverage(cam).add(np.asarray(cv.corners))

    # ------------------------------------------------------------ state
    @staticmethod
    def _arrays(cv: CameraView) -> tuple[np.ndarray, np.ndarray]:
        obs = cv.observation()
        return obs.corners, obs.ids

    def _coverage(self, cam: str) -> Coverage:
        if cam not in self.coverage:
            size = self.state.image_sizes.get(cam) or [1, 1]
            self.coverage[cam] = Coverage((int(size[0]), int(size[1])))
        return self.coverage[cam]

    def _open_state(self) -> CalibrationState:
        self.dir.mkdir(parents=True, exist_ok=True)
        ensure_inside(self.root, self.dir)
        state = None if self.options.fresh else load_state(self.state_file)
        if state is not None:
            if state.board != self.board or state.cameras != self.cameras:
                raise StateError(
                    f"{self.device} has a calibration with board {state.board.spec()} "
                    f"and cameras {'+'.join(state.cameras)} in this session; give the "
                    "same, or --fresh to start over"
                )
            state.wanted = max(state.wanted, self.options.wanted)
            if state.status != "solved" or len(state.views) < state.wanted:
                state.status = "capturing"
                state.recovery_count += 1
            self.resumed = len(state.views)
            return state
        self.resumed = 0
        state = CalibrationState(
            device=self.device, board=self.board, cameras=list(self.cameras),
            wanted=self.options.wanted, source=self.source.description,
        )  # fmt: skip
        save_state(self.root, self.state_file, state)
        return state

    def _reference(self, **fields: Any) -> None:
        rel_state = self.state_file.relative_to(self.root).as_posix()
        rel_file = self.result_file.relative_to(self.root).as_posix()

        def change(meta: dict[str, Any]) -> None:
            ref = meta.setdefault("calibration", {}).setdefault(self.device, {})
            ref.update(file=rel_file, state=rel_state, board=self.board.spec(),
                       cameras=list(self.cameras), updated=now_iso(), **fields)  # fmt: skip

        self.session.update(change)

    # ------------------------------------------------------------ capture
    def _items(self) -> Iterator[tuple[int, str, dict[str, Frame | None]]]:
        start = self.state.cursor
        if self.second is None:
            for f in self.source.frames(start):
                yield f.position, f.label, {self.cameras[0]: f}
        else:
            tol = self.options.pair_tolerance_s
            for f1, f2 in pair_by_time(self.source, self.second, tol, start):
                yield f1.position, f1.label, {self.cameras[0]: f1, self.cameras[1]: f2}

    def _judge(self, frames: dict[str, Frame | None]) -> dict[str, Detection] | Refusal:
        """Every camera's frame is looked at (so each one's stillness stays
        current); the first refusal, in camera order, is the answer."""
        found: dict[str, Detection] = {}
        refusals: list[Refusal] = []
        for cam in self.cameras:
            got = self._judge_one(cam, frames.get(cam))
            if isinstance(got, Refusal):
                prefix = f"{cam}: " if len(self.cameras) > 1 else ""
                refusals.append(Refusal(got.code, prefix + got.reason))
            else:
                found[cam] = got
        if refusals:
            return refusals[0]
        first = found[self.cameras[0]]
        if len(found) == 2 and self.board.kind == "chessboard":
            second = found[self.cameras[1]]
            v1 = first.corners[-1] - first.corners[0]
            v2 = second.corners[-1] - second.corners[0]
            if float(np.dot(v1, v2)) < 0:  # a turned board read the other way round
                found[self.cameras[1]] = replace(
                    second, corners=second.corners[::-1].copy()
                )
        return self.selector.duplicate_of(first) or found

    def _judge_one(self, cam: str, frame: Frame | None) -> Detection | Refusal:
        if frame is None:
            self.selector.forget(cam)
            tol = self.options.pair_tolerance_s * 1000
            return Refusal(
                "unpaired", f"no {cam} frame within {tol:g} ms of this frame's LSL time"
            )
        if frame.image is None:
            self.selector.forget(cam)
            return Refusal("unreadable", frame.error or "unreadable frame")
        got = self.selector.check(cam, frame.image, continuous=self.source.continuous)
        if isinstance(got, Refusal):
            return got
        size = list(got.image_size)
        known = self.state.image_sizes.setdefault(cam, size)
        if known != size:
            return Refusal(
                "size", f"image is {size[0]}x{size[1]}, earlier views "
                f"{known[0]}x{known[1]}",
            )  # fmt: skip
        return got

    def _save_images(
        self, view_id: str, frames: dict[str, Frame | None]
    ) -> dict[str, str]:
        folder = ensure_inside(self.root, self.dir / self.device)
        folder.mkdir(exist_ok=True)
        out = {}
        for cam, f in frames.items():
            if f is None or f.image is None:
                continue
            ok, png = cv2.imencode(".png", f.image)
            if ok:
                path = folder / f"{view_id}_{cam}.png"
                atomic_write_bytes(ensure_inside(self.root, path), png.tobytes())
                out[cam] = path.relative_to(self.root).as_posix()
        return out

    def _keep(self, position: int, label: str, frames: dict[str, Frame | None],
              found: dict[str, Detection]) -> None:  # fmt: skip
        view_id = self.state.next_view_id()
        images = self._save_images(view_id, frames) if self.source.live else {}
        cams = {}
        for cam, det in found.items():
            frame = frames[cam]
            cams[cam] = CameraView(
                corners=np.round(det.corners.astype(float), 4).tolist(),
                ids=det.ids.astype(int).tolist(),
                edge_width_px=round(det.edge_width_px, 4),
                frame=frame.position if frame else None,
                lsl_time=frame.lsl_time if frame else None,
                image=images.get(cam),
            )
        view = KeptView(view_id, label, position, now_iso(), cams)
        self.state.views.append(view)
        self.state.cursor = position + 1
        save_state(self.root, self.state_file, self.state)
        self.selector.keep(view_id, found[self.cameras[0]])
        for cam, det in found.items():
            self._coverage(cam).add(det.corners)
        self._log_capture(view)

    def _log_capture(self, view: KeptView, **extra: Any) -> None:
        n = 1 + self.state.views.index(view)
        self.session.log_event(
            "calibration_capture",
            {"device": self.device, "run_id": self.state.run_id,
             "view_id": view.view_id, "source": view.source,
             "position": view.position, "cameras": list(view.cameras),
             "corners_detected": view.corners_detected,
             "lsl_time": {c: cv.lsl_time for c, cv in view.cameras.items()},
             "edge_width_px": {c: cv.edge_width_px for c, cv in view.cameras.items()},
             "completed_points": n, "total_points": self.state.wanted,
             "coverage": round(self._coverage(self.cameras[0]).fraction, 3), **extra},
        )  # fmt: skip

    def _reconcile_events(self) -> None:
        """Log the views a crash kept without their event (killed in between)."""
        logged = set()
        try:
            events = json.loads(Path(self.session.paths.log).read_bytes())
        except (OSError, ValueError):
            events = []  # a torn log: `recover` repairs it; log every view again
        for e in events if isinstance(events, list) else []:
            if (
                isinstance(e, dict) and e.get("event") == "calibration_capture"
                and e.get("run_id") == self.state.run_id
            ):  # fmt: skip
                logged.add(e.get("view_id"))
        for view in self.state.views:
            if view.view_id not in logged:
                self._log_capture(view, recovered=True)

    def capture(self) -> int:
        """Look at frames until enough views are kept or the source ends.

        Returns
        -------
        int
            Number of kept views.
        """
        if self.state.status == "capturing":
            self._reference(status="capturing")
        if self.resumed:
            self._reconcile_events()
            self._notify(self.state.cursor, "", None)
        last = None
        for position, label, frames in self._items():
            if len(self.state.views) >= self.state.wanted:
                break
            judged = self._judge(frames)
            last = position
            if isinstance(judged, Refusal):
                self.state.refused[judged.code] = (
                    self.state.refused.get(judged.code, 0) + 1
                )
                self._notify(position, label, judged)
                continue
            self._keep(position, label, frames, judged)
            self._notify(position, label, None)
        if last is not None and len(self.state.views) < self.state.wanted:
            self.state.cursor = last + 1  # the source is used up
        save_state(self.root, self.state_file, self.state)
        return len(self.state.views)

    def _notify(self, position: int, label: str, refusal: Refusal | None) -> None:
        if self.progress is not None:
            self.progress(
                Progress(len(self.state.views), self.state.wanted, position, label,
                         refusal, self.coverage, dict(self.state.refused), self.resumed)
            )  # fmt: skip

    # ------------------------------------------------------------ solve
    def solve(self) -> dict[str, Any]:
        """Solve every camera (and the stereo pair), write and reference the result.

        Raises
        ------
        CalibrationError
            With too few views; the state is kept, so a later run can add views.
        """
        n = len(self.state.views)
        if n < MIN_VIEWS:
            raise CalibrationError(
                f"only {n} views kept for {self.device} (at least {MIN_VIEWS} needed, "
                f"{self.state.wanted} wanted); the state is kept: run again to add views"
            )
        solutions = {}
        for cam in self.cameras:
            views = {v.view_id: v.cameras[cam].observation() for v in self.state.views}
            size = tuple(self.state.image_sizes[cam])
            solutions[cam] = calibrate_camera(
                self.board, views, size, model=self.options.model
            )  # type: ignore[arg-type]
        stereo = None
        if len(self.cameras) == 2:
            a, b = self.cameras
            pairs = {
                v.view_id: (v.cameras[a].observation(), v.cameras[b].observation())
                for v in self.state.views
            }
            stereo = calibrate_stereo(self.board, solutions[a], solutions[b], pairs)
        rel_state = self.state_file.relative_to(self.root).as_posix()
        doc = result_json(self.state, solutions, stereo, rel_state, self.options.model)
        write_result(self.root, self.result_file, doc)
        self.state.status = "solved"
        save_state(self.root, self.state_file, self.state)
        summary: dict[str, Any] = {
            "status": "solved", "views": n,
            "rms_px": {c: doc["cameras"][c]["rms_px"] for c in self.cameras},
        }  # fmt: skip
        if stereo is not None:
            summary["baseline_mm"] = doc["stereo"]["baseline_mm"]
            summary["stereo_rms_px"] = doc["stereo"]["rms_px"]
        self._reference(**summary)
        return doc
