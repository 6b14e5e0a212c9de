"""Sessions on shared storage: ``archive`` to any fsspec URL, read back via a cache.

`archive.archive_session` copies a finished session folder to ``URL/<session_id>/``
(`backends`: S3 through boto3 multipart uploads, any other fsspec file system
through part files), resumable, each file's sha256 checked; `cache.fetch_session`
brings an archived session back into a local cache for ``process`` and ``export``.
See docs/storage.md.
"""
