"""Where archived files go: S3 (boto3, multipart) or any other fsspec file system.

Both backends upload one file to a key relative to the archive's base, resume a cut
upload, and verify what the far side holds:

- `S3Backend` uploads in ``PART`` parts (files below it in one PUT), each part with its
  SHA-256 checksum (``x-amz-checksum-sha256``: S3 recomputes it and refuses a part whose
  bytes differ); the whole file's sha256 is stored as object metadata. A cut multipart
  upload is resumed: the parts S3 already holds whose MD5 ETag matches the local bytes
  are kept, the rest are sent. ``verify="readback"`` also reads every object back and
  hashes it (for servers that do not check checksums).
- `FsspecBackend` writes ``<key>.part`` (appending from its size after a cut), reads it
  back from the far side and hashes it, then renames it into place.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lsl_session.errors import LslSessionError

logger = logging.getLogger(__name__)

#: Multipart part size (bytes); files up to it go in one request.
PART = 8 << 20
#: Parts (or small files) sent at once.
CONCURRENCY = 8
#: Bytes read per block when hashing or copying.
BLOCK = 1 << 20


class StorageError(LslSessionError):
    """The far side failed, refused, or holds other bytes than ours."""


@dataclass(frozen=True, slots=True)
class Remote:
    """What the far side holds under a key."""

    size: int
    sha256: str | None  # None when the backend cannot tell without reading


Progress = Callable[[int], None]


def sha256_of(path: str, start: int = 0, length: int | None = None) -> bytes:
    """Raw sha256 digest of ``length`` bytes of ``path`` from ``start``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left is None or left > 0:
            block = fh.read(BLOCK if left is None else min(BLOCK, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.digest()


def _read(path: str, start: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(length)


class S3Backend:
    """``s3://bucket/prefix`` through boto3 (see the module doc).

    Parameters
    ----------
    bucket, prefix : str
        Where the archive lives.
    client : botocore client
        An S3 client (endpoint, credentials and retries already chosen).
    verify : str
        ``checksum`` (the server checks every part's SHA-256) or ``readback``
        (also read every object back and hash it here).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        verify: str,
        *,
        part: int = PART,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix, client
        self.verify, self.part = verify, part
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="archive")

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def stat(self, rel: str) -> Remote | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "404",
                "NoSuchKey",
                "NotFound",
            ):
                return None
            raise StorageError(f"{rel}: {exc}") from None
        return Remote(
            int(head["ContentLength"]), head.get("Metadata", {}).get("sha256")
        )

    def upload(
        self, local: str, rel: str, size: int, sha256: str, progress: Progress
    ) -> int:
        """Send ``local`` to ``rel``; return the bytes sent (resumed parts excluded)."""
        key, meta = self.key(rel), {"sha256": sha256}
        if size <= self.part:
            body = _read(local, 0, size)
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, Metadata=meta,
                ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
            )  # fmt: skip
            progress(size)
            return size
        upload_id, have = self._resume(key, local, size)
        if upload_id is None:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=meta, ChecksumAlgorithm="SHA256"
            )["UploadId"]
        count = (size + self.part - 1) // self.part
        sent = [0]
        lock = threading.Lock()

        def send(number: int) -> dict[str, Any]:
            start = (number - 1) * self.part
            body = _read(local, start, min(self.part, size - start))
            checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                Body=body, ChecksumSHA256=checksum,
            )  # fmt: skip
            with lock:
                sent[0] += len(body)
            progress(len(body))
            return {
                "PartNumber": number,
                "ETag": answer["ETag"],
                "ChecksumSHA256": checksum,
            }

        todo = [n for n in range(1, count + 1) if n not in have]
        for n in have:
            progress(min(self.part, size - (n - 1) * self.part))
        parts = dict(have)
        for part in self.pool.map(send, todo):
            parts[part["PartNumber"]] = part
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [parts[n] for n in sorted(parts)]},
        )  # fmt: skip
        return sent[0]

    def _resume(
        self, key: str, local: str, size: int
    ) -> tuple[str | None, dict[int, dict]]:
        """An unfinished upload of ``key`` and its parts that match our bytes."""
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        mine = [u for u in uploads.get("Uploads", []) if u["Key"] == key]
        if not mine:
            return None, {}
        upload_id = max(mine, key=lambda u: u["Initiated"])["UploadId"]
        have: dict[int, dict] = {}
        listed = self.client.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id)
        for p in listed.get("Parts", []):
            n, start = p["PartNumber"], (p["PartNumber"] - 1) * self.part
            if p["Size"] != min(self.part, size - start) or start >= size:
                continue
            body = _read(local, start, p["Size"])
            if (
                p["ETag"].strip('"')
                == hashlib.md5(body, usedforsecurity=False).hexdigest()
            ):
                checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
                have[n] = {
                    "PartNumber": n,
                    "ETag": p["ETag"],
                    "ChecksumSHA256": checksum,
                }
        logger.info("resuming %s: %d part(s) already there", key, len(have))
        return upload_id, have

    def check(self, rel: str, size: int, sha256: str) -> None:
        """Raise `StorageError` unless the far side holds ``size`` bytes of ``sha256``."""
        remote = self.stat(rel)
        if remote is None or remote.size != size or remote.sha256 != sha256:
            raise StorageError(f"{rel}: the far side does not hold our file")
        if self.verify == "readback":
            got = self._hash_remote(rel)
            if got != sha256:
                raise StorageError(
                    f"{rel}: read back sha256 {got[:12]}…, ours {sha256[:12]}…"
                )

    def _hash_remote(self, rel: str) -> str:
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"]
        digest = hashlib.sha256()
        for block in iter(lambda: body.read(BLOCK), b""):
            digest.update(block)
        return digest.hexdigest()

    def put_bytes(self, rel: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=data,
                               Metadata={"sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip

    def get_bytes(self, rel: str) -> bytes | None:
        if self.stat(rel) is None:
            return None
        return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))[
            "Body"
        ].read()

    def download(self, rel: str, dest: str) -> None:
        self.client.download_file(self.bucket, self.key(rel), dest)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class FsspecBackend:
    """Any fsspec file system: part file, append to resume, read back, rename."""

    verify = "readback"

    def __init__(self, fs: Any, base: str) -> None:
        self.fs, self.base = fs, base.rstrip("/")

    def key(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def stat(self, rel: str) -> Remote | None:
        try:
            return Remote(int(self.fs.size(self.key(rel))), None)
        except (FileNotFoundError, OSError):
            return None

    def upload(
        self, local: str, rel: str, size: int, sha256: str, progress: Progress
    ) -> int:
        key, part = self.key(rel), self.key(rel) + ".part"
        self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        offset = 0
        try:
            offset = int(self.fs.size(part))
        except (FileNotFoundError, OSError):
            pass
        if offset > size:
            self.fs.rm(part)
            offset = 0
        progress(offset)
        sent = 0
        with (
            open(local, "rb") as src,
            self.fs.open(part, "ab" if offset else "wb") as dst,
        ):
            src.seek(offset)
            while block := src.read(BLOCK):
                dst.write(block)
                sent += len(block)
                progress(len(block))
        got = self._hash_remote(rel + ".part")
        if got != sha256:
            self.fs.rm(part)
            raise StorageError(
                f"{rel}: read back sha256 {got[:12]}…, ours {sha256[:12]}…"
            )
        self.fs.mv(part, key)
        return sent

    def check(self, rel: str, size: int, sha256: str) -> None:
        remote = self.stat(rel)
        if remote is None or remote.size != size or self._hash_remote(rel) != sha256:
            raise StorageError(f"{rel}: the far side does not hold our file")

    def _hash_remote(self, rel: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self.key(rel), "rb") as fh:
            while block := fh.read(BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def put_bytes(self, rel: str, data: bytes) -> None:
        self.fs.makedirs(self.key(rel).rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(self.key(rel) + ".part", "wb") as fh:
            fh.write(data)
        self.fs.mv(self.key(rel) + ".part", self.key(rel))

    def get_bytes(self, rel: str) -> bytes | None:
        try:
            with self.fs.open(self.key(rel), "rb") as fh:
                return fh.read()
        except (FileNotFoundError, OSError):
            return None

    def download(self, rel: str, dest: str) -> None:
        self.fs.get_file(self.key(rel), dest)

    def close(self) -> None:
        pass


def public_url(url: str) -> str:
    """``url`` without a password (``sftp://user:secret@host`` → ``sftp://user@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    return f"{scheme}://{netloc}{slash}{path}"


def open_backend(
    url: str,
    *,
    verify: str | None = None,
    endpoint_url: str | None = None,
    part_mb: float | None = None,
    concurrency: int = CONCURRENCY,
) -> S3Backend | FsspecBackend:
    """The backend for ``url`` (``s3://bucket/prefix``, a path, ``sftp://…``, …).

    Raises
    ------
    StorageError
        For a URL no installed fsspec implementation handles.
    """
    if url.startswith(("s3://", "s3a://")):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StorageError(
                "s3:// needs boto3 (pip install 'lsl-session[storage]')"
            ) from None
        bucket, _, prefix = url.split("://", 1)[1].partition("/")
        if not bucket:
            raise StorageError(f"{url}: no bucket")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5, read_timeout=60,
                max_pool_connections=concurrency * 2,
                request_checksum_calculation="when_required",
            ),
        )  # fmt: skip
        part = PART if part_mb is None else int(part_mb * (1 << 20))
        return S3Backend(bucket, prefix.strip("/"), client, verify or "checksum",
                         part=part, concurrency=concurrency)  # fmt: skip
    try:
        import fsspec
    except ImportError:
        raise StorageError(
            "archive needs fsspec (pip install 'lsl-session[storage]')"
        ) from None
    if verify not in (None, "readback"):
        raise StorageError(f"--verify {verify}: only readback for {url.split(':')[0]}")
    try:
        fs, base = fsspec.core.url_to_fs(url)
    except Exception as exc:  # any implementation's connect/auth/import error
        raise StorageError(f"{public_url(url)}: {str(exc)[:200]}") from None
    return FsspecBackend(fs, base)
