"""Hostile LabRecorder.cfg files (#31): one-line errors, no hang, no traceback.

``lsl-session record --labrecorder-config FILE`` runs as a subprocess; the fuzz
feeds mutated configs to the reader (10,000 cases with ``-m slow``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from lsl_session.errors import ConfigError
from lsl_session.labrecorder import MAX_REQUIRED, read_labrecorder_config

GOOD = (
    "; LabRecorder.cfg\n[General]\nStudyRoot=data\nRCSEnabled=1\nRCSPort=22345\n"
    'RequiredStreams="EEG (lab-pc)", "Markers (lab-pc)"\n'
    'SessionBlocks="Rest", "Task"\nAutoStart=0\nOnlineSync=\n'
)


def _record(cfg: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", "record", "--labrecorder-config",
         str(cfg), "--root", str(root), "--no-process", "--duration", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"RCSPort=\xc2\xb2\n", "RCSPort must be 1-65535"),
        (b"RCSPort=" + b"9" * 5000 + b"\n", "RCSPort must be 1-65535"),
        (b"StudyRoot=/tmp/a\x00b\n", "NUL byte on line 1"),
        (
            b"RequiredStreams=" + b", ".join(b"s%d" % i for i in range(30_000)) + b"\n",
            f"RequiredStreams lists 30000 streams, at most {MAX_REQUIRED}",
        ),
        (b"StudyRoot=~nosuchuser_31/x\n", "Could not determine home directory"),
    ],
    ids=["superscript-port", "5000-digit-port", "nul", "30000-required", "tilde-user"],
)
def test_bad_cfg_is_one_line_error_from_the_cli(tmp_path, content, message):
    cfg = tmp_path / "LabRecorder.cfg"
    cfg.write_bytes(content)
    proc = _record(cfg, tmp_path / "rec")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(cfg) in errors[0], proc.stderr[-2000:]
    assert message in errors[0]


def test_fifo_named_cfg_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "x.cfg"
    os.mkfifo(fifo)
    proc = _record(fifo, tmp_path / "rec")  # timeout 120 s: a hang fails here
    assert proc.returncode == 1
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_cp1252_cfg_with_accents_is_read(tmp_path):
    cfg = tmp_path / "LabRecorder.cfg"
    cfg.write_bytes('StudyRoot=études\nSessionBlocks="Réponse"\n'.encode("cp1252"))
    config = read_labrecorder_config(cfg)
    assert config.root == tmp_path / "études"
    assert config.blocks == ("Réponse",)


# ------------------------------------------------------------------ fuzz


def _mutate(rng: random.Random, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        pos = rng.randrange(len(data) + 1)
        if op == 0:  # random bytes
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 1 and data:  # delete a span
            del data[pos : pos + rng.randint(1, 20)]
        elif op == 2:  # an interesting value
            data[pos:pos] = rng.choice([
                b"\xc2\xb2", b"\x00", b'"', b"\\", b"=", b"\n", b"[", b"]", b"%",
                b"9" * 5000, b"\xe9", b"\xff\xfe", b"~", b"C:/x", b",", b"(", b")",
                "é".encode("cp1252"), "٣".encode(), b"\r\n", b"\t",
            ])  # fmt: skip
        elif op == 3:  # a key with a hostile value
            key = rng.choice([b"RCSPort", b"RCSEnabled", b"AutoStart", b"StudyRoot",
                              b"StorageLocation", b"RequiredStreams", b"SessionBlocks",
                              b"PathTemplate", b"BidsModalities", b"Unknown"])  # fmt: skip
            value = rng.choice([b"", b"-1", b"0", b"65536", b"1e3", b"\xef\xbc\x91",
                                b'"a", "b', b"x" * rng.randint(1, 5000),
                                b", ".join([b"s"] * rng.randint(1, 200))])  # fmt: skip
            data[pos:pos] = b"\n" + key + b"=" + value + b"\n"
        elif op == 4 and data:  # flip a bit
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 5:  # duplicate a span
            data[pos:pos] = data[pos : pos + rng.randint(1, 200)]
        else:  # a section header
            data[pos:pos] = b"\n[" + rng.randbytes(rng.randint(0, 6)) + b"]\n"
    return bytes(data)


def _fuzz(tmp_path: Path, cases: int) -> dict[str, int]:
    rng = random.Random(31)
    path = tmp_path / "fuzz.cfg"
    outcomes = {"read": 0, "refused": 0}
    tracemalloc.start()
    try:
        for _ in range(cases):
            path.write_bytes(_mutate(rng, GOOD.encode()))
            try:
                read_labrecorder_config(path)
                outcomes["read"] += 1
            except ConfigError as exc:  # anything else is a traceback: fails here
                text = str(exc)
                assert "\n" not in text and len(text) < 1000, text[:300]
                outcomes["refused"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    outcomes["peak_kib"] = peak // 1024
    return outcomes


def test_cfg_reader_fuzz_short(tmp_path):
    outcomes = _fuzz(tmp_path, 500)
    assert outcomes["read"] and outcomes["refused"]  # both paths were exercised


@pytest.mark.slow
def test_cfg_reader_fuzz_10000(tmp_path):
    outcomes = _fuzz(tmp_path, 10_000)
    print(f"\ncfg fuzz 10,000: {outcomes}")  # noqa: T201
    assert outcomes["read"] and outcomes["refused"]
