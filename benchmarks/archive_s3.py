"""``archive`` to S3 against plain boto3 and s3fs uploads of the same files.

A session folder (one large file plus the usual small ones) is uploaded to moto's
S3 server (its own process on 127.0.0.1) by: boto3's ``upload_file``
(TransferManager: 8 MB parts, 10 threads), s3fs's ``put`` (recursive), and
``lsl_session.storage.archive.archive_session`` (8 MiB parts, 8 in flight, each
with its SHA-256 checksum, the whole file's sha256 computed first, then the
metadata and the manifest). Each round uploads to fresh prefixes in a rotating
order; the medians are compared. A re-run of ``archive`` is timed too (0 bytes).

    python benchmarks/archive_s3.py --size-mb 256 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUCKET = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto server did not start")


def _session(root: Path, size_mb: int) -> Path:
    from lsl_session.session import Session, create_session_folder

    folder = create_session_folder(root, "bench")
    big = folder / f"{folder.name}.xdf"
    with open(big, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    (folder / "exports" / "csv" / "eeg.csv").write_bytes(os.urandom(300_000))
    s = Session(folder)
    s.log_event("marker", {"label": "bench"})
    s.close()
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import boto3
    import s3fs

    from lsl_session.storage.archive import archive_session

    proc, endpoint = _server()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)  # fmt: skip
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            folder = _session(Path(tmp), args.size_mb)
            files = _files(folder)
            total = sum(p.stat().st_size for p in files)
            fs = s3fs.S3FileSystem(endpoint_url=endpoint)

            def boto(prefix: str) -> None:
                for p in files:
                    client.upload_file(
                        str(p), BUCKET, f"{prefix}/{p.relative_to(folder)}"
                    )

            def s3fs_put(prefix: str) -> None:
                fs.put(str(folder) + "/", f"{BUCKET}/{prefix}/", recursive=True)
                fs.invalidate_cache()

            last = [""]

            def ours(prefix: str) -> None:
                archive_session(folder, f"s3://{BUCKET}/{prefix}")
                last[0] = prefix

            runners = {
                "boto3 upload_file": boto,
                "s3fs put": s3fs_put,
                "lsl-session archive": ours,
            }
            times: dict[str, list[float]] = {k: [] for k in runners}
            names = list(runners)
            for r in range(args.rounds):
                for name in names[r % 3 :] + names[: r % 3]:
                    started = time.perf_counter()
                    runners[name](f"r{r}-{name.split()[0]}")
                    times[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            # the same URL again (archiving elsewhere in between changes the
            # metadata's archive records, which is then sent again)
            again = archive_session(folder, f"s3://{BUCKET}/{last[0]}")
            rerun = time.perf_counter() - started
            started = time.perf_counter()
            archive_session(folder, f"s3://{BUCKET}/readback", verify="readback")
            readback = time.perf_counter() - started
    finally:
        proc.kill()
        proc.wait()
    print(f"{len(files)} files, {total / 1e6:.1f} MB; medians of {args.rounds} rounds")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(
            f"  {name:<22} {t:6.2f} s  {total / t / 1e6:7.1f} MB/s   runs {' '.join(f'{x:.2f}' for x in times[name])}"
        )
    best_plain = min(med["boto3 upload_file"], med["s3fs put"])
    print(
        f"  archive / best plain throughput: {best_plain / med['lsl-session archive']:.2f}"
    )
    print(
        f"  archive --verify readback: {readback:.2f} s ({total / readback / 1e6:.1f} MB/s)"
    )
    print(f"  re-run: {rerun:.2f} s, {again.sent_bytes} bytes sent")


if __name__ == "__main__":
    main()
