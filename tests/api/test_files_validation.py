"""ftapi's validation-report extension of the Files API (/v1/files/{id}/validation and
/v1/files/validation) and the `served_by` field of models, against a real server."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import new_project
from tests.support.data import chat_jsonl
from tests.support.server import RunningServer


@pytest.fixture
def http(server: RunningServer, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {api_key}"})


def bad_file() -> bytes:
    good = chat_jsonl(4).splitlines()
    no_assistant = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "x"}]}
    )
    bad_role = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}
    )
    lines = [good[0], no_assistant.encode(), b"{not json", bad_role.encode(), good[1], good[1]]
    return b"\n".join(lines) + b"\n"


def test_report_of_a_stored_file_has_the_data_quality_summary(http: httpx.Client) -> None:
    body = chat_jsonl(12) + chat_jsonl(1)  # the last example repeats the first
    fid = http.post("/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", body)}).json()["id"]
    report = http.get(f"/files/{fid}/validation", params={"model": "tiny-chat"}).json()
    assert report["object"] == "file.validation_report"
    assert (report["file_id"], report["filename"], report["ok"]) == (fid, "t.jsonl", True)
    assert report["problems"] == [] and report["problem_counts"] == {}
    stats = report["stats"]
    assert (stats["n_examples"], stats["format"], stats["n_duplicates"]) == (13, "chat", 1)
    assert stats["tokens_counted"] is False and 0 < stats["min_tokens"] <= stats["max_tokens"]
    assert (stats["max_tokens_limit"], stats["n_over_limit"]) == (512, 0)


def test_report_of_refused_bytes_lists_every_problem_by_line_and_stores_nothing(http: httpx.Client) -> None:
    refused = http.post("/files", data={"purpose": "fine-tune"}, files={"file": ("bad.jsonl", bad_file())})
    assert refused.status_code == 400 and refused.json()["error"]["message"].startswith("Line 2, example 2")
    before = http.get("/files").json()["data"]
    report = http.post("/files/validation", files={"file": ("bad.jsonl", bad_file())}).json()
    assert (report["file_id"], report["filename"], report["ok"]) == (None, "bad.jsonl", False)
    lines = [p["line"] for p in report["problems"]]
    assert lines == sorted(lines) and {2, 3, 4} <= set(lines)
    role = next(p for p in report["problems"] if p["line"] == 4)
    assert (role["example"], role["message_index"]) == (4, 2)
    assert sum(report["problem_counts"].values()) == len(report["problems"])
    assert report["stats"]["n_duplicates"] == 1
    assert http.get("/files").json()["data"] == before


@pytest.mark.parametrize(
    ("path", "kwargs", "param"),
    [
        ("/files/validation", {"params": {"model": "no-such-model"}}, "model"),
        ("/files/validation", {"params": {"method": "ppo"}}, "method"),
        ("/files/validation", {"data": {"purpose": "fine-tune"}}, "file"),
    ],
)
def test_bad_report_requests_are_400_with_their_param(
    http: httpx.Client, path: str, kwargs: dict[str, object], param: str
) -> None:
    files = {"file": ("t.jsonl", chat_jsonl())} if "data" not in kwargs else {"other": ("x", b"1")}
    r = http.post(path, files=files, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_report_is_for_fine_tune_files_of_the_own_project(server: RunningServer, http: httpx.Client) -> None:
    other = http.post("/files", data={"purpose": "user_data"}, files={"file": ("a.txt", b"hello")}).json()
    r = http.get(f"/files/{other['id']}/validation")
    assert r.status_code == 400 and r.json()["error"]["param"] == "file_id"
    fid = http.post(
        "/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", chat_jsonl())}
    ).json()["id"]
    stranger = new_project(server).key
    r = http.get(f"/files/{fid}/validation", headers={"Authorization": f"Bearer {stranger}"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "id"


def test_models_say_which_engine_serves_them(http: httpx.Client) -> None:
    models = http.get("/models").json()["data"]
    assert {m["id"]: m["served_by"] for m in models}["tiny-chat"] == "transformers"
    assert http.get("/models/tiny-chat").json()["served_by"] == "transformers"
