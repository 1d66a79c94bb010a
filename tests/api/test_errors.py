"""Errors as the SDK and curl see them: the OpenAI envelope everywhere, 401s, request ids, no 422."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.server import RunningServer


def assert_envelope(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert r.headers["x-request-id"].startswith("req_")
    return body["error"]  # type: ignore[no-any-return]


def test_missing_and_wrong_keys_are_401(server: RunningServer) -> None:
    err = assert_envelope(httpx.get(server.base_url + "/files"), 401)
    assert err["code"] == "invalid_api_key" and "didn't provide an API key" in str(err["message"])
    wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong-key-123456")
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.files.list()
    assert e.value.code == "invalid_api_key" and "sk-wrong-key" not in e.value.message


def test_unknown_route_is_an_envelope_404(server: RunningServer, api_key: str) -> None:
    err = assert_envelope(
        httpx.get(server.base_url + "/xyz", headers={"Authorization": f"Bearer {api_key}"}), 404
    )
    assert err["message"] == "Invalid URL (GET /v1/xyz)"


def test_malformed_json_and_validation_are_400_never_422(server: RunningServer, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    err = assert_envelope(httpx.post(server.base_url + "/uploads", content=b"{nope", headers=headers), 400)
    assert "parse the JSON body" in str(err["message"])
    err = assert_envelope(httpx.post(server.base_url + "/uploads", json={"bytes": 5}, headers=headers), 400)
    assert err["param"] == "filename"
    err = assert_envelope(httpx.get(server.base_url + "/files", params={"limit": 0}, headers=headers), 400)
    assert err["param"] == "limit"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
@pytest.mark.parametrize("path", ["/uploads", "/fine_tuning/jobs", "/chat/completions"])
def test_json_sent_without_its_content_type_says_how_to_send_it(
    server: RunningServer, api_key: str, path: str, content_type: str
) -> None:
    """`curl -d '{...}'` sends form encoding: the answer names the header, not pydantic's internals."""
    body = b'{"model": "tiny-chat", "training_file": "file-x", "messages": [], "filename": "a.jsonl"}'
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": content_type}
    err = assert_envelope(httpx.post(server.base_url + path, content=body, headers=headers), 400)
    assert err["type"] == "invalid_request_error" and err["param"] is None
    header = "must be a JSON object sent with the header `Content-Type: application/json`"
    assert header in str(err["message"])
    assert f"sent as `{content_type}`" in str(err["message"]) and "dictionary" not in str(err["message"])
    # JSON that is not an object keeps the validator's own words.
    headers["Content-Type"] = "application/json"
    err = assert_envelope(httpx.post(server.base_url + path, content=b"[1, 2]", headers=headers), 400)
    assert "Content-Type" not in str(err["message"])


def test_request_id_reaches_the_sdk(client: openai.OpenAI) -> None:
    raw = client.files.with_raw_response.list()
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["openai-version"] == "2020-10-01"
    with pytest.raises(openai.NotFoundError) as e:
        client.files.retrieve("file-doesnotexist")
    assert e.value.request_id and e.value.request_id.startswith("req_")


def test_client_errors_are_not_retried(server: RunningServer, api_key: str) -> None:
    attempts: list[str] = []

    def count(request: httpx.Request) -> None:
        attempts.append(request.headers.get("x-stainless-retry-count", "0"))

    http = httpx.Client(event_hooks={"request": [count]})
    client = openai.OpenAI(base_url=server.base_url, api_key=api_key, http_client=http)
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("a.csv", b"x"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_missing0000")
    assert attempts == ["0", "0"]


def test_health_and_ready(server: RunningServer) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "storage": "ok"}
