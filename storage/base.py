"""The BlobStore contract: what api/ and trainer/ may ask of storage, and nothing backend-specific.

Keys are relative, slash-separated strings (`files/proj_1/file-abc`). Every implementation must
pass `tests/storage/test_contract.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

DEFAULT_CHUNK = 1024 * 1024


@runtime_checkable
class BlobStore(Protocol):
    """Asynchronous byte storage. Implementations never block the event loop."""

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the bytes yielded by `chunks` under `key`, replacing any previous blob.

        Atomic: if `chunks` raises or the write fails, no blob (and no partial or orphaned
        upload) is left under `key` and the exception propagates unchanged.
        Memory stays bounded by the backend's buffer size, whatever the total.

        Returns the number of bytes stored. Raises InvalidKey.
        """
        ...

    async def put_bytes(self, key: str, data: bytes) -> int:
        """Store a small in-memory blob atomically. Returns its size."""
        ...

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
        """Yield the blob's bytes in chunks of at most `chunk_size`.

        Raises BlobNotFound (at the first iteration) when the key is absent.
        """
        ...

    async def size(self, key: str) -> int:
        """Size in bytes. Raises BlobNotFound."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob. Idempotent: deleting an absent key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with `prefix` (a folder-like prefix ending in '/').

        Returns how many were removed.
        """
        ...

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, sorted. For sweeping and audits, not for hot paths."""
        ...

    async def compose(self, key: str, sources: Sequence[str]) -> int:
        """Store the concatenation of the `sources` blobs, in order, under `key`.

        Atomic like put_stream. Sources are left in place. On S3 this is a multipart upload
        that copies large sources server-side and coalesces small ones (S3 parts but the last
        must be at least 5 MiB). Returns the total size. Raises BlobNotFound for a missing source.
        """
        ...

    async def close(self) -> None:
        """Release clients and thread pools."""
        ...
