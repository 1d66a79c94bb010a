"""api.files.names without a server: what a stored name may be, and its Content-Disposition."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from api.errors import InvalidRequest
from api.files.names import MAX_FILENAME_CHARS, clean_filename, content_disposition

_HEADER = re.compile(r"attachment; filename=\"([A-Za-z0-9 ._()+,=@-]+)\"; filename\*=UTF-8''([!-~]*)")


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("train.jsonl", "train.jsonl"),
        ("../../etc/passwd", "passwd"),
        ("a\\b\\c.txt", "c.txt"),
        ("é.jsonl", "é.jsonl"),
    ],
)
def test_clean_filename_keeps_the_base_name(name: str, kept: str) -> None:
    assert clean_filename(name, param="file") == kept


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "a\nb", "a\rb", "a\x85b", "a\ud800b", "\u202ex", "x/", "..", "x" * (MAX_FILENAME_CHARS + 1)],
)
def test_clean_filename_refuses(name: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        clean_filename(name, param="filename")
    assert err.value.param == "filename"


@pytest.mark.parametrize(
    "stored",
    # Names as rows stored before names were cleaned may hold them: the header must stay one safe line.
    ["train.jsonl", "../../etc/passwd", 'a"b\\c;d%e', "line\r\nSet-Cookie: x=1", "nul\x00", "中文 é", ""],
)
def test_content_disposition_is_one_safe_header_value(stored: str) -> None:
    header = content_disposition(stored)
    match = _HEADER.fullmatch(header)
    assert match is not None, header
    assert unquote(match.group(2)) == stored
    assert all(c.isascii() and c.isprintable() for c in header)
