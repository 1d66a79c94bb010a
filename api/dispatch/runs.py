"""Queued → running → (trainer reports) succeeded, or failed/cancelled: starting and watching runs."""

from __future__ import annotations

import asyncio
import secrets
import time

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.catalogue import Catalogue
from api.db.tables import FileRow, FineTuningJobRow
from api.dispatch.executor import Executor, ExecutorUnavailable, RunNotStarted, RunStatus
from api.dispatch.factory import trainer_processes
from api.fine_tuning.repository import add_event, fail_job, newest_checkpoint, take_over, transition
from api.fine_tuning.results import job_prefix
from api.ids import hash_api_key
from api.integrations import integration_env, trainer_integrations
from api.models.resolver import base_model_id
from api.settings import Settings
from storage import BlobStore
from storage.config import LocalStoreConfig, S3StoreConfig
from trainer.spec import BaseModelRef, CheckpointRef, Hyperparameters, JobSpec

log = structlog.get_logger()
OUTPUT_EVENT_LINES = 20  # of a failed run's output, in the job's events (the whole tail is in storage)


async def build_spec(
    session: AsyncSession, settings: Settings, catalogue: Catalogue, job: FineTuningJobRow
) -> JobSpec:
    entry = catalogue.get(base_model_id(job))
    if entry is None:
        raise LookupError(f"model {base_model_id(job)} left the catalogue")
    hp = job.resolved_hyperparameters or {}
    train = await session.get(FileRow, job.training_file)
    valid = await session.get(FileRow, job.validation_file) if job.validation_file else None
    if train is None:
        raise LookupError("the training file was deleted")
    checkpoint = await newest_checkpoint(session, job.id)
    return JobSpec(
        job_id=job.id,
        attempt=job.attempts + 1,
        base_model=BaseModelRef(id=entry.id, source=entry.source, max_length=entry.max_length),
        method=job.method,  # type: ignore[arg-type]
        mode=entry.mode,
        hyperparameters=Hyperparameters(
            n_epochs=int(hp["n_epochs"]),  # type: ignore[call-overload]
            batch_size=int(hp["batch_size"]),  # type: ignore[call-overload]
            learning_rate=entry.base_learning_rate * float(hp["learning_rate_multiplier"]),  # type: ignore[arg-type]
            beta=float(hp["beta"]) if "beta" in hp else None,  # type: ignore[arg-type]
        ),
        lora=entry.lora,
        training=entry.training,
        seed=job.seed,
        storage=trainer_storage(settings),
        training_file_key=train.storage_key,
        validation_file_key=valid.storage_key if valid else None,
        output_prefix=job_prefix(job.project_id, job.id),
        cache_dir=str((settings.data_dir / "models").resolve()),
        logging_steps=10,
        report_url=settings.resolved_internal_url,
        init_weights_prefix=job.init_weights_prefix,
        resume_from=CheckpointRef(step=checkpoint.step_number, storage_prefix=checkpoint.storage_prefix)
        if checkpoint
        else None,
        integrations=trainer_integrations(job.integrations, settings.wandb, settings.mlflow),
        processes=trainer_processes(settings),
        fsdp=entry.fsdp,
        stop_grace_seconds=orphan_grace_seconds(settings),
    )


def orphan_grace_seconds(settings: Settings) -> float:
    """How long a local trainer whose worker died may take to stop (trainer/stop.py forces it).

    Nobody watches it any more: the dead worker's lease runs out at the earliest a lease minus one
    renewal round after its death, and then another worker starts the job's next attempt. The orphan
    must be gone before that, or two trainers of one job would run at once (bench.chaos saw it with
    the cancel grace, 30 s, against a 5 s lease). A third of the lease leaves the rest for the exit."""
    return min(settings.cancel_grace_seconds, settings.run_lease_seconds / 3)


def trainer_storage(settings: Settings) -> LocalStoreConfig | S3StoreConfig:
    store = settings.store_config
    return store.without_credentials() if isinstance(store, S3StoreConfig) else store


def storage_credentials_env(settings: Settings) -> dict[str, str]:
    """Storage credentials travel with the job token, as secrets, never inside the spec."""
    store = settings.store_config
    return store.credentials_env() if isinstance(store, S3StoreConfig) else {}


async def start_run(
    session: AsyncSession,
    settings: Settings,
    catalogue: Catalogue,
    executor: Executor,
    job: FineTuningJobRow,
    worker: str,
) -> None:
    """`job` is claimed (queued, leased to us): start its trainer and mark it running."""
    token = secrets.token_urlsafe(32)
    try:
        spec = await build_spec(session, settings, catalogue, job)
    except LookupError as exc:
        await fail_job(session, job.id, {"queued"}, "job_setup_failed", f"The job could not start: {exc}.")
        return
    env = {
        "FTAPI_JOB_TOKEN": token,
        **storage_credentials_env(settings),
        **(integration_env(settings.wandb, settings.mlflow) if job.integrations else {}),
    }
    try:
        if getattr(executor, "start_on_loop", False):
            handle = executor.start(spec, env)
        else:  # in a thread: starting a container or a Kubernetes Job is a remote call
            handle = await asyncio.to_thread(executor.start, spec, env)
    except RunNotStarted as exc:
        await fail_job(session, job.id, {"queued"}, "job_setup_failed", f"The job could not start: {exc}.")
        return
    except ExecutorUnavailable as exc:
        # Nothing started: give the job back to the queue (any worker may take it) and say why.
        await transition(session, job.id, {"queued"}, claimed_by=None, lease_until=None)
        await session.commit()
        log.warning("job.start_deferred", job_id=job.id, reason=str(exc))
        return
    moved = await transition(
        session,
        job.id,
        {"queued"},
        status="running",
        executor_handle=handle,
        token_hash=hash_api_key(token),
        claimed_by=worker,
        lease_until=int(time.time()) + settings.run_lease_seconds,
        attempts=job.attempts + 1,
    )
    await session.commit()
    if not moved:  # cancelled between the claim and the start
        await asyncio.to_thread(executor.cancel, handle, settings.cancel_grace_seconds)
    log.info("job.started", job_id=job.id, handle=handle, started=moved)


async def watch_runs(
    session: AsyncSession,
    settings: Settings,
    executor: Executor,
    worker: str,
    store: BlobStore | None = None,
) -> int:
    """Renew leases of our live runs, stop runs whose job was cancelled or paused, settle exits.

    Returns how many runs are still active for this worker.
    """
    jobs = (
        await session.scalars(
            select(FineTuningJobRow).where(
                FineTuningJobRow.claimed_by == worker, FineTuningJobRow.executor_handle.is_not(None)
            )
        )
    ).all()
    active = 0
    now = int(time.time())
    for job in jobs:
        handle = job.executor_handle
        assert handle is not None
        # In a thread: a remote executor (the Kubernetes API) must not stall this process's loop.
        try:
            status = await asyncio.to_thread(executor.poll, handle)
        except ExecutorUnavailable as exc:
            # Unknown, not over: the run may well be alive. Decide once the executor answers.
            log.warning("job.poll_failed", job_id=job.id, reason=str(exc))
            active += 1
            continue
        if status.state == "running":
            if job.status != "running" and should_stop(job, now, settings.cancel_grace_seconds):
                await asyncio.to_thread(executor.cancel, handle, settings.cancel_grace_seconds)
            # The lease marks the run as alive, whatever the job's status: a resumed job waits
            # for its previous trainer to finish saving before another one starts.
            await transition(session, job.id, {job.status}, lease_until=now + settings.run_lease_seconds)
            active += 1
            continue
        # The run is over (or unknown to us). Success was reported by the trainer itself.
        await keep_output(session, store, job, status, failed=job.status == "running")
        if job.status == "running":
            await requeue_or_fail(session, settings, job, stopped_reason(status))
            continue
        await transition(
            session, job.id, {job.status}, executor_handle=None, claimed_by=None, lease_until=None
        )
    await session.commit()
    return active


def should_stop(job: FineTuningJobRow, now: int, grace_seconds: float) -> bool:
    """A live run whose job is no longer running: stop it when the job was cancelled or paused (or
    resumed while the trainer still saves). A trainer whose job ended (it reported the end itself)
    is exiting on its own: stopping it would cut off the output kept with the job, so it is stopped
    only if it lingers past the grace."""
    if job.status not in ("succeeded", "failed"):
        return True
    return job.finished_at is None or now - job.finished_at > grace_seconds


def stopped_reason(status: RunStatus) -> str:
    detail = status.detail
    if status.exit_code is not None:
        detail = f"exit code {status.exit_code}" + (f": {detail}" if detail else "")
    return f"The trainer stopped ({detail})"


async def keep_output(
    session: AsyncSession, store: BlobStore | None, job: FineTuningJobRow, status: RunStatus, *, failed: bool
) -> None:
    """Keep the tail of a finished run's output with the job: a log file in storage under the job's
    prefix and, when the run failed, its last lines in an event, so the job explains itself."""
    if not status.output:
        return
    if store is not None:
        key = f"{job_prefix(job.project_id, job.id)}logs/trainer-attempt-{job.attempts}.log"
        try:
            await store.put_bytes(key, status.output.encode())
        except Exception as exc:
            log.warning("job.output_not_kept", job_id=job.id, error=type(exc).__name__)
    if failed:
        lines = [line.rsplit("\r", 1)[-1][:300] for line in status.output.splitlines() if line.strip()]
        tail = "\n".join(lines[-OUTPUT_EVENT_LINES:])
        add_event(session, job.id, f"Trainer output (attempt {job.attempts}, last lines):\n{tail}")


async def recover_orphans(
    session: AsyncSession,
    settings: Settings,
    now: int,
    executor: Executor | None = None,
    worker: str | None = None,
    store: BlobStore | None = None,
) -> int:
    """Running jobs whose lease ran out lost their worker (it died or was restarted). A run the
    executor still finds (a container, a Kubernetes Job) is taken over by `worker` (when it runs
    trainers at all), which settles it like its own; the others are queued again, or failed once
    they have used up their attempts. Returns how many were moved."""
    orphans = (
        await session.scalars(
            select(FineTuningJobRow).where(
                FineTuningJobRow.status == "running", FineTuningJobRow.lease_until < now
            )
        )
    ).all()
    for job in orphans:
        handle = job.executor_handle
        if executor is not None and worker is not None and handle and settings.max_concurrent_jobs > 0:
            try:
                status = await asyncio.to_thread(executor.poll, handle)
            except ExecutorUnavailable as exc:
                log.warning("job.poll_failed", job_id=job.id, reason=str(exc))
                continue
            if status.state == "running":
                if await take_over(session, job.id, worker, now, settings.run_lease_seconds):
                    add_event(
                        session,
                        job.id,
                        f"The job's worker stopped; another worker took over its trainer "
                        f"(attempt {job.attempts})",
                    )
                    log.info("job.adopted", job_id=job.id, handle=handle, worker=worker)
                await session.commit()
                continue
            if status.state == "exited":
                # It ended while nobody watched: settle it as its worker would have.
                await keep_output(session, store, job, status, failed=True)
                await requeue_or_fail(session, settings, job, stopped_reason(status))
                continue
        await requeue_or_fail(session, settings, job, "The job's worker stopped")
    return len(orphans)


async def requeue_or_fail(
    session: AsyncSession, settings: Settings, job: FineTuningJobRow, reason: str
) -> None:
    """A running job lost its trainer: queue it again (it resumes from its newest checkpoint), or
    fail it once it has used up its attempts. Commits."""
    if job.attempts >= settings.max_job_attempts:
        message = f"{reason}; the job failed after {job.attempts} attempts. See the worker's trainer log."
        await fail_job(session, job.id, {"running"}, "training_failed", message)
        return
    requeued = await transition(
        session,
        job.id,
        {"running"},
        status="queued",
        executor_handle=None,
        claimed_by=None,
        lease_until=None,
        token_hash=None,
    )
    if requeued:
        add_event(
            session,
            job.id,
            f"{reason}; the job is queued again (attempt {job.attempts + 1} of {settings.max_job_attempts})",
            level="warn",
        )
    await session.commit()
