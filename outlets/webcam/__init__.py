"""Webcam → mp4 + LSL frame indices: the outlet, the synthetic video source, its CLI."""

from __future__ import annotations

from outlets._base import OutletError
from outlets.webcam.outlet import WebcamOutlet, webcam_device_id
from outlets.webcam.synthetic import GroundTruth, SyntheticVideo

__all__ = [
    "GroundTruth",
    "OutletError",
    "SyntheticVideo",
    "WebcamOutlet",
    "webcam_device_id",
]
