"""Our raw responses validate against OpenAI's own published schemas.

The spec is shared/reference/openai-openapi.yaml, beside the repository.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.data import chat_jsonl
from tests.support.server import RunningServer

# Beside the repository: /work/shared for /work/main, one level further up for a worktree in /work/wt.
SPEC = next(
    (
        p / "shared" / "reference" / "openai-openapi.yaml"
        for p in Path(__file__).parents[3:5]
        if (p / "shared" / "reference" / "openai-openapi.yaml").exists()
    ),
    Path(__file__).parents[3] / "shared" / "reference" / "openai-openapi.yaml",
)


@cache
def registry() -> Registry:
    spec = yaml.safe_load(SPEC.read_text())
    return Registry().with_resource("openai", Resource.from_contents(spec, default_specification=DRAFT202012))


def assert_matches(instance: Any, schema_name: str) -> None:
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"openai#/components/schemas/{schema_name}"}, registry=registry()
    )
    errors = sorted(validator.iter_errors(instance), key=str)
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.fixture
def http(server: RunningServer, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {api_key}"})


@pytest.mark.skipif(not SPEC.exists(), reason="OpenAI's spec is kept in shared/reference beside the repo")
def test_files_and_uploads_match_openai_schemas(http: httpx.Client) -> None:
    created = http.post(
        "/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", chat_jsonl())}
    ).json()
    assert_matches(created, "OpenAIFile")
    assert_matches(http.get(f"/files/{created['id']}").json(), "OpenAIFile")
    assert_matches(http.get("/files").json(), "ListFilesResponse")
    assert_matches(http.delete(f"/files/{created['id']}").json(), "DeleteFileResponse")
    assert_matches(http.get(f"/files/{created['id']}").json(), "ErrorResponse")

    up = http.post(
        "/uploads", json={"bytes": 3, "filename": "a.txt", "mime_type": "text/plain", "purpose": "user_data"}
    )
    assert_matches(up.json(), "Upload")
    part = http.post(f"/uploads/{up.json()['id']}/parts", files={"data": ("blob", b"abc")}).json()
    assert_matches(part, "UploadPart")
    done = http.post(f"/uploads/{up.json()['id']}/complete", json={"part_ids": [part["id"]]}).json()
    assert_matches(done, "Upload")
    assert_matches(done["file"], "OpenAIFile")
    assert_matches(http.post("/uploads", json={}).json(), "ErrorResponse")
