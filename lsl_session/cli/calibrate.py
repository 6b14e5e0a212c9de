"""``lsl-session calibrate``: camera calibration views into a session, solved and
stored as ``processing/calibration/<device>.json`` (see docs/calibration.md)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from lsl_session.cli._options import root_option
from lsl_session.errors import LslSessionError

logger = logging.getLogger(__name__)

_DEVICE_TYPES = {
    "rgb": "pc_webcam",
    "thermal": "thermal_camera",
    "stereo": "android_phone",
}
_CAPS = {"rgb": ["rgb_video"], "thermal": ["thermal_video"],
         "stereo": ["rgb_video", "thermal_video"]}  # fmt: skip
#: Seconds between two progress lines about refused frames of a video or camera.
_REFUSAL_EVERY_S = 1.0


def _find_unfinished(root: Path, device: str) -> Path | None:
    """The newest session under ``root`` with an unfinished calibration of ``device``."""
    from lsl_session.metadata import read_metadata

    if not root.is_dir():
        return None
    best = None
    for folder in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        try:
            ref = (read_metadata(folder).get("calibration") or {}).get(device) or {}
        except LslSessionError:
            continue
        if isinstance(ref, dict) and ref.get("status") == "capturing":
            best = folder
    return best


def _open_session(session_dir: Path | None, root: Path, name: str, device: str):
    from lsl_session.session import Session

    if session_dir is not None:
        return Session(session_dir)
    found = _find_unfinished(root, device)
    if found is not None:
        click.echo(
            f"resuming the unfinished calibration of {device} in {found}", err=True
        )
        return Session(found)
    from lsl_session.manager import SessionManager

    manager = SessionManager(root, lsl_events=False)
    manager.create_session(name)
    folder = manager.session_dir
    manager.close()
    click.echo(f"created session {folder.name}", err=True)
    return Session(folder)


class _Display:
    """Progress on stderr: kept/wanted, refusals, the coverage map."""

    def __init__(self, continuous: bool) -> None:
        self.continuous = continuous
        self.last_kept = -1
        self.last_refusal = ("", 0.0)

    def __call__(self, p: Any) -> None:
        if p.refusal is not None:
            now = time.monotonic()
            code, when = self.last_refusal
            if (
                self.continuous
                and code == p.refusal.code
                and now - when < _REFUSAL_EVERY_S
            ):
                return
            self.last_refusal = (p.refusal.code, now)
            click.echo(f"  refused {p.label}: {p.refusal.reason}", err=True)
            return
        if p.kept == self.last_kept:
            return
        if self.last_kept < 0 and p.resumed:
            click.echo(f"resumed with {p.resumed} views already kept", err=True)
        self.last_kept = p.kept
        cams = list(p.coverage)
        cover = ", ".join(f"{c} {100 * p.coverage[c].fraction:.0f}%" for c in cams)
        label = f" ({p.label})" if p.label else ""
        click.echo(f"kept {p.kept}/{p.wanted} views{label}; coverage {cover}", err=True)
        maps = [p.coverage[c].lines() for c in cams]
        for row in zip(*maps, strict=True):
            click.echo("  " + "   ".join(row), err=True)


def _configured(config: Path, device: str) -> tuple[int | None, Path | None]:
    """The camera index or video file of ``device`` in a session config."""
    from lsl_session.config import load_config

    cfg = load_config(config)
    found = next((d for d in cfg.devices if d.device_id == device), None)
    if found is None:
        known = ", ".join(d.device_id for d in cfg.devices) or "none"
        raise click.UsageError(f"no device {device!r} in {config} (devices: {known})")
    if found.device_type == "android_phone":
        raise click.UsageError(
            f"{device} is a phone: record a session with it (its frames come with the "
            f"upload), then `lsl-session calibrate SESSION_DIR --device {device}`"
        )
    if found.device_type != "pc_webcam":
        raise click.UsageError(f"{device} is a {found.device_type}, not a camera")
    return found.options.get("device"), found.options.get("file")


def _sources(
    session: Any, device: str, kind: str, src: Path | None, thermal_from: Path | None,
    camera: int | None, realtime: bool, max_frames: int | None,
) -> tuple[list[str], Any, Any]:  # fmt: skip
    from lsl_session.calibration.recorded import device_videos, recorded_sources
    from lsl_session.calibration.sources import CameraSource, open_path

    if thermal_from is not None:
        if src is None:
            raise click.UsageError("--thermal-from needs --from (the RGB frames)")
        return (["rgb", "thermal"], open_path(src, realtime=realtime),
                open_path(thermal_from, realtime=False))  # fmt: skip
    if src is not None and camera is not None:
        raise click.UsageError("give --from or --camera, not both")
    if src is not None:
        return [kind], open_path(src, realtime=realtime), None
    if camera is not None:
        return [kind], CameraSource(camera, max_frames=max_frames), None
    root = Path(session.root)
    stereo = kind == "rgb" and device_videos(root, device, "thermal")
    cams = ["rgb", "thermal"] if stereo else [kind]
    found = recorded_sources(root, device, cams, realtime=realtime)
    return cams, found[cams[0]], found.get(cams[1]) if stereo else None


@click.command(
    "calibrate",
    epilog="\b\nExamples:\n"
    "  lsl-session calibrate --device webcam_1 --camera 0 --views 15\n"
    "  lsl-session calibrate --device webcam_1 --config lab.toml\n"
    "  lsl-session calibrate --device webcam_1 --from shots/ --board chessboard:9x6:25mm\n"
    "  lsl-session calibrate --device flir --kind thermal --from thermal.mp4\n"
    "  lsl-session calibrate --device rig --from rgb/ --thermal-from thermal/\n"
    "  lsl-session calibrate recordings/calibration_run_20250731_143022 --device phone_1",
)
@click.argument(
    "session_dir", required=False, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--device", required=True, help="Device id (the result is <device>.json)."
)
@click.option(
    "--from",
    "src",
    type=click.Path(path_type=Path),
    help="A folder of images or a video (the RGB frames with --thermal-from).",
)
@click.option(
    "--thermal-from",
    type=click.Path(path_type=Path),
    help="Thermal folder or video: a stereo RGB↔thermal calibration.",
)
@click.option(
    "--camera", type=int, default=None, help="Capture live from OpenCV camera N."
)
@click.option(
    "--config", "config", type=click.Path(dir_okay=False, path_type=Path),
    help="A session config: capture from --device's camera (its index or file).",
)  # fmt: skip
@click.option(
    "--kind",
    type=click.Choice(["rgb", "thermal"]),
    default="rgb",
    show_default=True,
    help="What a single source shows.",
)
@click.option(
    "--board",
    "board_spec",
    default="chessboard:9x6:25mm",
    show_default=True,
    help="chessboard:COLSxROWS:SQUAREmm or charuco:COLSxROWS:SQUAREmm:MARKERmm[:DICT].",
)
@click.option(
    "--views",
    type=click.IntRange(4, 500),
    default=15,
    show_default=True,
    help="Views to keep before solving.",
)
@click.option(
    "--model",
    type=click.Choice(["radtan", "k3", "rational"]),
    default="radtan",
    show_default=True,
    help="Lens distortion model.",
)
@click.option(
    "--max-blur",
    type=click.FloatRange(0.5, 50),
    default=4.0,
    show_default=True,
    help="Refuse views whose board edges are wider than this (px).",
)
@click.option(
    "--pair-tolerance-ms",
    type=click.FloatRange(0.1, 1000),
    default=20.0,
    show_default=True,
    help="Stereo: largest LSL time gap of an RGB/thermal pair.",
)
@click.option(
    "--realtime", is_flag=True, help="Replay a video at its frame rate, like a camera."
)
@click.option(
    "--max-frames",
    type=click.IntRange(1),
    default=None,
    help="--camera: stop after this many frames.",
)
@click.option(
    "--fresh", is_flag=True, help="Start over, dropping the views kept so far."
)
@click.option(
    "--name",
    default="calibration_run",
    show_default=True,
    help="Name of a new session (without SESSION_DIR).",
)
@click.option(
    "--device-type",
    default=None,
    help="Device type if the device is new to the session (default from --kind).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result document as JSON."
)
@root_option
def calibrate_command(
    session_dir: Path | None, device: str, src: Path | None, thermal_from: Path | None,
    camera: int | None, config: Path | None, kind: str, board_spec: str, views: int, model: str,
    max_blur: float, pair_tolerance_ms: float, realtime: bool, max_frames: int | None,
    fresh: bool, name: str, device_type: str | None, as_json: bool, root: Path,
) -> None:  # fmt: skip
    """Calibrate a camera (or an RGB + thermal pair) into a session.

    Keeps views where the whole board is found, sharp and still, and not a
    near-duplicate of a kept one; shows kept/wanted and a coverage map; then
    solves the intrinsics (and R, T, baseline for a stereo pair) and writes
    processing/calibration/<device>.json. Every kept view is saved at once: the
    same command after a crash resumes with the views kept so far.

    Without SESSION_DIR, the newest session under --root with an unfinished
    calibration of --device is resumed, else a new session is created. Without
    --from/--camera, the device's recorded videos in SESSION_DIR are used
    (RGB and thermal, paired by their LSL frame times). Last stdout line: the
    session folder.
    """
    from lsl_session import layout
    from lsl_session.calibration.board import parse_board
    from lsl_session.calibration.run import CalibrationRun, RunOptions
    from lsl_session.calibration.select import SelectorConfig

    layout.validate_device_id(device)
    board = parse_board(board_spec)
    if config is not None:
        if src is not None or camera is not None:
            raise click.UsageError("give --config, --from or --camera, not several")
        camera, src = _configured(config, device)
    if session_dir is None and src is None and camera is None:
        raise click.UsageError(
            "give SESSION_DIR (its recorded videos), --from or --camera"
        )
    session = _open_session(session_dir, root, name, device)
    second = source = None
    try:
        cams, source, second = _sources(session, device, kind, src, thermal_from,
                                        camera, realtime, max_frames)  # fmt: skip
        if device not in session.metadata().get("devices", {}):
            what = "stereo" if len(cams) == 2 else cams[0]
            session.add_device(device, device_type or _DEVICE_TYPES[what], _CAPS[what])
        options = RunOptions(
            wanted=views, model=model, selector=SelectorConfig(max_edge_px=max_blur),
            pair_tolerance_s=pair_tolerance_ms / 1000.0, fresh=fresh,
        )  # fmt: skip
        click.echo(f"calibrating {device} ({'+'.join(cams)}) from {source.description}"
                   f" with {board.spec()}: {views} views wanted", err=True)  # fmt: skip
        run = CalibrationRun(session, device, board, cams, source, second, options,
                             progress=_Display(source.continuous))  # fmt: skip
        run.capture()
        doc = run.solve()
    finally:
        for s in (source, second):
            if s is not None:
                s.close()
        session.close()
    if as_json:  # one JSON line, then the session folder
        click.echo(json.dumps(doc))
        click.echo(str(session.root))
        return
    for cam, c in doc["cameras"].items():
        k = c["camera_matrix"]
        click.echo(
            f"{cam}: RMS {c['rms_px']:.3f} px over {c['views_used']} views; fx {k[0][0]:.1f} "
            f"fy {k[1][1]:.1f} cx {k[0][2]:.1f} cy {k[1][2]:.1f}; "
            f"{len(c['dropped_views'])} views dropped"
        )
        for d in c["dropped_views"]:
            click.echo(f"  dropped {d['view_id']}: {d['reason']}")
    if doc["stereo"]:
        st = doc["stereo"]
        click.echo(
            f"stereo: baseline {st['baseline_mm']:.2f} mm, RMS {st['rms_px']:.3f} px"
        )
    click.echo(
        f"result: {Path(session.root) / 'processing' / 'calibration' / (device + '.json')}"
    )
    click.echo(str(session.root))


COMMANDS = [calibrate_command]
