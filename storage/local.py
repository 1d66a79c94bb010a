"""BlobStore on a local directory: atomic writes (temp file, fsync, rename), keys confined to the root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from storage.base import DEFAULT_CHUNK
from storage.errors import BlobNotFound, InvalidKey
from storage.keys import check_key, check_prefix


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # Temp files live beside the blobs (same filesystem) so that os.replace is atomic.
        self._staging = self.root / ".staging"
        self._staging.mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents or path.is_relative_to(self._staging):
            raise InvalidKey("invalid storage key")
        return path

    def _temp(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self._staging, prefix="put-")
        return fd, Path(name)

    def _commit(self, tmp: Path, fd: int, dest: Path) -> None:
        os.fsync(fd)
        os.close(fd)
        for attempt in range(3):  # a delete may prune the new directory before the rename lands
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, dest)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        dest = self._path(key)
        fd, tmp = await asyncio.to_thread(self._temp)
        out = os.fdopen(os.dup(fd), "wb")
        total = 0
        pending = bytearray()
        try:
            async for chunk in chunks:
                total += len(chunk)
                pending += chunk
                # Batch small request chunks so the thread hop happens about once per MiB.
                if len(pending) >= DEFAULT_CHUNK:
                    await asyncio.to_thread(out.write, bytes(pending))
                    pending.clear()
            if pending:
                await asyncio.to_thread(out.write, bytes(pending))
            await asyncio.to_thread(out.flush)
            out.close()
            await asyncio.to_thread(self._commit, tmp, fd, dest)
        except BaseException:
            out.close()
            _discard(fd, tmp)
            raise
        return total

    async def put_bytes(self, key: str, data: bytes) -> int:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one())

    async def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise BlobNotFound(key) from exc
        try:
            while chunk := await asyncio.to_thread(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    async def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(self._unlink_and_prune, path)

    def _unlink_and_prune(self, path: Path) -> None:
        """Remove the file and the directories it leaves empty: keys are flat names, as in S3."""
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone, or raced by a writer): stop here
                break
            parent = parent.parent

    async def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        keys = await self.list_keys(prefix)
        for key in keys:
            await self.delete(key)
        return len(keys)

    async def list_keys(self, prefix: str) -> list[str]:
        check_prefix(prefix)

        def walk() -> list[str]:
            out = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                if Path(dirpath) == self.root and ".staging" in dirnames:
                    dirnames.remove(".staging")
                for name in filenames:
                    rel = (Path(dirpath) / name).relative_to(self.root).as_posix()
                    if rel.startswith(prefix):
                        out.append(rel)
            return sorted(out)

        return await asyncio.to_thread(walk)

    async def compose(self, key: str, sources: Sequence[str]) -> int:
        dest = self._path(key)
        paths = [self._path(s) for s in sources]

        def concat() -> int:
            fd, tmp = self._temp()
            total = 0
            try:
                with os.fdopen(os.dup(fd), "wb") as out:
                    for source, path in zip(sources, paths, strict=True):
                        try:
                            with open(path, "rb") as src:
                                shutil.copyfileobj(src, out, DEFAULT_CHUNK)
                                total += src.tell()
                        except FileNotFoundError as exc:
                            raise BlobNotFound(source) from exc
                self._commit(tmp, fd, dest)
            except BaseException:
                _discard(fd, tmp)
                raise
            return total

        return await asyncio.to_thread(concat)

    async def close(self) -> None:
        return None


def _discard(fd: int, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    tmp.unlink(missing_ok=True)
