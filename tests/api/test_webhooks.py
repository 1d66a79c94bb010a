"""Webhooks end to end: endpoints configured through the SDK (`client.webhooks`), signed
`fine_tuning.job.*` deliveries to a real receiver process that the SDK's `webhooks.unwrap`
verifies, retries after a 500, the delivery log, and deliveries that continue after a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import ADMIN_KEY, TRAINING_CATALOGUE, combo_server, new_project
from tests.support.data import chat_jsonl, dpo_jsonl
from tests.support.jobs import wait_for_status
from tests.support.moto_server import free_port
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server
from tests.support.webhook_receiver import received, run_receiver, wait_for_received

JOB_EVENTS = ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
FAST_RETRIES = {"FTAPI_WEBHOOK_RETRY_SECONDS": "[1, 1, 1]", "FTAPI_WEBHOOK_POLL_SECONDS": "0.2"}


@pytest.fixture(scope="module", params=["local-sqlite", "s3-postgres"])
def hook_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    extra = {"FTAPI_MAX_CONCURRENT_JOBS": "0", **FAST_RETRIES}
    with combo_server(request, tmp_path_factory, request.param, extra, label="hooks-" + request.param) as srv:
        yield srv


def sdk(server: RunningServer) -> openai.OpenAI:
    key = new_project(server).key
    return openai.OpenAI(base_url=server.base_url, api_key=key, _strict_response_validation=True)


def deliveries(client: openai.OpenAI, endpoint_id: str) -> list[dict[str, Any]]:
    """ftapi's delivery log (not an SDK resource: read through the client's generic GET)."""
    body = client.get(f"/webhook_endpoints/{endpoint_id}/deliveries", cast_to=object)
    assert isinstance(body, dict) and body["object"] == "list"
    data: list[dict[str, Any]] = body["data"]
    return data


def unwrap_all(client: openai.OpenAI, records: list[dict[str, Any]], secret: str) -> list[Any]:
    """Every recorded request verified and parsed by the SDK, as a receiver would."""
    return [client.webhooks.unwrap(r["body"], r["headers"], secret=secret) for r in records]


def test_webhook_endpoints_through_the_sdk(hook_server: RunningServer) -> None:
    client = sdk(hook_server)
    created = client.webhooks.create(name="ci", url="https://hooks.example/ft", event_types=JOB_EVENTS)
    assert created.signing_secret.startswith("whsec_") and created.object == "webhook_endpoint"
    assert created.signing_secret_hint and created.signing_secret.endswith(created.signing_secret_hint[-4:])
    got = client.webhooks.retrieve(created.id)
    assert (got.url, got.event_types, got.name) == ("https://hooks.example/ft", JOB_EVENTS, "ci")
    assert not hasattr(got, "signing_secret")
    second = client.webhooks.create(name="two", url="http://127.0.0.1:9/x", event_types=JOB_EVENTS[:1])
    page = client.webhooks.list(limit=1)
    assert [e.id for e in page.data] == [second.id] and page.has_more
    assert [e.id for e in client.webhooks.list()] == [second.id, created.id]

    unchanged = client.webhooks.update(created.id, name="ci")
    assert unchanged.updated_at == got.updated_at
    updated = client.webhooks.update(created.id, url="https://hooks.example/v2", event_types=JOB_EVENTS[1:])
    assert (updated.url, updated.event_types) == ("https://hooks.example/v2", JOB_EVENTS[1:])
    rotated = client.webhooks.rotate_secret(created.id)
    assert rotated.signing_secret.startswith("whsec_") and rotated.signing_secret != created.signing_secret

    # Another project sees none of them.
    other = sdk(hook_server)
    assert list(other.webhooks.list()) == []
    with pytest.raises(openai.NotFoundError):
        other.webhooks.retrieve(created.id)

    deleted = client.webhooks.delete(created.id)
    assert deleted.deleted and deleted.id == created.id and deleted.object == "webhook_endpoint.deleted"
    with pytest.raises(openai.NotFoundError):
        client.webhooks.retrieve(created.id)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"event_types": ["batch.completed"]}, "event_types"),
        ({"event_types": []}, "event_types"),
        ({"url": "ftp://hooks.example/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_webhook_endpoints_are_refused(
    hook_server: RunningServer, fields: dict[str, Any], param: str
) -> None:
    client = sdk(hook_server)
    body = {"name": "x", "url": "https://hooks.example/ft", "event_types": JOB_EVENTS, **fields}
    with pytest.raises(openai.BadRequestError) as err:
        client.webhooks.create(**body)
    assert err.value.param == param
    assert list(client.webhooks.list()) == []


def test_cancelled_and_failed_jobs_are_delivered_signed_and_retried(
    hook_server: RunningServer, tmp_path: Path
) -> None:
    client = sdk(hook_server)
    log = tmp_path / "received.jsonl"
    with run_receiver(log, fail_first=1) as url:
        endpoint = client.webhooks.create(name="r", url=url + "/hook", event_types=JOB_EVENTS)
        tid = client.files.create(file=("t.jsonl", chat_jsonl(12)), purpose="fine-tune").id
        cancelled = client.fine_tuning.jobs.create(model="tiny-chat", training_file=tid)
        client.fine_tuning.jobs.cancel(cancelled.id)
        bad = client.files.create(file=("d.jsonl", dpo_jsonl(12)), purpose="fine-tune").id
        failed = client.fine_tuning.jobs.create(model="tiny-chat", training_file=bad)
        assert wait_for_status(client, failed.id, {"failed"}).status == "failed"
        records = wait_for_received(log, 2)
        assert client.webhooks.test(endpoint.id, event_type="fine_tuning.job.succeeded").status_code == 500

    events = unwrap_all(client, records, endpoint.signing_secret)  # raises on any bad signature
    by_type = {e.type: e for e in events}
    assert by_type["fine_tuning.job.cancelled"].data.id == cancelled.id
    assert by_type["fine_tuning.job.failed"].data.id == failed.id
    for e in events:
        assert e.object == "event" and e.id.startswith("evt_") and abs(e.created_at - time.time()) < 300
    # Each delivery was answered 500 once, then retried with the same webhook-id and taken.
    for msg_id in {r["headers"]["webhook-id"] for r in records}:
        statuses = [r["status"] for r in records if r["headers"]["webhook-id"] == msg_id]
        assert statuses == [500, 200]
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(records[0]["body"], records[0]["headers"], secret="whsec_" + "A" * 44)

    log_rows = {d["event_type"]: d for d in deliveries(client, endpoint.id)}
    for kind in ("fine_tuning.job.cancelled", "fine_tuning.job.failed"):
        row = log_rows[kind]
        assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 2, 200)
        assert [a["status_code"] for a in row["log"]] == [500, 200]
    assert log_rows["fine_tuning.job.succeeded"]["status"] == "failed"  # the test send: never retried


def test_an_endpoint_gets_only_its_event_types(hook_server: RunningServer, tmp_path: Path) -> None:
    client = sdk(hook_server)
    log = tmp_path / "received.jsonl"
    with run_receiver(log) as url:
        endpoint = client.webhooks.create(name="r", url=url, event_types=["fine_tuning.job.failed"])
        tid = client.files.create(file=("t.jsonl", chat_jsonl(12)), purpose="fine-tune").id
        client.fine_tuning.jobs.cancel(
            client.fine_tuning.jobs.create(model="tiny-chat", training_file=tid).id
        )
        bad = client.files.create(file=("d.jsonl", dpo_jsonl(12)), purpose="fine-tune").id
        failed = client.fine_tuning.jobs.create(model="tiny-chat", training_file=bad)
        records = wait_for_received(log, 1)
        time.sleep(1.5)  # a cancelled event, were one queued, would have been sent by now
    assert [e.type for e in unwrap_all(client, received(log), endpoint.signing_secret)] == [
        "fine_tuning.job.failed"
    ]
    assert json.loads(records[0]["body"])["data"] == {"id": failed.id}


def test_deliveries_continue_after_a_restart(tmp_path: Path) -> None:
    """The receiver is down at first; the server is stopped with the delivery pending and
    started again: the new process sends it on its schedule."""
    env = {"FTAPI_API_KEY": ADMIN_KEY, "FTAPI_MAX_CONCURRENT_JOBS": "0", **FAST_RETRIES}
    env["FTAPI_WEBHOOK_RETRY_SECONDS"] = "[4, 4, 4]"
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "received.jsonl"
    with run_server(data_dir, env) as srv:
        client = sdk(srv)
        endpoint = client.webhooks.create(
            name="r", url=f"http://127.0.0.1:{port}/hook", event_types=JOB_EVENTS
        )
        tid = client.files.create(file=("t.jsonl", chat_jsonl(12)), purpose="fine-tune").id
        job = client.fine_tuning.jobs.cancel(
            client.fine_tuning.jobs.create(model="tiny-chat", training_file=tid).id
        )
        deadline = time.monotonic() + 30
        while not (first := deliveries(client, endpoint.id)) or first[0]["attempts"] == 0:
            assert time.monotonic() < deadline, "no attempt was made"
            time.sleep(0.2)
        assert first[0]["status"] == "pending" and first[0]["last_status_code"] is None
        assert first[0]["last_error"]  # nothing listens on that port yet
    with run_receiver(log, port=port), run_server(data_dir, env) as srv:
        records = wait_for_received(log, 1)
        restarted = openai.OpenAI(
            base_url=srv.base_url, api_key=client.api_key, _strict_response_validation=True
        )
        event = restarted.webhooks.unwrap(
            records[0]["body"], records[0]["headers"], secret=endpoint.signing_secret
        )
        assert event.type == "fine_tuning.job.cancelled" and event.data.id == job.id
        deadline = time.monotonic() + 30
        while (row := deliveries(restarted, endpoint.id)[0])["status"] != "delivered":
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
        assert row["attempts"] == 2 and [a["status_code"] for a in row["log"]] == [None, 200]


@pytest.fixture(scope="module")
def training_hook_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    models = tmp_path_factory.mktemp("catalogue") / "models.json"
    models.write_text(json.dumps(TRAINING_CATALOGUE))
    extra = {"FTAPI_MAX_CONCURRENT_JOBS": "1", "FTAPI_MODELS_FILE": str(models), **FAST_RETRIES}
    with combo_server(request, tmp_path_factory, "local-sqlite", extra, label="hooks-train") as srv:
        yield srv


@pytest.mark.slow
def test_a_succeeded_job_is_delivered(training_hook_server: RunningServer, tmp_path: Path) -> None:
    client = sdk(training_hook_server)
    log = tmp_path / "received.jsonl"
    with run_receiver(log) as url:
        endpoint = client.webhooks.create(name="r", url=url, event_types=JOB_EVENTS)
        tid = client.files.create(file=("t.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="tiny-chat",
            training_file=tid,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
        )
        done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=600)
        assert done.status == "succeeded", done.error
        records = wait_for_received(log, 1)
    [event] = unwrap_all(client, records, endpoint.signing_secret)
    assert event.type == "fine_tuning.job.succeeded" and event.data.id == job.id
    assert event.created_at >= (done.finished_at or 0) - 1
