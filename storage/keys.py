"""Key rules shared by every backend: relative, '/'-separated, no '..', nothing that could escape a root."""

from __future__ import annotations

import re

from storage.errors import InvalidKey

MAX_KEY_LENGTH = 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._:=-]+$")


def check_key(key: str) -> str:
    """Return `key` unchanged if it is safe, else raise InvalidKey."""
    if not key or len(key) > MAX_KEY_LENGTH or key.startswith("/"):
        raise InvalidKey("invalid storage key")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise InvalidKey("invalid storage key")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix is a key, optionally followed by '/' (or empty for everything)."""
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/"))
    return prefix
