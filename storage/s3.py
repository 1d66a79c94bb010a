"""BlobStore on any S3-compatible service through boto3.

boto3 is synchronous, so every call runs in a worker thread. Streams become multipart uploads
(parts of `part_size`, a few in flight) that are aborted on any failure, so no orphan is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.base import DEFAULT_CHUNK
from storage.config import S3StoreConfig
from storage.errors import BlobNotFound, StorageError
from storage.keys import check_key, check_prefix

log = structlog.get_logger()

T = TypeVar("T")
S3_MIN_PART = 5 * 1024 * 1024
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class S3BlobStore:
    def __init__(self, config: S3StoreConfig) -> None:
        self.config = config
        self.bucket = config.bucket
        self._prefix = config.prefix.strip("/")
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key.get_secret_value()
            if config.secret_access_key
            else None,
            config=Config(
                s3={"addressing_style": config.addressing_style},
                request_checksum_calculation=config.request_checksum_calculation,
                response_checksum_validation=config.response_checksum_validation,
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=config.max_concurrency * 2 + 4,
            ),
        )
        self._bucket_ready = not config.create_bucket
        self._bucket_lock = asyncio.Lock()

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        if not self._bucket_ready:
            await self._ensure_bucket()
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise BlobNotFound(kwargs.get("Key", "")) from exc
            log.warning("s3.error", operation=getattr(fn, "__name__", "?"), code=code)
            raise StorageError("the object store refused the request") from exc

    async def _ensure_bucket(self) -> None:
        async with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                await asyncio.to_thread(self._client.head_bucket, Bucket=self.bucket)
            except ClientError:
                await asyncio.to_thread(self._client.create_bucket, Bucket=self.bucket)
            self._bucket_ready = True

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        full = self._full(key)
        part_size = self.config.part_size
        pieces: list[bytes] = []  # joined once per part: one copy, not two
        held = 0
        total = 0
        upload = _Multipart(self, full)
        try:
            async for chunk in chunks:
                total += len(chunk)
                pieces.append(chunk)
                held += len(chunk)
                if held >= part_size:
                    await upload.add_part(b"".join(pieces))
                    pieces.clear()
                    held = 0
            rest = b"".join(pieces)
            if not upload.started:
                await self._call(self._client.put_object, Bucket=self.bucket, Key=full, Body=rest)
            else:
                if rest:
                    await upload.add_part(rest)
                await upload.complete()
        except BaseException:
            await upload.abort()
            raise
        return total

    async def put_bytes(self, key: str, data: bytes) -> int:
        await self._call(self._client.put_object, Bucket=self.bucket, Key=self._full(key), Body=data)
        return len(data)

    async def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
        response = await self._call(self._client.get_object, Bucket=self.bucket, Key=self._full(key))
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def size(self, key: str) -> int:
        head = await self._call(self._client.head_object, Bucket=self.bucket, Key=self._full(key))
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except BlobNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        await self._call(self._client.delete_object, Bucket=self.bucket, Key=self._full(key))

    async def list_keys(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        full = f"{self._prefix}/{prefix}" if self._prefix else prefix
        strip = len(self._prefix) + 1 if self._prefix else 0

        def walk() -> list[str]:
            keys: list[str] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                keys += [obj["Key"][strip:] for obj in page.get("Contents", [])]
            return sorted(keys)

        return await self._call(walk)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_keys(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._full(k)} for k in keys[start : start + 1000]]
            await self._call(
                self._client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
        return len(keys)

    async def compose(self, key: str, sources: Sequence[str]) -> int:
        """Large sources are copied server-side; small ones are read and coalesced (S3 parts but
        the last must be at least 5 MiB)."""
        full = self._full(key)
        sizes = [await self.size(s) for s in sources]
        upload = _Multipart(self, full)
        buf = bytearray()
        try:
            for source, size in zip(sources, sizes, strict=True):
                if not buf and size >= S3_MIN_PART:
                    await upload.add_copy(self._full(source))
                    continue
                async for chunk in self.open_stream(source):
                    buf += chunk
                    if len(buf) >= self.config.part_size:
                        await upload.add_part(bytes(buf))
                        buf.clear()
            if not upload.started:
                await self._call(self._client.put_object, Bucket=self.bucket, Key=full, Body=bytes(buf))
            else:
                if buf:
                    await upload.add_part(bytes(buf))
                await upload.complete()
        except BaseException:
            await upload.abort()
            raise
        return sum(sizes)

    async def close(self) -> None:
        self._client.close()


class _Multipart:
    """One S3 multipart upload with a bounded number of parts in flight."""

    def __init__(self, store: S3BlobStore, full_key: str) -> None:
        self.store = store
        self.key = full_key
        self.upload_id: str | None = None
        self.parts: dict[int, str] = {}
        self.next_number = 1
        self.inflight: set[asyncio.Task[None]] = set()

    @property
    def started(self) -> bool:
        return self.upload_id is not None

    async def _start(self) -> str:
        if self.upload_id is None:
            created = await self.store._call(
                self.store._client.create_multipart_upload, Bucket=self.store.bucket, Key=self.key
            )
            self.upload_id = created["UploadId"]
        return self.upload_id

    async def _send(self, number: int, **kwargs: Any) -> None:
        client = self.store._client
        if "CopySource" in kwargs:
            result = await self.store._call(client.upload_part_copy, **kwargs)
            self.parts[number] = result["CopyPartResult"]["ETag"]
        else:
            result = await self.store._call(client.upload_part, **kwargs)
            self.parts[number] = result["ETag"]

    async def _submit(self, **kwargs: Any) -> None:
        upload_id = await self._start()
        number = self.next_number
        self.next_number += 1
        task = asyncio.create_task(
            self._send(
                number,
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                **kwargs,
            )
        )
        self.inflight.add(task)
        if len(self.inflight) >= self.store.config.max_concurrency:
            done, self.inflight = await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()

    async def add_part(self, body: bytes) -> None:
        await self._submit(Body=body)

    async def add_copy(self, source_full_key: str) -> None:
        await self._submit(CopySource={"Bucket": self.store.bucket, "Key": source_full_key})

    async def _drain(self) -> None:
        if self.inflight:
            results = await asyncio.gather(*self.inflight, return_exceptions=True)
            self.inflight.clear()
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def complete(self) -> None:
        await self._drain()
        await self.store._call(
            self.store._client.complete_multipart_upload,
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(self.parts.items())]},
        )

    async def abort(self) -> None:
        if self.upload_id is None:
            return
        # Parts still uploading must finish first, or one could land after the abort.
        await asyncio.gather(*self.inflight, return_exceptions=True)
        self.inflight.clear()
        try:
            await asyncio.to_thread(
                self.store._client.abort_multipart_upload,
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
            )
        except ClientError:
            log.exception("s3.abort_failed")
        self.upload_id = None
