"""File names from clients: checked once when a file or upload is created, encoded safely on download.

A name is only a label (blobs are stored under ids), but it comes back in JSON, in listings and in
`Content-Disposition`, where a path, a line feed or a NUL would mislead whoever reads it.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from api.errors import InvalidRequest

MAX_FILENAME_CHARS = 512
# Bidirectional overrides and isolates make a name display differently from what it is.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# RFC 8187 attr-char beyond what quote() always keeps (letters, digits, "_.-~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"
_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+,=@-]")


def clean_filename(name: str, *, param: str) -> str:
    """The base name of `name` (no directories). Raises InvalidRequest on control characters,
    bidirectional overrides, an empty base name or one longer than MAX_FILENAME_CHARS."""
    if any(unicodedata.category(c) in ("Cc", "Cs") or c in _BIDI for c in name):
        raise InvalidRequest("The filename must not contain control characters.", param=param)
    base = re.split(r"[/\\]", name)[-1]
    if base in ("", ".", ".."):
        raise InvalidRequest("The filename must name a file, not a directory.", param=param)
    if len(base) > MAX_FILENAME_CHARS:
        raise InvalidRequest(f"The filename is longer than {MAX_FILENAME_CHARS} characters.", param=param)
    return base


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII `filename` fallback and the exact name as an RFC 8187 ext-value.

    Also safe for names stored before clean_filename existed: every byte outside attr-char is
    percent-encoded, and the fallback keeps only harmless ASCII."""
    fallback = _FALLBACK_UNSAFE.sub("_", filename) or "download"
    encoded = quote(filename, safe=_ATTR_CHAR_EXTRA, encoding="utf-8", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
