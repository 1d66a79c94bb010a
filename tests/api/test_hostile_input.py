"""Hostile input against real servers (every storage x database): never a 500, never a silent
truncation, no validation bypass, safe names. Each case checks the OpenAI-shaped error, that
nothing refused is left in storage, and that the server logged no unhandled error meanwhile.

The SDK sends the JSONL corpus; raw sockets send what no HTTP library sends on purpose (bodies
cut short, duplicate form fields, control characters in a multipart header).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import openai
import pytest

from tests.conftest import Project
from tests.support.blobs import open_multipart_uploads, stored_keys
from tests.support.data import chat_jsonl
from tests.support.hostile import (
    BOUNDARY,
    CORPUS,
    Case,
    closing,
    field,
    file_field,
    jsonl_errors_ok,
    raw_post,
)
from tests.support.server import RunningServer

INVALID = b'{"not": "a chat example"}\n' * 3


@pytest.fixture(autouse=True)
def no_unhandled_errors(server: RunningServer) -> Iterator[None]:
    """The server's log gains no traceback and no error event while the test runs."""
    start = len(server.log_text())
    yield
    added = server.log_text()[start:]
    assert "Traceback" not in added, added[-3000:]
    assert "unhandled_error" not in added, added[-3000:]
    assert '"level": "error"' not in added, added[-3000:]


def nothing_stored(server: RunningServer, project: Project) -> bool:
    return (
        stored_keys(server, f"files/{project.id}/") == []
        and stored_keys(server, f"uploads/{project.id}/") == []
        and open_multipart_uploads(server) == []
    )


# --- the JSONL corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_jsonl_corpus_on_files(
    case: Case, client: openai.OpenAI, server: RunningServer, project: Project
) -> None:
    if case.accepted:
        created = client.files.create(file=("train.jsonl", case.data), purpose="fine-tune")
        assert created.status == "processed" and created.bytes == len(case.data)
        assert client.files.content(created.id).read() == case.data
        return
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("train.jsonl", case.data), purpose="fine-tune")
    assert err.value.status_code == 400
    assert jsonl_errors_ok({"error": err.value.body}, case.bad_line or 0), err.value.body
    assert nothing_stored(server, project)
    assert client.files.list().data == []


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_jsonl_corpus_on_uploads(
    case: Case, client: openai.OpenAI, server: RunningServer, project: Project
) -> None:
    up = client.uploads.create(
        bytes=len(case.data), filename="train.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    half = len(case.data) // 2  # two parts: the check reads across the seam
    parts = [client.uploads.parts.create(up.id, data=d) for d in (case.data[:half], case.data[half:])]
    part_ids = [p.id for p in parts]
    if case.accepted:
        done = client.uploads.complete(up.id, part_ids=part_ids)
        assert done.status == "completed" and done.file is not None
        assert client.files.content(done.file.id).read() == case.data
        return
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(up.id, part_ids=part_ids)
    assert jsonl_errors_ok({"error": err.value.body}, case.bad_line or 0), err.value.body
    # No file; the staged parts stay with the still-pending upload until it is cancelled.
    assert stored_keys(server, f"files/{project.id}/") == []
    assert len(stored_keys(server, f"uploads/{project.id}/{up.id}/")) == 2
    assert client.uploads.cancel(up.id).status == "cancelled"
    assert nothing_stored(server, project)


# --- bodies cut short ------------------------------------------------------------------------

LINES = chat_jsonl(10).splitlines(keepends=True)


def _target(client: openai.OpenAI, endpoint: str) -> tuple[str, bytes]:
    """The path to post to and the form fields before the file part."""
    if endpoint == "files":
        return "/files", field("purpose", "fine-tune")
    up = client.uploads.create(
        bytes=len(b"".join(LINES)), filename="train.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    return f"/uploads/{up.id}/parts", b""


def _file_name(endpoint: str) -> str:
    return "file" if endpoint == "files" else "data"


TRUNCATIONS = [
    "no_part_end",
    "no_closing_boundary",
    "cut_in_the_next_part",
    "shorter_than_content_length",
    "chunked_no_closing",
]


@pytest.mark.parametrize("endpoint", ["files", "uploads"])
@pytest.mark.parametrize("how", TRUNCATIONS)
def test_truncated_body_is_refused_and_nothing_stored(
    endpoint: str, how: str, client: openai.OpenAI, server: RunningServer, project: Project, api_key: str
) -> None:
    path, fields = _target(client, endpoint)
    full = fields + file_field(_file_name(endpoint), b"train.jsonl", b"".join(LINES)) + closing()
    head = fields + file_field(_file_name(endpoint), b"train.jsonl", b"".join(LINES[:5]))
    if how == "no_part_end":  # cut after line 5 of 10, inside the file part
        response = raw_post(server, path, api_key, head[: -len(b"\r\n")])
    elif how == "no_closing_boundary":  # the part ends, the body does not
        response = raw_post(server, path, api_key, head)
    elif how == "cut_in_the_next_part":  # the file part is complete (and stored) before the cut
        response = raw_post(server, path, api_key, head + f"--{BOUNDARY}\r\nContent-Disp".encode())
    elif how == "shorter_than_content_length":
        cut = full[: len(full) // 2]
        response = raw_post(server, path, api_key, cut, content_length=len(full), half_close=True)
    else:
        response = raw_post(server, path, api_key, head[: -len(b"\r\n")], chunked=True)
    if how == "shorter_than_content_length":
        # The connection ends mid-body: no one is left to answer, and nothing is kept.
        assert response.status in (None, 400)
    else:
        assert response.status == 400 and response.body is not None, response
        error = response.body["error"]
        assert error["type"] == "invalid_request_error" and "closing boundary" in error["message"]
    assert nothing_stored(server, project)
    assert client.files.list().data == []
    # The server is still well: the complete body is taken.
    path, fields = _target(client, endpoint)
    full = fields + file_field(_file_name(endpoint), b"train.jsonl", b"".join(LINES)) + closing()
    assert raw_post(server, path, api_key, full).status == 200


# --- duplicate fields and field order -----------------------------------------------------------


FORMS = {
    # purpose assistants before the file (no fine-tune check), fine-tune after it: the bypass.
    "purpose_twice_different": (
        field("purpose", "assistants")
        + file_field("file", b"x.jsonl", INVALID)
        + field("purpose", "fine-tune"),
        "purpose",
    ),
    "purpose_twice_same": (
        field("purpose", "fine-tune")
        + field("purpose", "fine-tune")
        + file_field("file", b"x.jsonl", INVALID),
        "purpose",
    ),
    "file_twice": (
        field("purpose", "fine-tune")
        + file_field("file", b"a.jsonl", chat_jsonl())
        + file_field("file", b"b.jsonl", INVALID),
        "file",
    ),
    "expires_twice": (
        field("purpose", "user_data")
        + field("expires_after[seconds]", "3600")
        + field("expires_after[seconds]", "7200")
        + field("expires_after[anchor]", "created_at")
        + file_field("file", b"x.txt", b"hello"),
        "expires_after[seconds]",
    ),
    # A file before its purpose is checked all the same.
    "purpose_after_invalid_file": (
        file_field("file", b"x.jsonl", INVALID) + field("purpose", "fine-tune"),
        "file",
    ),
    "purpose_after_file_not_jsonl": (
        file_field("file", b"x.txt", INVALID) + field("purpose", "fine-tune"),
        "file",
    ),
}


@pytest.mark.parametrize("name", list(FORMS))
def test_no_form_stores_an_unchecked_fine_tune_file(
    name: str, client: openai.OpenAI, server: RunningServer, project: Project, api_key: str
) -> None:
    body, param = FORMS[name]
    response = raw_post(server, "/files", api_key, body + closing())
    assert response.status == 400 and response.body is not None, response
    error = response.body["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert nothing_stored(server, project)
    assert client.files.list().data == []


def test_upload_part_with_data_twice_is_refused(
    client: openai.OpenAI, server: RunningServer, project: Project, api_key: str
) -> None:
    up = client.uploads.create(bytes=10, filename="a.txt", mime_type="text/plain", purpose="user_data")
    body = file_field("data", b"blob", b"01234") + file_field("data", b"blob", b"56789") + closing()
    response = raw_post(server, f"/uploads/{up.id}/parts", api_key, body)
    assert response.status == 400 and response.body is not None
    assert response.body["error"]["param"] == "data"
    assert nothing_stored(server, project)


# --- file names --------------------------------------------------------------------------------

_EXT_VALUE = re.compile(r"UTF-8''(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})*")


def _disposition(client: openai.OpenAI, file_id: str) -> tuple[str, str]:
    """The ASCII fallback and the decoded ext-value of a download's Content-Disposition."""
    header = client.files.with_raw_response.content(file_id).headers["content-disposition"]
    match = re.fullmatch(r'attachment; filename="([ -~]*)"; filename\*=(\S+)', header)
    assert match is not None, header
    fallback, ext = match.groups()
    assert _EXT_VALUE.fullmatch(ext), ext
    assert '"' not in fallback and "\\" not in fallback and "/" not in fallback
    return fallback, unquote(ext.removeprefix("UTF-8''"))


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"../../etc/passwd.jsonl", "passwd.jsonl"),
        (b"C:\\Users\\me\\train.jsonl", "train.jsonl"),
        ("naïve ;%+ünï.jsonl".encode(), "naïve ;%+ünï.jsonl"),
    ],
    ids=["dot_dot_slash", "windows_path", "reserved_and_non_ascii"],
)
def test_multipart_filename_keeps_only_the_base_name(
    sent: bytes, kept: str, client: openai.OpenAI, server: RunningServer, api_key: str
) -> None:
    body = field("purpose", "fine-tune") + file_field("file", sent, chat_jsonl()) + closing()
    response = raw_post(server, "/files", api_key, body)
    assert response.status == 200 and response.body is not None, response
    assert response.body["filename"] == kept
    fallback, exact = _disposition(client, response.body["id"])
    assert exact == kept and fallback.endswith(".jsonl")


@pytest.mark.parametrize(
    "sent",
    [
        b"a\x00b.jsonl",
        b"a\x1bb.jsonl",
        b"tab\there.jsonl",
        b"a\x7fb.jsonl",
        "\u202elnosj.jsonl".encode(),
        b"a/",
    ],
    ids=["nul", "escape", "tab", "delete", "bidi_override", "directory"],
)
def test_multipart_filename_with_control_characters_is_refused(
    sent: bytes, client: openai.OpenAI, server: RunningServer, project: Project, api_key: str
) -> None:
    body = field("purpose", "fine-tune") + file_field("file", sent, chat_jsonl()) + closing()
    response = raw_post(server, "/files", api_key, body)
    assert response.status == 400 and response.body is not None, response
    assert response.body["error"]["param"] == "file"
    assert nothing_stored(server, project)


@pytest.mark.parametrize("sent", ["a\nb.jsonl", "a\rb.jsonl", "a\x00b.jsonl", "x\u2066.jsonl", "dir/.."])
def test_upload_filename_with_control_characters_is_refused(
    sent: str, client: openai.OpenAI, server: RunningServer, project: Project
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=10, filename=sent, mime_type="text/jsonl", purpose="fine-tune")
    assert err.value.param == "filename"
    assert nothing_stored(server, project)


def test_upload_filename_is_cleaned_and_downloads_with_a_safe_disposition(client: openai.OpenAI) -> None:
    data = chat_jsonl()
    name = 'dir/we"ird ;name%22 \u00e9\u4e2d.jsonl'
    up = client.uploads.create(bytes=len(data), filename=name, mime_type="text/jsonl", purpose="fine-tune")
    assert up.filename == 'we"ird ;name%22 \u00e9\u4e2d.jsonl'
    part = client.uploads.parts.create(up.id, data=data)
    done = client.uploads.complete(up.id, part_ids=[part.id])
    assert done.file is not None and done.file.filename == up.filename
    fallback, exact = _disposition(client, done.file.id)
    assert exact == up.filename
    assert fallback == "we_ird _name_22 __.jsonl"


# --- suffix ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    ["a:b", "a/b", "a b", "a\nb", "a\x00b", "a?b", "a#b", "a%b", "x" * 65, "\u00fcber", "trail\n", ""],
    ids=[
        "colon",
        "slash",
        "space",
        "newline",
        "nul",
        "question",
        "hash",
        "percent",
        "65_chars",
        "non_ascii",
        "trailing_newline",
        "empty",
    ],
)
def test_bad_suffix_is_400(suffix: str, client: openai.OpenAI) -> None:
    training_file = client.files.create(file=("t.jsonl", chat_jsonl()), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=training_file, suffix=suffix)
    assert err.value.param == "suffix" and err.value.type == "invalid_request_error"
    assert client.fine_tuning.jobs.list().data == []


@pytest.mark.parametrize("suffix", ["my-model_v2", "x" * 64, "0"])
def test_good_suffix_creates_a_job(
    suffix: str, client: openai.OpenAI, server: RunningServer, api_key: str
) -> None:
    training_file = client.files.create(file=("t.jsonl", chat_jsonl()), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training_file, suffix=suffix)
    assert job.user_provided_suffix == suffix
    r = httpx.post(
        f"{server.base_url}/fine_tuning/jobs/{job.id}/cancel", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert r.status_code == 200
