"""Choose the BlobStore implementation from its configuration."""

from __future__ import annotations

from storage.base import BlobStore
from storage.config import LocalStoreConfig, S3StoreConfig


def build_store(config: LocalStoreConfig | S3StoreConfig) -> BlobStore:
    if isinstance(config, S3StoreConfig):
        from storage.s3 import S3BlobStore

        return S3BlobStore(config)
    from storage.local import LocalBlobStore

    return LocalBlobStore(config.root)
