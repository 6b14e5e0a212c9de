"""liblsl's SessionID holds on every path that hands a predicate to liblsl (#23 item 1).

Two SessionIDs on this machine (``LSLAPICFG`` files with ``[lab] SessionID``):
each publishes streams with the same names and source_ids, pushing a value of its
own. Every recorder/lister runs in its own process under one SessionID and must
see only that SessionID's streams.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from lsl_helpers import wait_until

from lsl_session.errors import QueryError
from lsl_session.lsl import combine_queries, predicate, validate_query

CHILD = Path(__file__).with_name("_session_outlets.py")
VALUES = {"a": 1.0, "b": 2.0}


def test_combined_predicate_is_one_parenthesised_expression():
    assert combine_queries(["name='A'"]) == "(name='A')"
    assert combine_queries(["name='A'", "name='B'"]) == "((name='A') or (name='B'))"
    assert predicate("name='A' or name='B'") == "(name='A' or name='B')"
    # liblsl puts "session_id='X' and " in front: the and must cover everything
    assert combine_queries(["a", "b", "c"]).startswith("((")


@pytest.mark.parametrize(
    "query",
    ["name='A') or (true()", "name='A' or (", "name='A)", ")name='A'(", 'name="x'],
)
def test_a_query_cannot_escape_its_parentheses(query):
    with pytest.raises(QueryError, match="unbalanced"):
        validate_query(query)


def test_parentheses_inside_literals_are_fine():
    assert validate_query("name='Odd (x' or name=\"y)\"")


# ------------------------------------------------------------- across processes
def _lslcfg(tmp_path: Path, key: str, uid: str) -> dict[str, str]:
    cfg = tmp_path / f"lsl_api_{key}.cfg"
    cfg.write_text(f"[lab]\nSessionID = iso_{key}_{uid}\n")
    return {**os.environ, "LSLAPICFG": str(cfg)}


@contextlib.contextmanager
def _two_sessions(tmp_path: Path, uid: str, count: int = 5) -> Iterator[dict]:
    """Outlets ``sid_<uid>_s0..`` under SessionIDs a and b; yields their envs."""
    envs = {key: _lslcfg(tmp_path, key, uid) for key in VALUES}
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), f"sid_{uid}", str(count), str(VALUES[key])],
            env=envs[key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for key in VALUES
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        yield envs
    finally:
        for child in children:
            child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def _record(env: dict, root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--name", "sid", "--no-process", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _recorded(root: Path) -> dict[str, dict]:
    """``{name: {session_id, values, count}}`` of the XDF (the event stream left out)."""
    (session,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    streams, _ = pyxdf.load_xdf(
        str(session / f"{session.name}.xdf"),
        synchronize_clocks=False,
        dejitter_timestamps=False,
    )
    out = {}
    for s in streams:
        name = s["info"]["name"][0]
        if name.endswith("_events"):
            continue
        values = np.asarray(s["time_series"], dtype=float)
        out[name] = {
            "session_id": s["info"]["session_id"][0],
            "values": set(np.unique(values).tolist()),
            "count": len(values),
        }
    return out


def _check_own(recorded: dict, key: str, uid: str, names: set[str]) -> None:
    assert set(recorded) == names
    for name, rec in recorded.items():
        assert rec["session_id"] == f"iso_{key}_{uid}", name
        assert rec["values"] == {VALUES[key]}, (name, rec["values"])
        assert rec["count"] > 0


def _queries(uid: str, count: int) -> tuple[list[str], set[str]]:
    names = [f"sid_{uid}_s{i}" for i in range(5)]
    if count == 1:  # one query with an `or` inside
        return [f"name='{names[0]}' or name='{names[1]}'"], set(names[:2])
    return [f"name='{n}'" for n in names[:count]], set(names[:count])


def _finish(procs: dict[str, subprocess.Popen]) -> None:
    for key, proc in procs.items():
        _out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, (key, err)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_record_streams_of_its_own_session_only(tmp_path, uid, count):
    queries, names = _queries(uid, count)
    args = [a for q in queries for a in ("--stream", q)]
    with _two_sessions(tmp_path, uid) as envs:
        procs = {
            key: _record(env, tmp_path / key, *args, "--duration", "3")
            for key, env in envs.items()
        }
        _finish(procs)
    for key in VALUES:
        _check_own(_recorded(tmp_path / key), key, uid, names)


def test_lab_config_and_labrecorder_cfg_keep_the_session(tmp_path, uid):
    """``--config`` (a lab combines its queries) and LabRecorder.cfg's RequiredStreams."""
    names = [f"sid_{uid}_s{i}" for i in range(3)]
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nname = "sidlab"\n[record]\nwait_s = 0\nprocess = false\n'
        f"streams = [\"name='{names[0]}'\", \"name='{names[1]}'\"]\n"
    )
    labrec = tmp_path / "LabRecorder.cfg"
    labrec.write_text(f'RCSEnabled=0\nRequiredStreams="{names[1]}", "{names[2]}"\n')
    with _two_sessions(tmp_path, uid) as envs:
        procs = {}
        for key, env in envs.items():
            procs[f"cfg_{key}"] = _record(
                env, tmp_path / f"cfg_{key}", "--config", str(config),
                "--duration", "3", "--root", str(tmp_path / f"cfg_{key}"),
            )  # fmt: skip
            procs[f"lr_{key}"] = _record(
                env, tmp_path / f"lr_{key}", "--labrecorder-config", str(labrec),
                "--duration", "3",
            )  # fmt: skip
        _finish(procs)
    for key in VALUES:
        _check_own(_recorded(tmp_path / f"cfg_{key}"), key, uid, set(names[:2]))
        _check_own(_recorded(tmp_path / f"lr_{key}"), key, uid, set(names[1:]))


def test_remote_select_keeps_the_session(tmp_path, uid):
    """LabRecorder's remote ``select`` with several queries, one run."""
    names = [f"sid_{uid}_s{i}" for i in range(2)]
    with _two_sessions(tmp_path, uid) as envs:
        procs, ports = {}, {}
        for key, env in envs.items():
            procs[key] = _record(
                env, tmp_path / key, "--control-port", "0", "--status-interval", "60"
            )
        for key, proc in procs.items():
            line = ""
            while "remote control on" not in line:
                line = proc.stderr.readline()
                assert line, "record ended before listening"
            ports[key] = int(line.rsplit(":", 1)[1])
        for key in VALUES:
            with socket.create_connection(("127.0.0.1", ports[key]), timeout=20) as s:
                for n in names:
                    s.sendall(f"select name='{n}'\n".encode())
                s.sendall(b"start\n")
                time.sleep(3.0)
                s.sendall(b"stop\n")
                s.sendall(b"quit\n")
                s.settimeout(60)
                while s.recv(4096):
                    pass
        for proc in procs.values():
            proc.wait(timeout=90)
    for key in VALUES:
        assert wait_until(lambda k=key: _any_xdf(tmp_path / k), timeout=30)
        _check_own(_recorded(tmp_path / key), key, uid, set(names))


def _any_xdf(root: Path) -> bool:
    return root.exists() and any(root.glob("*/*.xdf"))


def test_streams_lists_its_own_session_only(tmp_path, uid):
    query = f"name='sid_{uid}_s0' or name='sid_{uid}_s1'"
    with _two_sessions(tmp_path, uid) as envs:
        listed = {
            key: subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lsl_session",
                    "streams",
                    query,
                    "--json",
                    "--wait",
                    "3",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for key, env in envs.items()
        }
        own_uids = {
            key: {
                r["uid"]
                for r in json.loads(
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "lsl_session",
                            "streams",
                            "--json",
                            "--wait",
                            "3",
                        ],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    ).stdout
                )
            }
            for key, env in envs.items()
        }
    assert not own_uids["a"] & own_uids["b"]
    for key, proc in listed.items():
        assert proc.returncode == 0, proc.stderr
        records = json.loads(proc.stdout)
        assert len(records) == 2
        assert {r["uid"] for r in records} <= own_uids[key]


def test_every_liblsl_predicate_goes_through_lsl_predicate():
    """Only lsl.py and the recorder's discovery hand predicates to liblsl resolvers,
    and both take them from `predicate`/`combine_queries` (a later UI must too)."""
    package = Path(__file__).parents[2]
    callers = set()
    for folder in ("lsl_session", "outlets"):
        for path in (package / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "resolve_bypred(" in text or "ContinuousResolver(pred" in text:
                callers.add(path.relative_to(package).as_posix())
    assert callers == {"lsl_session/lsl.py", "lsl_session/recorder/discovery.py"}
