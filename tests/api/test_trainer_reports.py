"""Trainer reports racing cancels: nothing is written to a job after it reached a final state.

Many jobs are made `running` with a known trainer token (what a worker does when it starts a run),
then each gets a burst of concurrent event and checkpoint reports over raw HTTP with that token and,
in the middle of the burst, a cancel through the SDK. Every report is either recorded before the
cancel or refused; the cancel is each job's last event. On SQLite and PostgreSQL, real servers.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, combo_server, database_url
from tests.support.data import chat_jsonl
from tests.support.jobs import events_oldest_first, wait_for_status
from tests.support.server import RunningServer

JOBS = 12
REPORTS = 24  # per job, half events and half checkpoints


@pytest.fixture(scope="module", params=["local-sqlite", "local-postgres"])
def api_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    if request.param.endswith("postgres"):
        request.applymarker(pytest.mark.postgres)
    with combo_server(request, tmp_path_factory, request.param, {"FTAPI_MAX_CONCURRENT_JOBS": "0"}) as srv:
        yield srv


def start_as_worker(server: RunningServer, job_ids: list[str]) -> tuple[dict[str, str], str]:
    """Each job `running` under a fresh trainer token, as a worker's start_run leaves it; the tokens
    and the jobs' project id."""
    from sqlalchemy import select, update

    from api.db.session import create_engine, session_factory
    from api.db.tables import FineTuningJobRow
    from api.ids import hash_api_key

    tokens = {job_id: secrets.token_urlsafe(32) for job_id in job_ids}

    async def run() -> str:
        engine = create_engine(database_url(server))
        try:
            async with session_factory(engine)() as session:
                project_id = await session.scalar(
                    select(FineTuningJobRow.project_id).where(FineTuningJobRow.id == job_ids[0])
                )
                for job_id, token in tokens.items():
                    await session.execute(
                        update(FineTuningJobRow)
                        .where(FineTuningJobRow.id == job_id, FineTuningJobRow.status == "queued")
                        .values(
                            status="running",
                            token_hash=hash_api_key(token),
                            claimed_by="test-worker",
                            lease_until=int(time.time()) + 3600,
                            attempts=1,
                        )
                    )
                await session.commit()
                assert project_id is not None
                return project_id
        finally:
            await engine.dispose()

    return tokens, asyncio.run(run())


async def race(
    server: RunningServer, project_id: str, job_id: str, token: str, rng: random.Random
) -> tuple[list[tuple[str, int, str]], int]:
    """A burst of reports with a cancel among them; the (message, status, error) of each report and
    the cancel's status code."""
    reports: list[tuple[str, dict[str, object]]] = []
    for i in range(REPORTS):
        if i % 2:
            step = i + 1
            prefix = f"jobs/{project_id}/{job_id}/checkpoints/step-{step}/"
            reports.append((f"Checkpoint created at step {step} ", {"step": step, "storage_prefix": prefix}))
        else:
            reports.append((f"report {i}", {"message": f"report {i}"}))
    internal = f"{server.url}/internal/v1/fine_tuning/jobs/{job_id}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=60) as http:

        async def report(delay: float, message: str, body: dict[str, object]) -> tuple[str, int, str]:
            await asyncio.sleep(delay)
            path = "/checkpoints" if "step" in body else "/events"
            r = await http.post(internal + path, json=body, headers=headers)
            return message, r.status_code, r.text if r.status_code != 200 else ""

        async def cancel(delay: float) -> int:
            await asyncio.sleep(delay)
            r = await http.post(
                f"{server.base_url}/fine_tuning/jobs/{job_id}/cancel",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            return r.status_code

        spread = 0.4
        results = await asyncio.gather(
            cancel(spread * rng.uniform(0.3, 0.7)),
            *(report(spread * rng.random(), m, b) for m, b in reports),
        )
    cancelled, *answers = results
    return answers, cancelled  # type: ignore[return-value]


def test_reports_racing_a_cancel_are_recorded_before_it_or_refused(api_server: RunningServer) -> None:
    client = openai.OpenAI(base_url=api_server.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
    fid = client.files.create(file=("train.jsonl", chat_jsonl(12)), purpose="fine-tune").id
    jobs = [client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid) for _ in range(JOBS)]
    for job in jobs:
        assert wait_for_status(client, job.id, {"queued", "failed"}, 60).status == "queued"
    tokens, project_id = start_as_worker(api_server, [j.id for j in jobs])
    rng = random.Random(17)

    async def all_races() -> list[tuple[list[tuple[str, int, str]], int]]:
        return await asyncio.gather(
            *(race(api_server, project_id, j.id, tokens[j.id], random.Random(rng.random())) for j in jobs)
        )

    outcomes = asyncio.run(all_races())
    refused_total = 0
    for job, (answers, cancelled) in zip(jobs, outcomes, strict=True):
        assert cancelled == 200, cancelled
        assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
        messages = [e.message for e in events_oldest_first(client, job.id)]
        cancel_at = messages.index("Fine-tuning job cancelled")
        assert cancel_at == len(messages) - 1, messages[cancel_at:]
        for message, status, error in answers:
            assert status in (200, 400), (status, error)  # never a server error
            recorded = any(m.startswith(message) if message.endswith(" ") else m == message for m in messages)
            if status == 200:
                assert recorded, (message, messages)
            else:
                assert f"Job {job.id} is cancelled." in error, error
                assert not recorded, (message, messages)
                refused_total += 1
        accepted = [m for m, s, _ in answers if s == 200 and m.startswith("report ")]
        assert sum(m.startswith("report ") for m in messages) == len(accepted)
    # The cancel fell inside each burst: some reports came after it (and were refused).
    assert refused_total > 0


def test_reports_after_a_pause_are_recorded_and_answered_with_stop(api_server: RunningServer) -> None:
    """The paused trainer's checkpoint is the one the resumed attempt starts from: recorded while the
    job is paused or already resumed (queued), and answered with `stop`, so the trainer saves no
    newer one after it (it would otherwise train on until the worker's SIGTERM arrived)."""
    client = openai.OpenAI(base_url=api_server.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
    fid = client.files.create(file=("train.jsonl", chat_jsonl(12)), purpose="fine-tune").id
    job_id = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid).id
    assert wait_for_status(client, job_id, {"queued", "failed"}, 60).status == "queued"
    tokens, project_id = start_as_worker(api_server, [job_id])
    internal = f"{api_server.url}/internal/v1/fine_tuning/jobs/{job_id}"
    public = f"{api_server.base_url}/fine_tuning/jobs/{job_id}"
    trainer = {"Authorization": f"Bearer {tokens[job_id]}"}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def checkpoint(step: int) -> httpx.Response:
        prefix = f"jobs/{project_id}/{job_id}/checkpoints/step-{step}/"
        return httpx.post(
            internal + "/checkpoints", json={"step": step, "storage_prefix": prefix}, headers=trainer
        )

    def event(message: str) -> httpx.Response:
        return httpx.post(internal + "/events", json={"message": message}, headers=trainer)

    assert (checkpoint(10).json(), event("Step 11").json()) == ({"stop": False}, {"stop": False})
    assert httpx.post(public + "/pause", headers=admin).json()["status"] == "paused"
    assert (checkpoint(20).json(), event("Step 21").json()) == ({"stop": True}, {"stop": True})
    assert httpx.post(public + "/resume", headers=admin).json()["status"] == "queued"
    assert checkpoint(21).json() == {"stop": True}
    steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id)]
    assert steps == [21, 20, 10]
