"""Prometheus /metrics: request counts by route template, job gauges read from the database."""

from __future__ import annotations

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_requests_by_route_and_jobs_by_status(
    server: RunningServer, client: openai.OpenAI
) -> None:
    before = scrape(server)
    train, _ = sentiment_sets()
    fid = client.files.create(file=("train.jsonl", to_jsonl(train)), purpose="fine-tune").id
    client.files.retrieve(fid)
    client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid)
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("ftapi_http_requests_total", method="POST", route="/v1/files", status="200") == 1
    # The route's template, never the id itself: label values stay bounded.
    assert grew("ftapi_http_requests_total", method="GET", route="/v1/files/{file_id}", status="200") == 1
    assert not any("file-" in value for (_, labels) in after for _, value in labels)
    assert grew("ftapi_http_request_duration_seconds_count", method="POST", route="/v1/fine_tuning/jobs") == 1
    # This server runs no trainers: the job waits (validating, then queued) and is counted.
    waiting = sum(after[("ftapi_fine_tuning_jobs", (("status", s),))] for s in ("validating_files", "queued"))
    assert waiting >= 1 and after[("ftapi_fine_tuning_queue_depth", ())] >= 0
    assert ("ftapi_trained_tokens_total", ()) in after
    assert after[("ftapi_engine_up", (("engine", "transformers"),))] == 1
