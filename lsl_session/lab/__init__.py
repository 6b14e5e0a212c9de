"""The lab orchestration: a config's devices, the session, recording, processing.

``lsl-session record --config FILE`` and ``lsl-session demo`` both run
`LabRun`; the demo is `demo_config` with every device simulated.
"""

from lsl_session.lab.demo import demo_config, demo_toml
from lsl_session.lab.run import LabOptions, LabResult, LabRun

__all__ = [
    "LabOptions",
    "LabResult",
    "LabRun",
    "demo_config",
    "demo_toml",
]
