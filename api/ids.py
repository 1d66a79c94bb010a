"""Object ids in OpenAI's shapes (`file-…`, `upload_…`, `part_…`) and API keys."""

from __future__ import annotations

import hashlib
import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def random_base62(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """`prefix` is given with its separator, e.g. `file-` or `upload_`."""
    return prefix + random_base62(length)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def new_api_key() -> str:
    return "sk-" + random_base62(48)


def hash_api_key(key: str) -> str:
    # Keys are 285 bits of randomness, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def now_us() -> int:
    """Creation times are kept in microseconds so that cursors have a strict order."""
    return time.time_ns() // 1000
