"""WeightsCache: what our trainer stored becomes a local folder engines may load, and nothing else."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from serving.cache import WeightsCache
from serving.errors import UnsafeWeights
from storage.local import LocalBlobStore

PREFIX = "jobs/p/ftjob-1/checkpoints/step-12/"


async def stored(tmp_path: Path, files: dict[str, bytes]) -> WeightsCache:
    store = LocalBlobStore(tmp_path / "blobs")
    for name, data in files.items():
        await store.put_bytes(PREFIX + name, data)
    return WeightsCache(tmp_path / "cache", store)


CHECKPOINT = {
    "adapter_model.safetensors": b"weights",
    "adapter_config.json": json.dumps({"r": 16}).encode(),
    "tokenizer.json": b"{}",
    "chat_template.jinja": b"{{ messages }}",
    # Trainer state our own trainer reads back: never copied where an engine looks.
    "optimizer.pt": b"pickle",
    "rng_state.pth": b"pickle",
    "training_args.bin": b"pickle",
}


async def test_only_safetensors_and_configs_are_copied_once(tmp_path: Path) -> None:
    cache = await stored(tmp_path, CHECKPOINT)
    first, second = await asyncio.gather(cache.materialize(PREFIX), cache.materialize(PREFIX))
    assert first == second == cache.path_for(PREFIX)
    # Named by a hash of the storage prefix, under the cache root: no model name reaches the path.
    assert first.parent == (tmp_path / "cache").resolve() and "ftjob" not in first.name
    copied = sorted(p.name for p in first.iterdir() if not p.name.startswith("."))
    assert copied == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "chat_template.jinja",
        "tokenizer.json",
    ]
    await cache.evict(PREFIX)
    assert not first.exists()


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"adapter_model.bin": b"pickle", "adapter_config.json": b"{}"}, "no safetensors"),
        (
            {
                "model.safetensors": b"w",
                "config.json": json.dumps({"auto_map": {"AutoModel": "x.Y"}}).encode(),
            },
            "auto_map",
        ),
    ],
)
async def test_weights_an_engine_must_not_load_are_refused(
    tmp_path: Path, files: dict[str, bytes], reason: str
) -> None:
    cache = await stored(tmp_path, files)
    with pytest.raises(UnsafeWeights) as refused:
        await cache.materialize(PREFIX)
    assert reason in str(refused.value)
    assert not cache.path_for(PREFIX).exists()  # nothing half-checked is left for a later load
