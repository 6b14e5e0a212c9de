"""``archive`` to a local path and to a real S3 server (moto, 127.0.0.1) cut mid-file;
``process`` and ``export --bids`` from the archive's URL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bids_support import make_eeg_session
from s3_support import BUCKET, CuttingProxy, s3_server  # noqa: F401
from sftp_support import PASSWORD, USER, sftp_server  # noqa: F401

from lsl_session.catalog import owner_record
from lsl_session.session import Session
from lsl_session.storage.archive import MANIFEST, archive_session

CLI = [sys.executable, "-m", "lsl_session"]


def _session(root: Path, big_mb: int = 0) -> Path:
    folder, _ = make_eeg_session(root, "arch")
    if big_mb:
        video = folder / "webcam" / "webcam_1_20250101_100000.mp4"
        video.write_bytes(os.urandom(big_mb << 20))
        s = Session(folder)
        s.add_file("webcam_1", "video", video)
        s.close()
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600,
                          env=env)  # fmt: skip


def test_archive_to_a_path_then_rerun_sends_nothing(tmp_path):
    folder = _session(tmp_path / "rec", big_mb=3)
    dest = tmp_path / "share"
    run = _cli("archive", str(folder), str(dest))
    assert run.returncode == 0, run.stderr
    copy = dest / folder.name
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert _sha(copy / path.relative_to(folder)) == _sha(path)
    meta = json.loads((folder / "session_metadata.json").read_text())
    record = meta["archives"][str(dest)]
    assert record["status"] == "complete" and record["files"] >= 4
    # the archived metadata says so too, and the manifest lists every file
    assert json.loads((copy / "session_metadata.json").read_text())["archives"]
    manifest = json.loads((copy / MANIFEST).read_text())["files"]
    assert manifest["webcam/webcam_1_20250101_100000.mp4"]["sha256"] == _sha(
        folder / "webcam/webcam_1_20250101_100000.mp4"
    )
    again = archive_session(folder, str(dest))
    assert again.sent_bytes == 0 and again.skipped == again.files
    # a file changed on the far side is found and sent again
    (copy / "webcam/webcam_1_20250101_100000.mp4").write_bytes(b"x" * (3 << 20))
    third = archive_session(folder, str(dest))
    # the video again, plus the metadata (its archive record changed) and manifest
    assert 3 << 20 < third.sent_bytes < (3 << 20) + 65536
    assert _sha(copy / "webcam/webcam_1_20250101_100000.mp4") == manifest[
        "webcam/webcam_1_20250101_100000.mp4"]["sha256"]  # fmt: skip


def test_a_recording_session_is_refused(tmp_path):
    folder = _session(tmp_path / "rec")
    s = Session(folder)
    s.set_status("recording", owner=owner_record())
    s.close()
    run = _cli("archive", str(folder), str(tmp_path / "share"))
    assert run.returncode == 1
    assert "recording" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "share" / folder.name / "session_metadata.json").exists()


def test_s3_cut_at_30_and_60_percent_resumes(tmp_path, s3_server):  # noqa: F811
    client, target = s3_server
    size = 48 << 20
    folder = _session(tmp_path / "rec", big_mb=48)
    proxy = CuttingProxy(target, cuts=[int(size * 0.3), int(size * 0.6)])
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url)
    url = f"s3://{BUCKET}/study"
    runs = []
    for _ in range(4):
        # 5 MiB parts, 2 in flight: a cut loses at most 10 MiB of the 48
        run = _cli("archive", str(folder), url, "--part-mb", "5", "--concurrency", "2",
                   env=env)  # fmt: skip
        runs.append(run)
        proxy.restore()
        if run.returncode == 0:
            break
        assert "run it again to resume" in run.stderr, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
        meta = json.loads((folder / "session_metadata.json").read_text())
        assert meta["archives"][url]["status"] == "partial"
    proxy.close()
    assert [r.returncode for r in runs] == [1, 1, 0], [r.stderr[-500:] for r in runs]
    assert proxy.cut_count == 2
    # resumed, not restarted (that would be 0.3 + 0.6 + 1 = 1.9 times the file)
    assert proxy.forwarded < 1.5 * size, proxy.forwarded
    key = f"study/{folder.name}/webcam/webcam_1_20250101_100000.mp4"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    local = (folder / "webcam/webcam_1_20250101_100000.mp4").read_bytes()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(local).hexdigest()
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"]["sha256"] == hashlib.sha256(local).hexdigest()
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["archives"][url]["status"] == "complete"
    # a re-run sends nothing, a readback re-run reads every object and agrees
    again = archive_session(folder, url)
    assert again.sent_bytes == 0
    checked = archive_session(folder, url, verify="readback")
    assert checked.sent_bytes == 0


def test_readback_finds_a_corrupt_object(tmp_path, s3_server):  # noqa: F811
    client, _ = s3_server
    folder = _session(tmp_path / "rec", big_mb=1)
    url = f"s3://{BUCKET}/study"
    archive_session(folder, url)
    key = f"study/{folder.name}/webcam/webcam_1_20250101_100000.mp4"
    local = (folder / "webcam/webcam_1_20250101_100000.mp4").read_bytes()
    corrupt = bytes([local[0] ^ 1]) + local[1:]
    client.put_object(Bucket=BUCKET, Key=key, Body=corrupt,
                      Metadata={"sha256": hashlib.sha256(local).hexdigest()})  # fmt: skip
    assert archive_session(folder, url).sent_bytes == 0  # metadata alone is fooled
    fixed = archive_session(folder, url, verify="readback")
    # the video again, plus the metadata (its archive record changed) and manifest
    assert len(local) < fixed.sent_bytes < len(local) + 65536
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == local


def test_process_and_bids_from_the_archive_url(tmp_path, s3_server, monkeypatch):  # noqa: F811
    folder = _session(tmp_path / "rec")
    url = f"s3://{BUCKET}/study"
    archive_session(folder, url)
    env = dict(os.environ, LSL_SESSION_CACHE=str(tmp_path / "cache"))
    run = _cli("process", f"{url}/{folder.name}", "--no-hand-segmentation", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    cached = Path(run.stdout.strip().splitlines()[-1])
    assert cached.is_relative_to(tmp_path / "cache") and cached.name == folder.name
    assert any((cached / "processing" / "synchronized_data").iterdir())
    bids = tmp_path / "bids"
    run = _cli("export", "--bids", str(bids), f"{url}/{folder.name}", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(bids.rglob("*_eeg.*"))
    # a cached file that no longer matches the archive is fetched again
    xdf = next(cached.glob("*.xdf"))
    xdf.write_bytes(b"garbage")
    run = _cli("process", f"{url}/{folder.name}", "--no-hand-segmentation", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert _sha(xdf) == _sha(folder / xdf.name)


def test_url_without_an_archive_is_one_line(tmp_path, s3_server):  # noqa: F811
    run = _cli("process", f"s3://{BUCKET}/nothing/here_20250101_100000")
    assert run.returncode == 1
    assert "no archived session there" in run.stderr and "Traceback" not in run.stderr


def test_archive_over_sftp_resumes_and_reruns_empty(tmp_path, sftp_server):  # noqa: F811
    """A real SFTP server (paramiko, 127.0.0.1): archive, a cut part, re-run."""
    port, served = sftp_server
    folder = _session(tmp_path / "rec", big_mb=2)
    url = f"sftp://{USER}:{PASSWORD}@127.0.0.1:{port}/share"
    (served / "share").mkdir()
    # a part left by a cut run: the first 700 kB of the video
    video = "webcam/webcam_1_20250101_100000.mp4"
    local = (folder / video).read_bytes()
    part = served / "share" / folder.name / (video + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(local[:700_000])
    result = archive_session(folder, url)
    copy = served / "share" / folder.name
    assert (copy / video).read_bytes() == local
    assert not part.exists()
    # the video's first 700 kB were not sent again
    assert result.sent_bytes < result.total_bytes - 600_000
    meta = json.loads((folder / "session_metadata.json").read_text())
    # the URL is recorded without its password
    public = f"sftp://{USER}@127.0.0.1:{port}/share"
    assert meta["archives"][public]["status"] == "complete"
    assert PASSWORD not in (folder / "session_metadata.json").read_text()
    assert archive_session(folder, url).sent_bytes == 0


def test_sftp_wrong_password_is_one_line(tmp_path, sftp_server):  # noqa: F811
    port, _ = sftp_server
    folder = _session(tmp_path / "rec")
    run = _cli("archive", str(folder), f"sftp://{USER}:wrong-pw@127.0.0.1:{port}/share")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "wrong-pw" not in run.stderr and "Error:" in run.stderr
