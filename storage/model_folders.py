"""Base models kept in ftapi's own storage, for installs that cannot reach a model hub.

An imported model lives under `base-models/<folder>/` (the folder is the model id with '/' as
'--'). Its manifest, `ftapi-model.json`, is written last, so a folder without one is an import that
did not finish: it holds the model's catalogue entry and every file's path, size and SHA-256. A
catalogue `source` of `storage:base-models/<folder>/` names such a folder.

Readers (trainers, the API's engines) fetch a folder once into a local cache directory named by the
manifest's digest, checking every file's hash; the next reader finds it complete and reads only the
manifest. A re-imported model has another manifest, so it is fetched again, never mixed up.

Only safetensors weights and plain config, tokenizer and template files are stored or fetched:
pickled weights and remote code are refused, on import and on fetch (the serving cache applies the
same rules through `unsafe_reason`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

from storage.base import DEFAULT_CHUNK, BlobStore
from storage.errors import StorageError

SOURCE_SCHEME = "storage:"
MODELS_PREFIX = "base-models/"
MANIFEST = "ftapi-model.json"
SAFE_SUFFIXES = (".safetensors", ".json", ".jinja", ".txt", ".model")
UNSAFE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.py")
CODE_CONFIGS = ("config.json", "adapter_config.json", "tokenizer_config.json")
COMPLETE_MARKER = ".ftapi-complete"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._=-]+$")


class UnsafeModelFolder(StorageError):
    """A model folder that must not be stored or loaded (pickles, code, no safetensors, bad names)."""


class ModelExists(StorageError):
    """A model with this id is already in storage."""


def unsafe_reason(path: Path) -> str | None:
    """Why the local folder `path` must not be loaded, or None when it holds safetensors weights
    and configs without remote code."""
    if not any(path.glob("*.safetensors")):
        return "The stored model has no safetensors weights; other formats are never loaded."
    for pattern in UNSAFE_PATTERNS:
        found = next(path.rglob(pattern), None)
        if found is not None:
            return f"Refusing to load {found.name}: only safetensors weights are loaded."
    for name in CODE_CONFIGS:
        config = path / name
        if config.exists() and "auto_map" in json.loads(config.read_text()):
            return f"Refusing to load a model whose {name} asks for remote code (auto_map)."
    return None


def folder_prefix(model_id: str) -> str:
    """The storage prefix of an imported model: `base-models/<id, '/' as '--'>/`."""
    if len(model_id) > 200 or not _MODEL_ID.match(model_id) or "--" in model_id:
        raise UnsafeModelFolder(
            "A model id is letters, digits, '.', '_' and '-', optionally as owner/name (no '--')."
        )
    return MODELS_PREFIX + model_id.replace("/", "--") + "/"


def stored_prefix(source: str) -> str | None:
    """The storage prefix a catalogue `source` names, or None when it is not a `storage:` source."""
    if not source.startswith(SOURCE_SCHEME):
        return None
    prefix = source[len(SOURCE_SCHEME) :]
    rel = PurePosixPath(prefix)
    if not prefix.startswith(MODELS_PREFIX) or not prefix.endswith("/") or ".." in rel.parts:
        raise UnsafeModelFolder(f"A storage source is {SOURCE_SCHEME}{MODELS_PREFIX}<folder>/")
    return prefix


def _files_to_import(local: Path) -> list[Path]:
    """The files of a local Hugging Face folder that are imported; raises for anything unsafe."""
    if not local.is_dir():
        raise UnsafeModelFolder(f"{local} is not a directory")
    reason = unsafe_reason(local)
    if reason is not None:
        raise UnsafeModelFolder(reason.replace("stored model", "folder").replace("to load", "to import"))
    files = []
    for path in sorted(local.rglob("*")):
        rel = path.relative_to(local)
        if any(part.startswith(".") for part in rel.parts):  # .cache/, .gitattributes: not the model
            continue
        if path.is_file() and path.name.endswith(SAFE_SUFFIXES):
            if not all(_FILE_NAME.match(part) for part in rel.parts):
                raise UnsafeModelFolder(f"Cannot store a file named {rel.as_posix()!r}: rename it.")
            files.append(path)
    return files


async def _read_chunks(path: Path, digest: Any) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    with f:
        while chunk := await asyncio.to_thread(f.read, 8 * DEFAULT_CHUNK):
            digest.update(chunk)
            yield chunk


async def import_folder(
    store: BlobStore,
    local: Path,
    model_id: str,
    entry: dict[str, Any],
    annotations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Upload a local Hugging Face folder (safetensors, configs, tokenizer) as `model_id`, with its
    catalogue `entry` and the importer's `annotations` (top-level manifest keys, such as what it found
    checking the folder); returns the manifest. Raises UnsafeModelFolder, ModelExists."""
    prefix = folder_prefix(model_id)
    files = await asyncio.to_thread(_files_to_import, local)
    if await store.exists(prefix + MANIFEST):
        raise ModelExists(f"A model named {model_id} is already in storage.")
    await store.delete_prefix(prefix)  # the leftovers of an import that did not finish
    listed = []
    for path in files:
        rel = path.relative_to(local).as_posix()
        digest = hashlib.sha256()
        size = await store.put_stream(prefix + rel, _read_chunks(path, digest))
        listed.append({"path": rel, "size": size, "sha256": digest.hexdigest()})
    manifest = {
        **(annotations or {}),
        "id": model_id,
        "entry": {**entry, "id": model_id, "source": SOURCE_SCHEME + prefix},
        "files": listed,
    }
    await store.put_bytes(prefix + MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


async def _read_bytes(store: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.open_stream(key)])


async def stored_manifests(store: BlobStore) -> list[dict[str, Any]]:
    """The manifests of every completely imported model, by folder name."""
    keys = [k for k in await store.list_keys(MODELS_PREFIX) if k.endswith("/" + MANIFEST)]
    return [json.loads(await _read_bytes(store, key)) for key in keys if key.count("/") == 2]


async def fetch_folder(store: BlobStore, prefix: str, cache_root: Path) -> tuple[Path, bool]:
    """The local copy of the model stored under `prefix`, and whether this call downloaded it
    (False: it was in the cache already). Safe against concurrent fetches by other processes:
    each downloads into its own staging folder and the first rename wins."""
    raw = await _read_bytes(store, prefix + MANIFEST)
    dest = await asyncio.to_thread(cache_root.resolve)
    dest = dest / "storage" / hashlib.sha256(raw).hexdigest()[:32]
    if await asyncio.to_thread((dest / COMPLETE_MARKER).exists):
        return dest, False
    manifest = json.loads(raw)
    staging = dest.parent / f".staging-{uuid.uuid4().hex}"
    try:
        for item in manifest["files"]:
            rel = PurePosixPath(item["path"])
            if rel.is_absolute() or ".." in rel.parts or not rel.name.endswith(SAFE_SUFFIXES):
                raise UnsafeModelFolder(f"Refusing a stored file outside its model folder: {item['path']}")
            target = staging.joinpath(*rel.parts)
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            digest = hashlib.sha256()
            f = await asyncio.to_thread(target.open, "wb")
            with f:
                async for chunk in store.open_stream(prefix + item["path"]):
                    digest.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
            if digest.hexdigest() != item["sha256"]:
                raise UnsafeModelFolder(f"The stored file {item['path']} does not match its manifest.")
        reason = await asyncio.to_thread(unsafe_reason, staging)
        if reason is not None:
            raise UnsafeModelFolder(reason)
        await asyncio.to_thread((staging / COMPLETE_MARKER).touch)
        try:
            await asyncio.to_thread(staging.rename, dest)
        except OSError:
            if not await asyncio.to_thread((dest / COMPLETE_MARKER).exists):
                raise
            return dest, False  # another process finished first
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return dest, True
