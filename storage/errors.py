"""Errors raised by every BlobStore. Services translate them; messages never carry paths or buckets."""


class StorageError(Exception):
    """Base class for storage failures."""


class BlobNotFound(StorageError):
    """The key does not exist in the store."""


class InvalidKey(StorageError):
    """The key is malformed or would escape the store's root."""
