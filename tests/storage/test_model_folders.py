"""Base models in ftapi's own storage: imported with a manifest, fetched once, never unsafe."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from storage.local import LocalBlobStore
from storage.model_folders import (
    MANIFEST,
    ModelExists,
    UnsafeModelFolder,
    fetch_folder,
    folder_prefix,
    import_folder,
    stored_manifests,
    stored_prefix,
)

ENTRY = {"max_length": 512, "base_learning_rate": 5e-3}


def hf_folder(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    folder = root / "hf"
    files = {
        "model.safetensors": b"weights" * 1000,
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "tokenizer.json": b"{}",
        "tokenizer_config.json": b"{}",
        "chat_template.jinja": b"{{ messages }}",
        "README.md": b"not part of the model",
        ".cache/huggingface/download/model.safetensors.metadata": b"hub bookkeeping",
        **(extra or {}),
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


async def test_import_then_fetch_once(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    manifest = await import_folder(store, hf_folder(tmp_path), "acme/tiny-1", ENTRY)
    prefix = folder_prefix("acme/tiny-1")
    assert prefix == "base-models/acme--tiny-1/"
    assert manifest["entry"] == {**ENTRY, "id": "acme/tiny-1", "source": "storage:" + prefix}
    assert stored_prefix(manifest["entry"]["source"]) == prefix
    stored = sorted(k[len(prefix) :] for k in await store.list_keys(prefix))
    # Only the model's own files: no README, no hub cache.
    assert stored == sorted(
        [
            "chat_template.jinja",
            "config.json",
            MANIFEST,
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )
    assert [m["id"] for m in await stored_manifests(store)] == ["acme/tiny-1"]

    cache = tmp_path / "cache"
    (first, fetched_a), (second, fetched_b) = await asyncio.gather(
        fetch_folder(store, prefix, cache), fetch_folder(store, prefix, cache)
    )
    assert first == second and (first / "model.safetensors").read_bytes() == b"weights" * 1000
    assert sorted([fetched_a, fetched_b]) == [False, True]  # two racing fetches: one downloads
    again, fetched = await fetch_folder(store, prefix, cache)
    assert again == first and not fetched
    assert len([p for p in (cache / "storage").iterdir() if not p.name.startswith(".")]) == 1

    with pytest.raises(ModelExists):
        await import_folder(store, hf_folder(tmp_path), "acme/tiny-1", ENTRY)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"pytorch_model.bin": b"pickle"}, "pytorch_model.bin"),
        ({"modeling_evil.py": b"import os"}, "modeling_evil.py"),
        ({"config.json": json.dumps({"auto_map": {"AutoModel": "x.Y"}}).encode()}, "auto_map"),
        ({"bad name.json": b"{}"}, "rename it"),
    ],
)
async def test_unsafe_folders_are_refused_and_nothing_is_stored(
    tmp_path: Path, extra: dict[str, bytes], reason: str
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(UnsafeModelFolder, match=reason):
        await import_folder(store, hf_folder(tmp_path, extra), "tiny", ENTRY)
    assert await store.list_keys("base-models/") == []


async def test_no_safetensors_is_refused(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UnsafeModelFolder, match="no safetensors"):
        await import_folder(LocalBlobStore(tmp_path / "blobs"), folder, "tiny", ENTRY)


@pytest.mark.parametrize("model_id", ["", "a--b", "../x", "a/b/c", "x y", "/abs"])
def test_model_ids_that_cannot_name_a_folder(model_id: str) -> None:
    with pytest.raises(UnsafeModelFolder):
        folder_prefix(model_id)


@pytest.mark.parametrize(
    "source", ["storage:jobs/p/x/", "storage:base-models/x", "storage:base-models/../x/"]
)
def test_storage_sources_outside_the_model_folders(source: str) -> None:
    with pytest.raises(UnsafeModelFolder):
        stored_prefix(source)


async def test_a_tampered_file_is_not_fetched(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await import_folder(store, hf_folder(tmp_path), "tiny", ENTRY)
    await store.put_bytes("base-models/tiny/model.safetensors", b"other weights")
    with pytest.raises(UnsafeModelFolder, match="does not match its manifest"):
        await fetch_folder(store, "base-models/tiny/", tmp_path / "cache")
    assert not any((tmp_path / "cache" / "storage").iterdir())  # no staging left, nothing complete
