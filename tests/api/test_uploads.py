"""The Uploads API through the SDK: chunked uploads, part order, byte counts, md5, cancel, expiry."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import ADMIN_KEY, MAX_PART_BYTES, Project, s3_env
from tests.support.blobs import open_multipart_uploads, stored_keys
from tests.support.data import big_jsonl, chat_jsonl
from tests.support.server import RunningServer, run_server


def test_upload_file_chunked_end_to_end(
    client: openai.OpenAI, server: RunningServer, project: Project, tmp_path: Path
) -> None:
    content = big_jsonl(11 * 1024 * 1024)
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    upload = client.uploads.upload_file_chunked(
        file=path, mime_type="text/jsonl", purpose="fine-tune", part_size=3 * 1024 * 1024
    )
    assert upload.status == "completed" and upload.object == "upload"
    assert upload.file is not None and upload.file.bytes == len(content)
    assert upload.file.filename == "train.jsonl" and upload.file.purpose == "fine-tune"
    assert client.files.content(upload.file.id).read() == content
    # Staged parts are gone; only the file remains; no S3 multipart upload is left open.
    assert stored_keys(server, f"uploads/{project.id}/") == []
    assert stored_keys(server, f"files/{project.id}/") == [f"files/{project.id}/{upload.file.id}"]
    assert open_multipart_uploads(server) == []


def test_part_order_comes_from_part_ids(client: openai.OpenAI) -> None:
    pieces = [b"alpha-", b"beta-", b"gamma"]
    up = client.uploads.create(
        bytes=sum(map(len, pieces)), filename="notes.txt", mime_type="text/plain", purpose="user_data"
    )
    assert up.status == "pending" and up.expires_at == up.created_at + 3600
    parts = [client.uploads.parts.create(up.id, data=p) for p in pieces]
    assert all(p.object == "upload.part" and p.upload_id == up.id and p.id.startswith("part_") for p in parts)
    done = client.uploads.complete(up.id, part_ids=[parts[2].id, parts[0].id, parts[1].id])
    assert done.file is not None
    assert client.files.content(done.file.id).read() == b"gamma" + b"alpha-" + b"beta-"
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(up.id, data=b"late")


def test_byte_count_and_md5_are_enforced(client: openai.OpenAI) -> None:
    data = chat_jsonl()
    up = client.uploads.create(
        bytes=len(data) + 1, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    part = client.uploads.parts.create(up.id, data=data)
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(up.id, part_ids=[part.id])
    assert err.value.param == "part_ids" and "bytes" in err.value.message

    up = client.uploads.create(
        bytes=len(data), filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    part = client.uploads.parts.create(up.id, data=data)
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(up.id, part_ids=[part.id], md5="0" * 32)
    assert err.value.param == "md5"
    # A failed completion leaves the upload pending, so the client can fix its request.
    done = client.uploads.complete(up.id, part_ids=[part.id], md5=hashlib.md5(data).hexdigest())
    assert done.status == "completed"


def test_a_part_past_the_declared_size_is_refused(client: openai.OpenAI) -> None:
    up = client.uploads.create(bytes=10, filename="a.txt", mime_type="text/plain", purpose="user_data")
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(up.id, data=b"x" * 11)


def test_invalid_fine_tune_upload_fails_at_completion_and_stores_nothing(
    client: openai.OpenAI, server: RunningServer, project: Project
) -> None:
    data = chat_jsonl(3) + b"[1]\n"
    up = client.uploads.create(
        bytes=len(data), filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    part = client.uploads.parts.create(up.id, data=data)
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(up.id, part_ids=[part.id])
    assert "Line 4" in err.value.message
    assert list(client.files.list()) == []
    assert stored_keys(server, f"files/{project.id}/") == []


def test_fine_tune_upload_needs_jsonl_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=10, filename="t.csv", mime_type="text/csv", purpose="fine-tune")
    assert "jsonl" in err.value.message


def test_part_over_the_cap_is_413(client: openai.OpenAI, server: RunningServer, project: Project) -> None:
    up = client.uploads.create(
        bytes=MAX_PART_BYTES * 2, filename="a.bin", mime_type="application/octet-stream", purpose="user_data"
    )
    with pytest.raises(openai.APIStatusError) as err:
        client.with_options(max_retries=0).uploads.parts.create(
            up.id, data=io.BytesIO(b"x" * (MAX_PART_BYTES + 1))
        )
    assert err.value.status_code == 413
    assert stored_keys(server, f"uploads/{project.id}/") == []


def test_cancel_discards_parts(client: openai.OpenAI, server: RunningServer, project: Project) -> None:
    up = client.uploads.create(bytes=6, filename="a.txt", mime_type="text/plain", purpose="user_data")
    part = client.uploads.parts.create(up.id, data=b"abc")
    assert stored_keys(server, f"uploads/{project.id}/") == [f"uploads/{project.id}/{up.id}/{part.id}"]
    cancelled = client.uploads.cancel(up.id)
    assert cancelled.status == "cancelled"
    assert stored_keys(server, f"uploads/{project.id}/") == []
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(up.id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError):
        client.uploads.cancel(up.id)


def test_uploads_of_another_project_are_invisible(client: openai.OpenAI, server: RunningServer) -> None:
    from tests.conftest import new_project

    up = client.uploads.create(bytes=3, filename="a.txt", mime_type="text/plain", purpose="user_data")
    stranger = openai.OpenAI(base_url=server.base_url, api_key=new_project(server).key)
    with pytest.raises(openai.NotFoundError):
        stranger.uploads.parts.create(up.id, data=b"abc")
    with pytest.raises(openai.NotFoundError):
        stranger.uploads.cancel(up.id)


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_expired_uploads_are_swept(storage: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """An upload past its expiry is marked expired and its staged parts are removed (no orphans)."""
    env = {"FTAPI_API_KEY": ADMIN_KEY, "FTAPI_UPLOAD_TTL_SECONDS": "2", "FTAPI_SWEEP_INTERVAL_SECONDS": "0.5"}
    if storage == "s3":
        env |= s3_env(request.getfixturevalue("moto_endpoint"), "ftapi-expiry-" + storage)
    with run_server(tmp_path / "srv", env) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        up = client.uploads.create(bytes=6, filename="a.txt", mime_type="text/plain", purpose="user_data")
        part = client.uploads.parts.create(up.id, data=b"abc")
        assert stored_keys(srv, "uploads/") != []
        deadline = time.monotonic() + 20
        while stored_keys(srv, "uploads/") and time.monotonic() < deadline:
            time.sleep(0.25)
        assert stored_keys(srv, "uploads/") == []
        with pytest.raises(openai.BadRequestError) as err:
            client.uploads.complete(up.id, part_ids=[part.id])
        assert "expired" in err.value.message
