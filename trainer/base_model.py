"""Where a catalogue `source` loads from, for the trainer: tiny-chat is built, a model in ftapi's own
storage (`storage:base-models/<folder>/`) is fetched once into the cache, anything else (a local
directory, a hub id) passes through."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from storage.config import LocalStoreConfig, S3StoreConfig
from storage.factory import build_store
from storage.model_folders import fetch_folder, stored_prefix
from trainer.tiny import resolve_base_model as resolve_builtin


async def _fetch(
    storage: LocalStoreConfig | S3StoreConfig, prefix: str, cache_dir: Path
) -> tuple[Path, bool]:
    store = build_store(storage)
    try:
        return await fetch_folder(store, prefix, cache_dir)
    finally:
        await store.close()


def resolve_base_model(source: str, cache_dir: Path, storage: LocalStoreConfig | S3StoreConfig) -> str:
    prefix = stored_prefix(source)
    if prefix is None:
        return resolve_builtin(source, cache_dir)
    started = time.monotonic()
    path, fetched = asyncio.run(_fetch(storage, prefix, cache_dir))
    if fetched:  # on the trainer's output: a second job on this machine finds it in the cache
        print(
            f"trainer: fetched the base model {source} from storage in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return str(path)
