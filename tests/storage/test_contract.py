"""One contract suite for every BlobStore: local directory and S3 (moto's server as its own process)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest

from storage import BlobNotFound, BlobStore, InvalidKey
from storage.config import LocalStoreConfig, S3StoreConfig
from storage.factory import build_store

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        config: LocalStoreConfig | S3StoreConfig = LocalStoreConfig(root=tmp_path / "blobs")
    else:
        request.applymarker(pytest.mark.s3)
        config = S3StoreConfig(
            bucket="ftapi-" + secrets.token_hex(4),
            endpoint_url=request.getfixturevalue("moto_endpoint"),
            access_key_id="testing",
            secret_access_key="testing",
            prefix="pfx",
            part_size=5 * MiB,
            create_bucket=True,
        )
    s = build_store(config)
    yield s
    await s.close()


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store: BlobStore, key: str) -> bytes:
    return b"".join([c async for c in store.open_stream(key)])


def open_multipart(store: BlobStore) -> list[object]:
    from storage.s3 import S3BlobStore

    if not isinstance(store, S3BlobStore):
        return []
    client = boto3.client(
        "s3",
        endpoint_url=store.config.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    return list(client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


async def test_round_trip_small_and_multi_part(store: BlobStore) -> None:
    assert await store.put_bytes("a/small", b"hello") == 5
    assert await read_all(store, "a/small") == b"hello"
    big = os.urandom(12 * MiB + 123)  # more than two S3 parts
    assert await store.put_stream("a/big", chunks_of(big)) == len(big)
    assert await read_all(store, "a/big") == big
    assert await store.size("a/big") == len(big)
    assert open_multipart(store) == []


async def test_empty_blob_and_overwrite(store: BlobStore) -> None:
    assert await store.put_stream("e", chunks_of(b"")) == 0
    assert await store.exists("e") and await read_all(store, "e") == b""
    await store.put_bytes("e", b"second")
    assert await read_all(store, "e") == b"second"


async def test_missing_key(store: BlobStore) -> None:
    assert not await store.exists("nope")
    with pytest.raises(BlobNotFound):
        await store.size("nope")
    with pytest.raises(BlobNotFound):
        await read_all(store, "nope")
    await store.delete("nope")  # idempotent


async def test_delete_prefix_and_list(store: BlobStore) -> None:
    for k in ("u/1/a", "u/1/b", "u/2/a"):
        await store.put_bytes(k, b"x")
    assert await store.list_keys("u/1/") == ["u/1/a", "u/1/b"]
    assert await store.delete_prefix("u/1/") == 2
    assert await store.list_keys("u/") == ["u/2/a"]


async def test_compose_keeps_order_with_small_and_large_sources(store: BlobStore) -> None:
    pieces = [b"a" * 100, os.urandom(6 * MiB), b"b" * 10, os.urandom(5 * MiB), os.urandom(3 * MiB), b"end"]
    keys = [f"parts/{i}" for i in range(len(pieces))]
    for k, p in zip(keys, pieces, strict=True):
        await store.put_bytes(k, p)
    order = [keys[3], keys[0], keys[1], keys[5], keys[2], keys[4]]
    assert await store.compose("final", order) == sum(map(len, pieces))
    assert await read_all(store, "final") == b"".join(pieces[int(k.split("/")[1])] for k in order)
    assert await store.exists(keys[0])  # sources stay
    assert open_multipart(store) == []


async def test_compose_with_a_missing_source_stores_nothing(store: BlobStore) -> None:
    await store.put_bytes("p/1", os.urandom(6 * MiB))
    with pytest.raises(BlobNotFound):
        await store.compose("final", ["p/1", "p/missing"])
    assert not await store.exists("final")
    assert open_multipart(store) == []


async def test_failed_stream_leaves_nothing(store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(6 * MiB)
        yield os.urandom(6 * MiB)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await store.put_stream("half", broken())
    assert not await store.exists("half")
    assert open_multipart(store) == []
    assert await store.list_keys("") == []


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/../../b", "", "a\\b", "a/./b", "with space"])
async def test_keys_cannot_escape(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        await store.exists(key)
