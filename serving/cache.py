"""Tuned weights from storage in a local directory engines read, checked before anyone loads them.

Directory names come from a hash of the storage prefix, never from a model name, so no name a
client sends can point an engine at another path. Only safetensors weights and plain configs are
copied: trainer state (optimizer.pt, rng_state.pth, training_args.bin) and anything else stays in
storage, because vLLM falls back to `torch.load` (pickle) for .bin/.pt adapters.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from pathlib import Path, PurePosixPath

from serving.errors import UnsafeWeights
from storage import BlobStore
from storage.model_folders import SAFE_SUFFIXES, unsafe_reason

COPIED_SUFFIXES = SAFE_SUFFIXES
COMPLETE_MARKER = ".ftapi-complete"


class WeightsCache:
    def __init__(self, root: Path, store: BlobStore) -> None:
        self.root = root.resolve()
        self._store = store
        self._locks: dict[str, asyncio.Lock] = {}

    def path_for(self, prefix: str) -> Path:
        return self.root / hashlib.sha256(prefix.encode()).hexdigest()[:32]

    async def materialize(self, prefix: str) -> Path:
        """The local copy of the weights stored under `prefix`, downloaded once and verified."""
        dest = self.path_for(prefix)
        if await asyncio.to_thread((dest / COMPLETE_MARKER).exists):
            return dest
        async with self._locks.setdefault(prefix, asyncio.Lock()):
            if await asyncio.to_thread((dest / COMPLETE_MARKER).exists):
                return dest
            staging = self.root / f".staging-{uuid.uuid4().hex}"
            try:
                await self._download(prefix, staging)
                await asyncio.to_thread(check_weights_dir, staging)
                await asyncio.to_thread((staging / COMPLETE_MARKER).touch)
                await asyncio.to_thread(shutil.rmtree, dest, True)
                await asyncio.to_thread(staging.rename, dest)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
        return dest

    async def _download(self, prefix: str, staging: Path) -> None:
        keys = [k for k in await self._store.list_keys(prefix) if k.endswith(COPIED_SUFFIXES)]
        for key in keys:
            rel = PurePosixPath(key[len(prefix) :])
            if not rel.parts or rel.is_absolute() or ".." in rel.parts:
                raise UnsafeWeights(f"Refusing a stored file outside its model folder: {key}")
            target = staging.joinpath(*rel.parts)
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            f = await asyncio.to_thread(target.open, "wb")
            with f:
                async for chunk in self._store.open_stream(key):
                    await asyncio.to_thread(f.write, chunk)

    async def evict(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path_for(prefix), True)


def check_weights_dir(path: Path) -> None:
    """Raise UnsafeWeights unless `path` holds safetensors weights and configs without remote code."""
    reason = unsafe_reason(path)
    if reason is not None:
        raise UnsafeWeights(reason)
