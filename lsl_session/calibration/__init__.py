"""Camera calibration: boards, view selection, intrinsics and RGB↔thermal stereo.

``lsl-session calibrate`` (`lsl_session.cli.calibrate`) drives
`lsl_session.calibration.run.CalibrationRun`; results are
``processing/calibration/<device>.json``, loaded by
`lsl_session.calibration.result.load_calibrations` and
``load_session(...).calibration``.
"""
