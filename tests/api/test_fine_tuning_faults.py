"""Faults lose nothing: a killed server's job is queued again and completes; a separate worker runs jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.jobs import is_checkpoint, wait_for_event, wait_for_status
from tests.support.moto_server import stop
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server

pytestmark = pytest.mark.slow
# Long enough to be killed after its first checkpoint (epoch 1) and resume from it; the rest of
# the run only has to finish (40 epochs here cost minutes of CI for nothing).
SFT = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}}


def trainer_pid(job_id: str) -> int:
    """The trainer process of a job, found by its spec path (`runs/<job id>/spec.json`)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trainer" in cmdline and any(f"{job_id}/spec.json".encode() in a for a in cmdline):
            return int(proc.name)
    raise AssertionError(f"no trainer runs for {job_id}")


def test_a_killed_trainer_resumes_and_the_job_fails_after_its_attempts(tmp_path: Path) -> None:
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_MAX_JOB_ATTEMPTS": "2",
    }
    with run_server(tmp_path / "data", env) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="tiny-chat",
            training_file=fid,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}},
        )
        wait_for_event(client, job.id, is_checkpoint)
        os.kill(trainer_pid(job.id), signal.SIGKILL)
        requeued = "The trainer stopped (exit code -9); the job is queued again (attempt 2 of 2)"
        wait_for_event(client, job.id, is_checkpoint, after=requeued)
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert any(m.startswith("Fine-tuning job resumed from the checkpoint at step ") for m in messages)

        os.kill(trainer_pid(job.id), signal.SIGKILL)
        assert wait_for_status(client, job.id, {"failed", "succeeded"}, 60).status == "failed"
        failed = client.fine_tuning.jobs.retrieve(job.id)
        assert failed.error and failed.error.code == "training_failed"
        assert failed.error.message == (
            "The trainer stopped (exit code -9); the job failed after 2 attempts. "
            "See the worker's trainer log."
        )
        assert client.fine_tuning.jobs.list_events(job.id, limit=1).data[0].message == failed.error.message


def test_job_survives_a_killed_server(tmp_path: Path) -> None:
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_RUN_LEASE_SECONDS": "3",
    }
    data = tmp_path / "data"
    with run_server(data, env) as first:
        client = openai.OpenAI(base_url=first.base_url, api_key=ADMIN_KEY)
        fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid, method=SFT)  # type: ignore[arg-type]
        assert wait_for_status(client, job.id, {"running"}, 60).status == "running"
        wait_for_event(client, job.id, is_checkpoint)
        os.kill(first.pid, signal.SIGKILL)  # no shutdown at all: its trainer dies with it
        time.sleep(1)
    with run_server(data, env) as second:
        client = openai.OpenAI(base_url=second.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        assert wait_for_status(client, job.id, {"succeeded", "failed"}, 300).status == "succeeded"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert "The job's worker stopped; the job is queued again (attempt 2 of 3)" in messages
        assert any(m.startswith("Fine-tuning job resumed from the checkpoint at step ") for m in messages)
        assert sum(m.startswith("New fine-tuned model created") for m in messages) == 1


def start_worker(
    api: RunningServer, data_dir: Path | None = None, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`ftapi worker` beside `api`, on its database, running one trainer at a time."""
    command = [sys.executable, "-m", "api.cli", "worker"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    env = {
        **os.environ,
        **api.env,
        "FTAPI_MAX_CONCURRENT_JOBS": "1",
        "FTAPI_INTERNAL_URL": api.url,
        **(extra or {}),
    }
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_separate_worker_runs_the_jobs(tmp_path: Path) -> None:
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_MAX_CONCURRENT_JOBS": "0",
    }
    data = tmp_path / "data"
    with run_server(data, env) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="tiny-chat",
            training_file=fid,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        )
        assert wait_for_status(client, job.id, {"queued"}, 30).status == "queued"
        time.sleep(1.5)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"  # the API replica runs nothing
        worker = start_worker(api)
        try:
            assert wait_for_status(client, job.id, {"succeeded", "failed"}, 240).status == "succeeded"
        finally:
            stop(worker)


@pytest.mark.postgres
def test_two_workers_on_postgres_never_run_a_job_twice(tmp_path: Path) -> None:
    from tests.support.postgres import temporary_database

    with temporary_database() as url:
        env = {
            "FTAPI_API_KEY": ADMIN_KEY,
            "FTAPI_DATABASE_URL": url,
            "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.1",
            "FTAPI_MAX_CONCURRENT_JOBS": "0",
        }
        with run_server(tmp_path / "api", env) as api:
            client = openai.OpenAI(base_url=api.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
            fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
            method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}
            jobs = [
                client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid, method=method)
                for _ in range(4)
            ]  # type: ignore[arg-type]
            # Workers share the API's storage (at scale: S3); their run dirs stay their own.
            blobs = {"FTAPI_LOCAL_STORAGE_ROOT": str(api.data_dir / "blobs")}
            workers = [start_worker(api, tmp_path / f"worker{i}", blobs) for i in range(2)]
            try:
                for job in jobs:
                    status = wait_for_status(client, job.id, {"succeeded", "failed"}, 300).status
                    assert status == "succeeded", client.fine_tuning.jobs.retrieve(job.id).error
            finally:
                for w in workers:
                    stop(w)
            for job in jobs:
                messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
                assert messages.count("Fine-tuning job started") == 1
                assert messages.count("Files validated, moving job to queued state") == 1
                assert sum(m.startswith("New fine-tuned model created") for m in messages) == 1
            # Both workers took part: each has run directories of its own.
            ran = [
                sorted(p.name for p in (tmp_path / f"worker{i}" / "runs").glob("ftjob-*")) for i in range(2)
            ]
            assert all(ran) and not set(ran[0]) & set(ran[1]), ran


@pytest.mark.postgres
def test_replicas_and_workers_agree_under_concurrent_create_and_cancel(tmp_path: Path) -> None:
    """Two API replicas and two workers on one PostgreSQL: creates (some retried on the other
    replica with the same Idempotency-Key) and cancels race; every job ends in one consistent state."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.postgres import temporary_database

    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}
    with temporary_database() as url:
        env = {
            "FTAPI_API_KEY": ADMIN_KEY,
            "FTAPI_DATABASE_URL": url,
            "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.1",
            "FTAPI_MAX_CONCURRENT_JOBS": "0",
            "FTAPI_LOCAL_STORAGE_ROOT": str(tmp_path / "blobs"),  # at scale: one S3 bucket
        }
        with run_server(tmp_path / "api1", env) as one, run_server(tmp_path / "api2", env) as two:
            clients = [
                openai.OpenAI(base_url=s.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
                for s in (one, two)
            ]
            fid = (
                clients[0]
                .files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune")
                .id
            )
            workers = [start_worker(one, tmp_path / f"worker{i}") for i in range(2)]

            def create(i: int) -> str:
                # Every create is sent to both replicas at once with one key: one job must come of it.
                key = {"Idempotency-Key": f"create-{i}"}
                with ThreadPoolExecutor(2) as pool:
                    ids = list(
                        pool.map(
                            lambda c: (
                                c.fine_tuning.jobs.create(
                                    model="tiny-chat",
                                    training_file=fid,
                                    method=method,
                                    extra_headers=key,  # type: ignore[arg-type]
                                ).id
                            ),
                            clients,
                        )
                    )
                assert ids[0] == ids[1]
                if i % 2:  # cancel every other job through the other replica, at whatever stage it is
                    time.sleep(0.3 * i)
                    clients[(i + 1) % 2].fine_tuning.jobs.cancel(ids[0])
                return ids[0]

            try:
                with ThreadPoolExecutor(6) as pool:
                    job_ids = list(pool.map(create, range(6)))
                final = {
                    job_id: wait_for_status(clients[0], job_id, {"succeeded", "failed", "cancelled"}, 300)
                    for job_id in job_ids
                }
            finally:
                for w in workers:
                    stop(w)
            assert len(set(job_ids)) == 6 and len(clients[1].fine_tuning.jobs.list(limit=100).data) == 6
            for i, job_id in enumerate(job_ids):
                job = final[job_id]
                assert job.status == ("cancelled" if i % 2 else "succeeded"), (i, job.status, job.error)
                # Both replicas tell the same story, and it does not change after the end.
                assert clients[1].fine_tuning.jobs.retrieve(job_id).status == job.status
                messages = [e.message for e in clients[1].fine_tuning.jobs.list_events(job_id, limit=100)]
                assert messages.count("Fine-tuning job started") <= 1
                assert (job.fine_tuned_model is not None) == (job.status == "succeeded")
                assert sum(m.startswith("New fine-tuned model created") for m in messages) == (
                    job.status == "succeeded"
                )
            time.sleep(1)
            assert [clients[0].fine_tuning.jobs.retrieve(j).status for j in job_ids] == [
                final[j].status for j in job_ids
            ]
