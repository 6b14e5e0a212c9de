"""``webcam`` command: record a camera, file or synthetic source to mp4 + LSL."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from lsl_session.errors import LslSessionError
from lsl_session.signals import stop_on_signals
from outlets.webcam.outlet import WebcamOutlet

logger = logging.getLogger(__name__)

EPILOG = """\b
Examples:
  lsl-session outlet webcam --device 0 --session recordings/session_20250731_143022
  lsl-session outlet webcam --synthetic --fps 30 --out /tmp/video --duration 10
  lsl-session outlet webcam --file trial.mp4 --index 2 --out .
"""


@click.command("webcam", epilog=EPILOG)
@click.option("--device", type=click.IntRange(min=0), help="Camera device index.")
@click.option(
    "--file",
    "file_",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Video file to replay in real time.",
)
@click.option("--synthetic", is_flag=True, help="Synthetic frames with sync flashes.")
@click.option(
    "--fps", type=click.FloatRange(min=0, min_open=True, max=1000), help="Frame rate."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: the session's webcam/, else the current folder].",
)
@click.option(
    "--session",
    type=click.Path(file_okay=False, path_type=Path),
    help="Session folder: the video goes to its webcam/ and is registered.",
)
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Webcam n.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to record [default: until SIGINT/SIGTERM or the end of the file].",
)
@click.option(
    "--wait-consumer",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for an inlet (e.g. the recorder) before the first frame.",
)
def webcam(
    device: int | None,
    file_: Path | None,
    synthetic: bool,
    fps: float | None,
    out: Path | None,
    session: Path | None,
    index: int,
    duration: float | None,
    wait_consumer: float,
) -> None:
    """Record frames to webcam_<n>_YYYYMMDD_HHMMSS.mp4 and stream their indices.

    Each written frame's index is pushed on the LSL stream webcam_<n>_frames
    (type VideoFrames) with its capture time. Runs until SIGINT/SIGTERM,
    --duration or the end of a --file; the mp4 is then finalized and, with
    --session, registered in the session metadata. The last stdout line is the
    mp4's path.
    """
    chosen = [device is not None, file_ is not None, synthetic]
    if sum(chosen) != 1:
        raise click.UsageError("Pass exactly one of --device, --file, --synthetic.")
    source: int | Path | str = (
        device if device is not None else file_ if file_ is not None else "synthetic"
    )
    if out is None and session is None:
        out = Path.cwd()
    try:
        _silence_opencv()
        outlet = WebcamOutlet(
            source,
            fps=fps,
            out_dir=out,
            index=index,
            session_dir=session,
            wait_consumer=wait_consumer,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc))
    try:
        outlet.start()
    except LslSessionError as exc:
        raise click.ClickException(str(exc))
    with stop_on_signals(outlet.request_stop):
        try:
            click.echo(
                f"ready: {outlet.name} (source_id {outlet.source_id})"
                f" -> {outlet.file_path}",
                err=True,
            )
            outlet.wait(duration)
        finally:
            try:
                outlet.stop()
            except LslSessionError as exc:
                raise click.ClickException(str(exc))
    click.echo(f"{outlet.frames_written} frames", err=True)
    click.echo(str(outlet.file_path))


def _silence_opencv() -> None:
    """Keep OpenCV's multi-line warnings off stderr; errors are reported by us."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - older OpenCV builds
        pass


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    webcam()
