"""Jobs whose trainers run in real containers (FTAPI_EXECUTOR=docker) on the engine at DOCKER_HOST.

The trainer image is built from this checkout's Dockerfile once per content (tests/support/
docker_engine.py). Storage is S3 (moto's server on 127.0.0.1): it is the shape of a real deployment
(the trainer container shares nothing with the API but the network) and needs no bind mount owned by
the image's uid. Containers use the host network, so 127.0.0.1 reaches moto and the API.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import openai
import pytest

from tests.conftest import ADMIN_KEY, s3_env
from tests.support.docker_engine import (
    build_trainer_image,
    containers_of,
    engine,
    remove_containers_of,
)
from tests.support.jobs import (
    events_oldest_first,
    finishes_from,
    is_checkpoint,
    lenient,
    pause_when_saved,
    right_answers,
    wait_for_event,
    wait_for_status,
)
from tests.support.moto_server import free_port
from tests.support.postgres import temporary_database
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.s3]
CACHE_VOLUME = "ftapi-test-model-cache"  # tiny-chat is built once into it and shared by the tests


@pytest.fixture(scope="session")
def docker_client() -> Any:
    return engine()


@pytest.fixture(scope="session")
def trainer_image(docker_client: Any) -> str:
    return build_trainer_image(docker_client)


def docker_env(moto_endpoint: str, image: str, **extra: str) -> dict[str, str]:
    return {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_EXECUTOR": "docker",
        "FTAPI_DOCKER__IMAGE": image,
        "FTAPI_DOCKER__NETWORK": "host",
        "FTAPI_DOCKER__CACHE_VOLUME": CACHE_VOLUME,
        "FTAPI_DOCKER__ENV": '{"HF_HUB_OFFLINE": "1"}',
        "FTAPI_CANCEL_GRACE_SECONDS": "20",
        **s3_env(moto_endpoint, "ftapi-" + secrets.token_hex(4)),
        **extra,
    }


@contextmanager
def tracked(docker_client: Any, job_ids: list[str]) -> Iterator[None]:
    """Removes the tests' containers whatever happens; when the test fails, prints their output first."""
    try:
        yield
    except BaseException:
        for job_id in job_ids:
            for container in containers_of(docker_client, job_id):
                output = container.logs(tail=60).decode(errors="replace")
                print(f"--- {container.name} ({container.status}), last lines:\n{output}")
        raise
    finally:
        for job_id in job_ids:
            remove_containers_of(docker_client, job_id)


def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)


@dataclass
class DockerJobs:
    """A running server with the Docker executor, its SDK client, and the jobs a test made."""

    server: RunningServer
    client: openai.OpenAI
    job_ids: list[str]

    def create(self, n_epochs: int, suffix: str | None = None) -> str:
        job_id = create_job(self.client, n_epochs, suffix)
        self.job_ids.append(job_id)
        return job_id


@contextmanager
def docker_jobs(data: Path, env: dict[str, str], docker_client: Any) -> Iterator[DockerJobs]:
    job_ids: list[str] = []
    with run_server(data, env) as srv, tracked(docker_client, job_ids):
        yield DockerJobs(srv, sdk(srv), job_ids)


def create_job(client: openai.OpenAI, n_epochs: int, suffix: str | None = None) -> str:
    fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": n_epochs}}},
        suffix=suffix,
    ).id


def wait_until_no_container(docker_client: Any, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while containers_of(docker_client, job_id):
        assert time.monotonic() < deadline, [c.status for c in containers_of(docker_client, job_id)]
        time.sleep(0.5)


def stored_text(server: RunningServer, key: str) -> str:
    s3 = boto3.client(
        "s3",
        endpoint_url=server.env["FTAPI_S3__ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    body = s3.get_object(Bucket=server.env["FTAPI_S3__BUCKET"], Key=f"ftapi/{key}")["Body"]
    return str(body.read().decode())


def test_lora_job_trains_in_a_container_end_to_end(
    tmp_path: Path, docker_client: Any, trainer_image: str, moto_endpoint: str
) -> None:
    with docker_jobs(tmp_path / "data", docker_env(moto_endpoint, trainer_image), docker_client) as jobs:
        srv, client = jobs.server, jobs.client
        job_id = jobs.create(40, suffix="boxed")
        running = wait_for_status(client, job_id, {"running", "failed"}, 60)
        assert running.status == "running", running.error
        [container] = containers_of(docker_client, job_id)
        assert container.name == f"ftapi-{job_id}-1"
        assert container.labels["ftapi.job_id"] == job_id and container.labels["ftapi.attempt"] == "1"
        assert container.labels["app.kubernetes.io/managed-by"] == "ftapi"
        assert container.attrs["Config"]["User"].startswith("10001")  # the image's non-root user

        done = wait_for_status(client, job_id, {"succeeded", "failed", "cancelled"}, 400)
        assert done.status == "succeeded" and done.fine_tuned_model, done.error
        messages = [e.message for e in events_oldest_first(client, job_id)]
        assert messages[:4] == [
            f"Created fine-tuning job: {job_id}",
            f"Validating training file: {done.training_file}",
            "Files validated, moving job to queued state",
            "Fine-tuning job started",
        ]
        assert messages[-1] == "The job has successfully completed"
        # The ft: model answers held-out prompts through chat (served by the API process).
        assert right_answers(client, done.fine_tuned_model) >= 13
        wait_until_no_container(docker_client, job_id)  # finished containers are removed
        log = stored_text(srv, f"jobs/{_project_of(srv, job_id)}/{job_id}/logs/trainer-attempt-1.log")
        assert log.strip()  # the tail of the container's output is kept with the job
        server_log = srv.log_text()
        assert "docker.container_started" in server_log and "FTAPI_JOB_TOKEN=" not in server_log


def test_local_storage_in_a_private_data_directory_runs_as_its_owner(
    docker_client: Any, trainer_image: str
) -> None:
    """Local storage in a directory only its owner may enter (`mktemp -d`: mode 0700, blobs 0600):
    the image's uid 10001 failed every attempt with PermissionError; the container now runs as the
    directory's owner, with the host's model cache, and the job succeeds."""
    import shutil
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="ftapi-private-"))
    assert data.stat().st_mode & 0o777 == 0o700
    env = docker_env("http://unused", trainer_image, FTAPI_MAX_JOB_ATTEMPTS="1")
    env = {k: v for k, v in env.items() if not k.startswith("FTAPI_S3__")} | {
        "FTAPI_STORAGE_BACKEND": "local"
    }
    try:
        with docker_jobs(data, env, docker_client) as jobs:
            client = jobs.client
            job_id = jobs.create(1)
            running = wait_for_status(client, job_id, {"running", "failed"}, 60)
            assert running.status == "running", running.error
            [container] = containers_of(docker_client, job_id)
            assert container.attrs["Config"]["User"] == f"{data.stat().st_uid}:{data.stat().st_gid}"
            done = wait_for_status(client, job_id, {"succeeded", "failed", "cancelled"}, 300)
            assert done.status == "succeeded" and done.fine_tuned_model, done.error
            assert [client.files.retrieve(f).filename for f in done.result_files] == ["step_metrics.csv"]
            project = _project_of(jobs.server, job_id)
            assert (
                data / "blobs" / "jobs" / project / job_id / "model" / "adapter_model.safetensors"
            ).exists()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _project_of(server: RunningServer, job_id: str) -> str:
    import sqlite3

    with sqlite3.connect(server.data_dir / "ftapi.db") as db:
        row = db.execute("SELECT project_id FROM fine_tuning_jobs WHERE id = ?", (job_id,)).fetchone()
    return str(row[0])


def test_cancel_stops_and_removes_the_container(
    tmp_path: Path, docker_client: Any, trainer_image: str, moto_endpoint: str
) -> None:
    with docker_jobs(tmp_path / "data", docker_env(moto_endpoint, trainer_image), docker_client) as jobs:
        client = jobs.client
        job_id = jobs.create(50)
        wait_for_event(client, job_id, is_checkpoint, timeout=240)
        assert client.fine_tuning.jobs.cancel(job_id).status == "cancelled"
        wait_until_no_container(docker_client, job_id, timeout=60)
        job = client.fine_tuning.jobs.retrieve(job_id)
        assert job.status == "cancelled" and job.fine_tuned_model is None


def test_pause_saves_a_checkpoint_in_the_container_and_resume_starts_the_next_attempt(
    tmp_path: Path, docker_client: Any, trainer_image: str, moto_endpoint: str
) -> None:
    """SIGTERM reaches the trainer as the container's PID 1: it saves a checkpoint and exits before
    the grace runs out; resume runs attempt 2 in a new container, from that checkpoint."""
    with docker_jobs(tmp_path / "data", docker_env(moto_endpoint, trainer_image), docker_client) as jobs:
        client = jobs.client
        job_id = jobs.create(20)  # 200 steps: the pause lands long before the end
        wait_for_event(client, job_id, is_checkpoint, timeout=240)
        step = pause_when_saved(client, job_id)
        wait_until_no_container(docker_client, job_id, timeout=60)
        assert lenient(client).fine_tuning.jobs.retrieve(job_id).status == "paused"
        assert lenient(client).fine_tuning.jobs.resume(job_id).status in ("queued", "running")
        running = wait_for_status(client, job_id, {"running", "failed"}, 60)
        assert running.status == "running", running.error
        assert [c.labels["ftapi.attempt"] for c in containers_of(docker_client, job_id)] == ["2"]
        finishes_from(client, job_id, step, last_step=200)
        wait_until_no_container(docker_client, job_id)


def test_a_missing_image_fails_the_job_at_once(
    tmp_path: Path, docker_client: Any, moto_endpoint: str
) -> None:
    image = "ftapi-trainer:no-such-tag"
    env = docker_env(moto_endpoint, image)
    with run_server(tmp_path / "data", env) as srv:
        client = sdk(srv)
        job_id = create_job(client, 1)
        failed = wait_for_status(client, job_id, {"failed", "succeeded"}, 60)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.code == "job_setup_failed"
        assert f"trainer image {image} not found" in failed.error.message
        assert containers_of(docker_client, job_id) == []


def test_a_tiny_memory_limit_fails_as_out_of_memory(
    tmp_path: Path, docker_client: Any, trainer_image: str, moto_endpoint: str
) -> None:
    env = docker_env(moto_endpoint, trainer_image, FTAPI_DOCKER__MEMORY="64m", FTAPI_MAX_JOB_ATTEMPTS="1")
    with docker_jobs(tmp_path / "data", env, docker_client) as jobs:
        client = jobs.client
        job_id = jobs.create(1)
        failed = wait_for_status(client, job_id, {"failed", "succeeded"}, 180)
        assert failed.status == "failed" and failed.error is not None, failed
        assert failed.error.code == "training_failed"
        assert "out of memory: the trainer exceeded its memory limit of 64 MiB" in failed.error.message
        wait_until_no_container(docker_client, job_id)


def test_a_restarted_worker_adopts_its_container_or_resumes_without_it(
    tmp_path: Path, docker_client: Any, trainer_image: str, moto_endpoint: str
) -> None:
    env = docker_env(
        moto_endpoint, trainer_image, FTAPI_RUN_LEASE_SECONDS="3", FTAPI_DOCKER__KEEP_CONTAINERS="true"
    )
    data = tmp_path / "data"
    port = free_port()  # every restart serves where the trainer reports
    job_ids: list[str] = []
    with tracked(docker_client, job_ids):
        with run_server(data, env, port=port) as first:
            client = sdk(first)
            job_id = create_job(client, 50)
            job_ids.append(job_id)
            wait_for_event(client, job_id, is_checkpoint, timeout=240)
            os.kill(first.pid, signal.SIGKILL)  # the container lives on: the engine owns it
        adopted = "The job's worker stopped; another worker took over its trainer (attempt 1)"
        with run_server(data, env, port=port) as second:
            client = sdk(second)
            wait_for_event(client, job_id, lambda m: m == adopted, timeout=60)
            wait_for_event(client, job_id, is_checkpoint, after=adopted, timeout=120)
            assert [c.labels["ftapi.attempt"] for c in containers_of(docker_client, job_id)] == ["1"]
            os.kill(second.pid, signal.SIGKILL)
        # This time the container goes too: the next worker queues the job again and it resumes.
        remove_containers_of(docker_client, job_id)
        with run_server(data, env, port=port) as third:
            client = sdk(third)
            done = wait_for_status(client, job_id, {"succeeded", "failed"}, 400)
            assert done.status == "succeeded", done.error
            messages = [e.message for e in events_oldest_first(client, job_id)]
            assert messages.count(adopted) == 1
            assert "The job's worker stopped; the job is queued again (attempt 2 of 3)" in messages
            assert any(m.startswith("Fine-tuning job resumed from the checkpoint at step ") for m in messages)
            assert sum(m.startswith("New fine-tuned model created") for m in messages) == 1
            # Kept containers (FTAPI_DOCKER__KEEP_CONTAINERS): attempt 1 was removed above, so one
            # container for attempt 2, and never two for one attempt.
            attempts = [c.labels["ftapi.attempt"] for c in containers_of(docker_client, job_id)]
            assert attempts == ["2"], attempts


def test_a_worker_in_the_trainer_image_starts_trainers_through_the_engine_socket(
    tmp_path: Path, docker_client: Any, trainer_image: str, moto_endpoint: str
) -> None:
    """deploy/compose.yaml's worker: `ftapi worker` in the trainer image, with the engine's socket
    mounted, starts each trainer as a sibling container. API and worker share PostgreSQL and S3.
    Here the socket is root's alone (mode 0600), so the worker container runs as root; compose runs
    it as uid 10001 with the socket's group added (DOCKER_GID)."""
    socket_path = urlparse(os.environ["DOCKER_HOST"]).path
    with temporary_database() as database_url:
        env = docker_env(
            moto_endpoint, trainer_image, FTAPI_DATABASE_URL=database_url, FTAPI_MAX_CONCURRENT_JOBS="0"
        )
        with docker_jobs(tmp_path / "data", env, docker_client) as jobs:
            worker_env = {
                **{k: v for k, v in env.items() if k.startswith(("FTAPI_", "AWS_"))},
                "FTAPI_MAX_CONCURRENT_JOBS": "1",
                "FTAPI_INTERNAL_URL": jobs.server.url,  # where its trainers report
                "FTAPI_DOCKER__URL": "unix:///var/run/docker.sock",
                "HF_HUB_OFFLINE": "1",
            }
            worker = docker_client.containers.run(
                trainer_image,
                ["ftapi", "worker"],
                name="ftapi-test-worker-" + secrets.token_hex(4),
                environment=worker_env,
                network_mode="host",
                volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "rw"}},
                user="0",
                detach=True,
            )
            try:
                job_id = jobs.create(2)  # succeeded: the API has served its model once already
                done = wait_for_status(jobs.client, job_id, {"succeeded", "failed", "cancelled"}, 400)
                worker_log = worker.logs().decode(errors="replace")
                assert done.status == "succeeded" and done.fine_tuned_model, (done.error, worker_log[-3000:])
                assert "docker.container_started" in worker_log and f"ftapi-{job_id}-1" in worker_log
                assert "docker.container_started" not in jobs.server.log_text()  # the API ran none
                wait_until_no_container(docker_client, job_id)
            finally:
                worker.remove(force=True)
