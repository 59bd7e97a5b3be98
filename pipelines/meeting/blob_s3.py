"""Blobs in S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Ceph RGW, …).

``VOICE_BLOB_URL=s3://bucket/prefix`` names the bucket and a key prefix;
``VOICE_S3_ENDPOINT_URL`` the server when it is not AWS. Credentials and region
come from boto3's usual sources (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``~/.aws``, instance roles). boto3 blocks, so every call runs in a
worker thread; its client is thread-safe. Uploads of large files go in parts
(boto3's transfer manager). This module is imported only when ``blob_url`` is set,
and boto3 comes from the ``cluster`` extra.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from pipelines.meeting.blob_store import (
    CHUNK_BYTES,
    BlobNotFound,
    BlobStoreError,
    _check_prefix,
    check_key,
)

T = TypeVar("T")
DELETE_BATCH = 1000
"""Keys per DeleteObjects request (the S3 maximum)."""
TIMEOUT_S = 30
"""Connect and read timeout of one S3 request (seconds)."""
MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3BlobStore:
    """The :class:`~pipelines.meeting.blob_store.BlobStore` of one bucket and prefix."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> S3BlobStore:
        """A store for ``s3://bucket/prefix``. Blocking (reads boto3's configuration)."""
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise BlobStoreError(
                "VOICE_BLOB_URL is set but boto3 is not installed: "
                "pip install 'voice-agent-server[cluster]'"
            ) from None
        config = Config(
            connect_timeout=TIMEOUT_S,
            read_timeout=TIMEOUT_S,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, bucket, prefix)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _call(self, key: str, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread; S3 errors become :class:`BlobNotFound` (for ``key``)
        or :class:`BlobStoreError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(work)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING:
                raise BlobNotFound(key) from None
            raise BlobStoreError(f"S3 {self.bucket}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 {self.bucket}: {exc}") from exc

    async def put_file(self, key: str, source: Path) -> None:
        name = self._key(key)
        await self._call(key, lambda: self._client.upload_file(str(source), self.bucket, name))

    async def put_bytes(self, key: str, data: bytes) -> None:
        name = self._key(key)
        await self._call(
            key, lambda: self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
        )

    async def read_bytes(self, key: str) -> bytes:
        name = self._key(key)

        def read() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
            try:
                data: bytes = body.read()
                return data
            finally:
                body.close()

        return await self._call(key, read)

    async def download(self, key: str, target: Path) -> None:
        name = self._key(key)

        def download() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                self._client.download_file(self.bucket, name, str(tmp))
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)

        await self._call(key, download)

    async def stream(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        name = self._key(key)
        response = await self._call(
            key, lambda: self._client.get_object(Bucket=self.bucket, Key=name)
        )
        body = response["Body"]
        try:
            while chunk := await self._call(key, lambda: body.read(chunk_bytes)):
                yield chunk
        finally:
            await asyncio.to_thread(body.close)

    async def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            await self._call(key, lambda: self._client.head_object(Bucket=self.bucket, Key=name))
        except BlobNotFound:
            return False
        return True

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        return [item for page in pages for item in page.get("Contents", [])]

    async def delete_prefix(self, prefix: str) -> int:
        _check_prefix(prefix)

        def delete() -> int:
            keys = [item["Key"] for item in self._list(prefix)]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise BlobStoreError(f"S3 could not delete {first.get('Key')}: {first}")
            return len(keys)

        return await self._call(prefix, delete)

    async def folders(self, prefix: str) -> dict[str, float]:
        _check_prefix(prefix)

        def newest() -> dict[str, float]:
            found: dict[str, float] = {}
            skip = len(self.prefix + prefix)
            for item in self._list(prefix):
                name = item["Key"][skip:].split("/", 1)[0]
                changed = item["LastModified"].timestamp()
                found[name] = max(found.get(name, 0.0), changed)
            return found

        return await self._call(prefix, newest)
