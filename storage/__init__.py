"""Blob storage for ftapi: a local directory (default) or any S3-compatible store."""

from storage.base import BlobStore
from storage.errors import BlobNotFound, InvalidKey, StorageError

__all__ = ["BlobNotFound", "BlobStore", "InvalidKey", "StorageError"]
