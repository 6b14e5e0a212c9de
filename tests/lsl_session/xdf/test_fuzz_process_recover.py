"""Fuzzing ``process`` and ``recover`` on mutated XDF files (issue #15, item 9).

Each case mutates a fixture or a recording-like file (bit flips, overwrites, inserts,
deletes, truncation, spliced boundaries, huge lengths and counts, moved chunks, wrong
stream ids, mangled header numbers; see ``test_xdf_fuzz.mutate``), then:

- loads it with the processing loader and writes the synchronized tables and the CSV
  export (every 10th case also the MAT file), and
- repairs it like ``recover`` (every 25th case a whole ``recover_session``).

Allowed outcomes: success, or a library error (`LslSessionError`: a clear one-line
message). Bounds checked per case: no exception of any other kind; the output tree
at most 8 MB + 64× the input; the loaded arrays at most 64× the input; recovery is
idempotent and leaves a file whose tail is whole. Peak RSS of the whole run stays
below 1.5 GB. 150 cases by default, 10,000 with ``-m slow``.
"""

from __future__ import annotations

import json
import resource
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_xdf_fuzz import BASES, mutate

from lsl_session.errors import LslSessionError
from lsl_session.processing import to_csv, to_matlab, to_parquet
from lsl_session.processing.session_data import load_session
from lsl_session.recovery import recover_session
from lsl_session.recovery.xdf_repair import repair_xdf
from lsl_session.session import create_session_folder
from lsl_session.xdf import XdfFormatError, load_raw

MAX_RSS_BYTES = 1.5e9


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _held_bytes(data) -> int:
    total = 0
    for s in data.streams:
        total += s.time_stamps.nbytes
        series = s.time_series
        total += series.nbytes if isinstance(series, np.ndarray) else 8 * len(series)
    return total


def process_case(data: bytes, work: Path, mat: bool, errors: Counter) -> None:
    path = work / "case.xdf"
    path.write_bytes(data)
    out = work / "out"
    out.mkdir()
    try:
        loaded = load_session(path)
        assert _held_bytes(loaded) <= 64 * len(data) + 65_536
        to_parquet.write_synchronized(
            loaded.streams, out, t0=loaded.t0, rate=None, events=loaded.events,
            window=loaded.window,
        )  # fmt: skip
        to_csv.write_csv(loaded.streams, out, t0=loaded.t0, events=loaded.events)
        if mat:
            to_matlab.write_matlab(
                loaded.streams, out / "case.mat", t0=loaded.t0, events=loaded.events,
                session_id="case",
            )  # fmt: skip
        errors["processed"] += 1
        message = ""
    except (LslSessionError, XdfFormatError) as err:
        message = str(err)
        errors[f"process:{type(err).__name__}"] += 1
    assert len(message) <= 1000  # a bounded one-line error, not a dump
    assert _tree_bytes(out) <= 8e6 + 64 * len(data)


def recover_case(data: bytes, work: Path, whole: bool, errors: Counter) -> None:
    if whole:
        folder = create_session_folder(work / "root", "fz")
        xdf = folder / f"{folder.name}.xdf"
        xdf.write_bytes(data)
        meta_path = folder / "session_metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["status"] = "recording"
        meta["owner"] = {"pid": 2**22 + 7, "host": "elsewhere"}
        meta["recording"]["xdf_files"] = [xdf.name]
        meta_path.write_text(json.dumps(meta))
        report = recover_session(folder)
        assert report.status == "recovered"
        assert recover_session(folder).nothing_to_do  # idempotent
    else:
        xdf = work / "rec.xdf"
        xdf.write_bytes(data)
        repair_xdf(xdf)
        assert not repair_xdf(xdf).changed  # idempotent
    size = xdf.stat().st_size
    assert size <= len(data) + 65_536 * 8  # footers are small
    try:
        after = load_raw(xdf)
    except XdfFormatError:
        errors["recover:not_xdf"] += 1
        return
    assert after.last_good_offset == size  # no torn tail left
    errors["recovered"] += 1


def run_fuzz(n_cases: int, seed: int, tmp: Path) -> Counter:
    rng = np.random.default_rng(seed)
    errors: Counter = Counter()
    for case in range(n_cases):
        data = mutate(BASES[case % len(BASES)], rng)
        work = tmp / f"c{case}"
        work.mkdir()
        try:
            process_case(data, work, mat=case % 10 == 0, errors=errors)
            recover_case(data, work, whole=case % 25 == 0, errors=errors)
        except AssertionError:
            raise
        except Exception as err:
            (tmp / f"failing_case_{seed}_{case}.xdf").write_bytes(data)
            raise AssertionError(f"case {case} (seed {seed}) raised {err!r}") from err
        shutil.rmtree(work)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak < MAX_RSS_BYTES, f"peak RSS {peak / 1e6:.0f} MB"
    return errors


def test_fuzz_process_recover_default(tmp_path):
    errors = run_fuzz(150, seed=7, tmp=tmp_path)
    assert errors["processed"] >= 75 and errors["recovered"] >= 125, errors


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~7 min on the 2-core VM; a hang still fails
def test_fuzz_process_recover_many(tmp_path):
    errors = run_fuzz(10_000, seed=2025, tmp=tmp_path)
    assert errors["processed"] >= 5_000 and errors["recovered"] >= 9_000, errors
