"""api/dispatch/runs.py against a scripted executor: a restarted worker takes over runs the executor
still finds, settles runs that ended unwatched, and keeps jobs as they are while the executor is down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.migrate import upgrade
from api.db.session import create_engine, session_factory
from api.db.tables import FineTuningJobEventRow, FineTuningJobRow, ProjectRow
from api.dispatch.executor import ExecutorUnavailable, RunStatus
from api.dispatch.runs import orphan_grace_seconds, recover_orphans, watch_runs
from api.settings import Settings
from trainer.spec import JobSpec

OLD, NEW = "host:1", "host:2"


class ScriptedExecutor:
    def __init__(self, status: RunStatus | Exception) -> None:
        self.status = status
        self.cancelled: list[str] = []

    def start(self, spec: JobSpec, env: dict[str, str]) -> str:
        raise AssertionError("not started in these tests")

    def poll(self, handle: str) -> RunStatus:
        if isinstance(self.status, Exception):
            raise self.status
        return self.status

    def cancel(self, handle: str, grace_seconds: float) -> None:
        self.cancelled.append(handle)


class MemoryStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put_bytes(self, key: str, data: bytes) -> int:
        self.blobs[key] = data
        return len(data)


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    url = f"sqlite:///{tmp_path / 'ftapi.db'}"
    upgrade(url)
    engine = create_engine(url)
    async with session_factory(engine)() as s:
        s.add(ProjectRow(id="proj_1", name="p", created_at_us=0))
        await s.flush()
        s.add(
            FineTuningJobRow(
                id="ftjob-1",
                project_id="proj_1",
                model="tiny-chat",
                training_file="file-1",
                validation_file=None,
                status="running",
                method="supervised",
                hyperparameters={},
                resolved_hyperparameters=None,
                suffix=None,
                seed=0,
                job_metadata=None,
                integrations=None,
                fine_tuned_model=None,
                error=None,
                trained_tokens=None,
                result_files=[],
                created_at_us=0,
                claimed_by=OLD,
                lease_until=int(time.time()) - 5,  # its worker died
                attempts=1,
                executor_handle="docker:ftapi-ftjob-1-1",
                token_hash="h" * 64,
            )
        )
        await s.commit()
        yield s
    await engine.dispose()


async def job_and_events(session: AsyncSession) -> tuple[FineTuningJobRow, list[str]]:
    from sqlalchemy import select

    session.expire_all()
    job = await session.get(FineTuningJobRow, "ftjob-1")
    assert job is not None
    events = (await session.scalars(select(FineTuningJobEventRow.message))).all()
    return job, list(events)


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]


async def test_a_running_run_is_taken_over_not_started_again(session: AsyncSession, tmp_path: Path) -> None:
    executor = ScriptedExecutor(RunStatus("running"))
    moved = await recover_orphans(session, settings(tmp_path), int(time.time()), executor, NEW)
    assert moved == 1
    job, events = await job_and_events(session)
    assert (job.status, job.claimed_by, job.attempts) == ("running", NEW, 1)
    assert job.executor_handle == "docker:ftapi-ftjob-1-1" and job.token_hash == "h" * 64
    assert job.lease_until and job.lease_until > time.time()
    assert events == ["The job's worker stopped; another worker took over its trainer (attempt 1)"]
    # From now on it is the new worker's run, watched like its own.
    assert await watch_runs(session, settings(tmp_path), executor, NEW) == 1


async def test_an_api_only_replica_does_not_take_runs_over(session: AsyncSession, tmp_path: Path) -> None:
    executor = ScriptedExecutor(RunStatus("running"))
    await recover_orphans(session, settings(tmp_path, max_concurrent_jobs=0), int(time.time()), executor, NEW)
    job, events = await job_and_events(session)
    assert (job.status, job.claimed_by, job.executor_handle) == ("queued", None, None)
    assert events == ["The job's worker stopped; the job is queued again (attempt 2 of 3)"]


async def test_a_run_that_ended_unwatched_is_settled_with_its_output(
    session: AsyncSession, tmp_path: Path
) -> None:
    output = "loading\nTraceback (most recent call last):\nValueError: bad data\n"
    executor = ScriptedExecutor(RunStatus("exited", 1, "ValueError: bad data", output))
    store = MemoryStore()
    await recover_orphans(session, settings(tmp_path), int(time.time()), executor, NEW, store)  # type: ignore[arg-type]
    job, events = await job_and_events(session)
    assert job.status == "queued"
    assert events == [
        "Trainer output (attempt 1, last lines):\nloading\nTraceback (most recent call last):\n"
        "ValueError: bad data",
        "The trainer stopped (exit code 1: ValueError: bad data); the job is queued again (attempt 2 of 3)",
    ]
    assert store.blobs == {"jobs/proj_1/ftjob-1/logs/trainer-attempt-1.log": output.encode()}


async def test_a_lost_run_is_queued_again(session: AsyncSession, tmp_path: Path) -> None:
    executor = ScriptedExecutor(RunStatus("lost", detail="the trainer container is gone"))
    await recover_orphans(session, settings(tmp_path), int(time.time()), executor, NEW)
    job, events = await job_and_events(session)
    assert job.status == "queued"
    assert events == ["The job's worker stopped; the job is queued again (attempt 2 of 3)"]


async def test_nothing_is_decided_while_the_executor_is_down(session: AsyncSession, tmp_path: Path) -> None:
    executor = ScriptedExecutor(ExecutorUnavailable("the container engine does not answer"))
    await recover_orphans(session, settings(tmp_path), int(time.time()), executor, NEW)
    job, events = await job_and_events(session)
    assert (job.status, job.claimed_by, events) == ("running", OLD, [])
    # The run's own worker counts it as active and leaves it alone.
    assert await watch_runs(session, settings(tmp_path), executor, OLD) == 1
    job, events = await job_and_events(session)
    assert (job.status, job.claimed_by, executor.cancelled, events) == ("running", OLD, [], [])


async def set_status(session: AsyncSession, status: str, finished_at: int | None) -> None:
    job = await session.get(FineTuningJobRow, "ftjob-1")
    assert job is not None
    job.status, job.finished_at = status, finished_at
    await session.commit()


async def test_a_trainer_that_finished_its_job_exits_by_itself(session: AsyncSession, tmp_path: Path) -> None:
    """It reported success and is still exiting: stopping it would cut off the output kept with the
    job. Only one that lingers past the grace is stopped; a cancelled job's trainer is at once."""
    executor = ScriptedExecutor(RunStatus("running"))
    now = int(time.time())
    await set_status(session, "succeeded", now)
    assert await watch_runs(session, settings(tmp_path), executor, OLD) == 1
    assert executor.cancelled == []
    await set_status(session, "succeeded", now - 60)  # past the 30 s grace: stuck
    await watch_runs(session, settings(tmp_path), executor, OLD)
    assert executor.cancelled == ["docker:ftapi-ftjob-1-1"]
    executor.cancelled.clear()
    await set_status(session, "cancelled", now)
    await watch_runs(session, settings(tmp_path), executor, OLD)
    assert executor.cancelled == ["docker:ftapi-ftjob-1-1"]


def test_an_orphaned_trainer_is_gone_before_the_dead_workers_lease_runs_out(tmp_path: Path) -> None:
    """Its grace is bounded by the lease: a 30 s cancel grace against a 5 s lease let bench.chaos see
    the orphan still training beside the job's next attempt."""
    assert orphan_grace_seconds(settings(tmp_path, run_lease_seconds=6, cancel_grace_seconds=30)) == 2
    assert orphan_grace_seconds(settings(tmp_path, run_lease_seconds=600, cancel_grace_seconds=30)) == 30
