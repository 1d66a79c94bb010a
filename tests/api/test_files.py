"""The Files API through the official SDK (strict parsing) against a real server on every backend."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import openai
import pytest

from tests.conftest import MAX_FILE_BYTES, Project
from tests.support.blobs import open_multipart_uploads, stored_keys
from tests.support.data import big_jsonl, chat_jsonl, dpo_jsonl
from tests.support.server import RunningServer


def test_file_round_trip(client: openai.OpenAI) -> None:
    content = chat_jsonl(12)
    created = client.files.create(file=("train.jsonl", content, "application/jsonl"), purpose="fine-tune")
    assert created.id.startswith("file-")
    assert (created.object, created.bytes, created.purpose, created.status) == (
        "file",
        len(content),
        "fine-tune",
        "processed",
    )
    assert created.filename == "train.jsonl"
    assert client.files.retrieve(created.id) == created
    download = client.files.with_raw_response.content(created.id)
    assert download.content == content
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"train.jsonl\"; filename*=UTF-8''train.jsonl"
    )
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(created.id)
    assert err.value.status_code == 404 and err.value.param == "id"


def test_dpo_file_is_accepted(client: openai.OpenAI) -> None:
    created = client.files.create(file=("prefs.jsonl", dpo_jsonl()), purpose="fine-tune")
    assert created.status == "processed"


def test_large_file_streams_through_storage(
    client: openai.OpenAI, server: RunningServer, project: Project
) -> None:
    content = big_jsonl(12 * 1024 * 1024)  # several S3 parts at the test part size
    created = client.files.create(file=("big.jsonl", io.BytesIO(content)), purpose="fine-tune")
    assert created.bytes == len(content)
    assert (
        hashlib.sha256(client.files.content(created.id).read()).digest() == hashlib.sha256(content).digest()
    )
    assert stored_keys(server, f"files/{project.id}/") == [f"files/{project.id}/{created.id}"]
    client.files.delete(created.id)
    assert stored_keys(server, f"files/{project.id}/") == []


def test_expires_after(client: openai.OpenAI) -> None:
    f = client.files.create(
        file=("a.jsonl", chat_jsonl()),
        purpose="fine-tune",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert f.expires_at == f.created_at + 3600
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(
            file=("a.jsonl", chat_jsonl()),
            purpose="fine-tune",
            expires_after={"anchor": "created_at", "seconds": 10},
        )
    assert err.value.param == "expires_after.seconds"


def test_list_pagination_and_filters(client: openai.OpenAI, server: RunningServer, api_key: str) -> None:
    ids = [client.files.create(file=(f"f{i}.jsonl", chat_jsonl()), purpose="fine-tune").id for i in range(5)]
    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    seen = [f.id for f in client.files.list(limit=2, purpose="fine-tune")]
    assert seen == list(reversed(ids))
    assert [f.id for f in client.files.list(purpose="fine-tune", order="asc")] == ids
    assert [f.id for f in client.files.list(purpose="user_data")] == [other.id]
    assert [f.id for f in client.files.list()] == [other.id, *reversed(ids)]

    raw = httpx.get(
        server.base_url + "/files", params={"limit": 2}, headers={"Authorization": f"Bearer {api_key}"}
    ).json()
    assert raw["object"] == "list" and raw["has_more"] is True
    assert raw["first_id"] == other.id and raw["last_id"] == ids[-1]
    last = httpx.get(
        server.base_url + "/files",
        params={"limit": 10, "after": ids[1]},
        headers={"Authorization": f"Bearer {api_key}"},
    ).json()
    assert [f["id"] for f in last["data"]] == [ids[0]] and last["has_more"] is False


def test_idempotency_key_makes_retries_safe(client: openai.OpenAI) -> None:
    headers = {"Idempotency-Key": "upload-42"}
    a = client.files.create(file=("a.jsonl", chat_jsonl()), purpose="fine-tune", extra_headers=headers)
    b = client.files.create(file=("a.jsonl", chat_jsonl()), purpose="fine-tune", extra_headers=headers)
    assert a.id == b.id
    assert [f.id for f in client.files.list()] == [a.id]


def _line(i: int, obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


GOOD = chat_jsonl(3)
BAD_FILES = [
    # (case, filename, content, substring expected in the message)
    ("broken-json", "t.jsonl", GOOD + b'{"messages": [\n', "Line 4"),
    ("not-a-dict", "t.jsonl", GOOD + b"[1, 2]\n", "Line 4 is not a dictionary"),
    ("messages-not-list", "t.jsonl", GOOD + b'{"messages": "hi"}\n', "Line 4"),
    (
        "content-wrong-type",
        "t.jsonl",
        _line(1, {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}),
        "Line 1",
    ),
    (
        "missing-assistant",
        "t.jsonl",
        GOOD + _line(4, {"messages": [{"role": "user", "content": "hi"}]}),
        "Line 4",
    ),
    (
        "unknown-role",
        "t.jsonl",
        _line(1, {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}),
        "robot",
    ),
    (
        "bad-tool-call",
        "t.jsonl",
        GOOD
        + _line(
            4,
            {
                "messages": [
                    {"role": "user", "content": "weather?"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "w", "arguments": "{not json"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                    {"role": "assistant", "content": "Sunny."},
                ]
            },
        ),
        "Line 4",
    ),
    ("non-utf8", "t.jsonl", GOOD + b'{"messages": "\xff\xfe"}\n', "Line 4"),
    ("empty-file", "t.jsonl", b"", "empty"),
    ("wrong-extension", "train.csv", GOOD, "Must be .jsonl"),
]


@pytest.mark.parametrize(
    ("case", "filename", "content", "expected"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_bad_fine_tune_files_are_refused_and_nothing_is_stored(
    client: openai.OpenAI,
    server: RunningServer,
    project: Project,
    case: str,
    filename: str,
    content: bytes,
    expected: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=(filename, content), purpose="fine-tune")
    assert expected in err.value.message, err.value.message
    assert err.value.param == "file"
    assert err.value.type == "invalid_request_error"
    assert list(client.files.list()) == []
    assert stored_keys(server, f"files/{project.id}/") == []
    assert open_multipart_uploads(server) == []


def test_huge_line_is_refused(client: openai.OpenAI, server: RunningServer, project: Project) -> None:
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (17 * 1024 * 1024) + b'"}]}\n'
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("t.jsonl", GOOD + huge), purpose="fine-tune")
    assert "Line 4" in err.value.message
    assert stored_keys(server, f"files/{project.id}/") == []


def test_over_size_file_is_413_and_not_stored(
    client: openai.OpenAI, server: RunningServer, project: Project
) -> None:
    content = b"x" * (MAX_FILE_BYTES + 1)
    with pytest.raises(openai.APIStatusError) as err:
        client.with_options(max_retries=0).files.create(file=("notes.txt", content), purpose="user_data")
    assert err.value.status_code == 413
    assert stored_keys(server, f"files/{project.id}/") == []
    assert open_multipart_uploads(server) == []


def test_projects_cannot_see_each_other(client: openai.OpenAI, server: RunningServer) -> None:
    from tests.conftest import new_project

    mine = client.files.create(file=("mine.jsonl", chat_jsonl()), purpose="fine-tune")
    stranger = openai.OpenAI(
        base_url=server.base_url, api_key=new_project(server).key, _strict_response_validation=True
    )
    assert list(stranger.files.list()) == []
    for call in (stranger.files.retrieve, stranger.files.delete, lambda i: stranger.files.content(i).read()):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert client.files.retrieve(mine.id).id == mine.id


def test_missing_purpose_and_file(server: RunningServer, api_key: str) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    r = httpx.post(server.base_url + "/files", headers=auth, files={"file": ("a.jsonl", GOOD)})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    r = httpx.post(
        server.base_url + "/files", headers=auth, data={"purpose": "fine-tune"}, files={"x": ("a", b"1")}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = httpx.post(
        server.base_url + "/files", headers=auth, data={"purpose": "nope"}, files={"file": ("a.jsonl", GOOD)}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"


def test_purpose_sent_after_the_file_is_still_checked(
    server: RunningServer, api_key: str, project: Project
) -> None:
    """Some clients put form fields after the file part: the content check must still hold."""
    boundary = "xyzboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + GOOD
        + b"[1]\n"
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f"fine-tune\r\n--{boundary}--\r\n"
        ).encode()
    )
    r = httpx.post(
        server.base_url + "/files",
        content=body,
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert r.status_code == 400 and "Line 4" in r.json()["error"]["message"]
    assert stored_keys(server, f"files/{project.id}/") == []
