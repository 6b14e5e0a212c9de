"""The demo lab: a config whose devices are all simulated (SPEC §13).

``configs/demo.toml`` is `demo_toml` with two phones (a test keeps them equal), so
``lsl-session record --config configs/demo.toml --simulate`` runs what
``lsl-session demo`` runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lsl_session.config import SessionConfig, load_config

#: Clock skews of the demo phones (offset s, drift ppm), cycled.
DEMO_CLOCKS = ((3600, 50), (-3600, -50), (1800, 25), (-900, -35))

_HEADER = """\
# The demo lab: two phones through the real relay, a Shimmer3 emulator through the
# real pyshimmer driver, a synthetic webcam and a stimulus marker stream, all
# simulated and pulsing together (SPEC §13). `lsl-session demo` runs this config;
# `lsl-session record --config configs/demo.toml --simulate` runs it too.
# Schema: docs/configs.md.
[session]
name = "demo"

[record]
duration_s = {duration:g}
wait_s = 20
upload_timeout_s = 30

[simulate]
sync_every_s = 4        # every simulated device pulses together this often

[markers]
name = "StimulusMarkers"   # simulated: carries the sync_pulse reference markers
"""

_WEBCAM = """
[[devices]]
id = "webcam_1"
type = "pc_webcam"
capabilities = ["rgb_video"]
simulate = true
fps = 30
"""

_SHIMMER = """
[[devices]]
id = "shimmer_1"
type = "shimmer_gsr"
capabilities = ["gsr_data"]
simulate = true
rate = 128
"""

_PHONE = """
[[devices]]
id = "phone_{n}"
type = "android_phone"
capabilities = ["rgb_video", "thermal_video", "gsr_data", "motion_data"]
token = "demo-token-{n}"
simulate = true
clock_offset_s = {offset}
drift_ppm = {drift}
"""


def demo_toml(
    phones: int = 2,
    duration: float = 20.0,
    *,
    webcam: bool = True,
    shimmer: bool = True,
    markers: bool = True,
) -> str:
    """The demo config as TOML text, with ``phones`` simulated phones."""
    text = _HEADER.format(duration=duration)
    if not markers:
        text = text[: text.index("[markers]")]
    text += (_WEBCAM if webcam else "") + (_SHIMMER if shimmer else "")
    for i in range(phones):
        offset, drift = DEMO_CLOCKS[i % len(DEMO_CLOCKS)]
        text += _PHONE.format(n=i + 1, offset=offset, drift=drift)
    return text


def demo_config(
    phones: int = 2, duration: float = 20.0, **devices: bool
) -> SessionConfig:
    """The validated demo config (parsed from `demo_toml`, same arguments)."""
    with tempfile.TemporaryDirectory(prefix="lsl-session-demo-") as folder:
        path = Path(folder) / "demo.toml"
        path.write_text(demo_toml(phones, duration, **devices), encoding="utf-8")
        config = load_config(path, simulate=True)
    return config
