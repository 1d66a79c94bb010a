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
from api.dispatch.executor import Executor
from api.fine_tuning.repository import add_event, fail_job, newest_checkpoint, transition
from api.fine_tuning.results import job_prefix
from api.ids import hash_api_key
from api.settings import Settings
from storage.config import LocalStoreConfig, S3StoreConfig
from trainer.spec import BaseModelRef, CheckpointRef, Hyperparameters, JobSpec

log = structlog.get_logger()


async def build_spec(
    session: AsyncSession, settings: Settings, catalogue: Catalogue, job: FineTuningJobRow
) -> JobSpec:
    entry = catalogue.get(job.model)
    if entry is None:
        raise LookupError(f"model {job.model} left the catalogue")
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
        seed=job.seed,
        storage=trainer_storage(settings),
        training_file_key=train.storage_key,
        validation_file_key=valid.storage_key if valid else None,
        output_prefix=job_prefix(job.project_id, job.id),
        cache_dir=str((settings.data_dir / "models").resolve()),
        logging_steps=10,
        report_url=settings.resolved_internal_url,
        resume_from=CheckpointRef(step=checkpoint.step_number, storage_prefix=checkpoint.storage_prefix)
        if checkpoint
        else None,
    )


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
    handle = executor.start(spec, {"FTAPI_JOB_TOKEN": token, **storage_credentials_env(settings)})
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


async def watch_runs(session: AsyncSession, settings: Settings, executor: Executor, worker: str) -> int:
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
        status = await asyncio.to_thread(executor.poll, handle)
        if status.state == "running":
            if job.status != "running":  # cancelled or paused (or resumed while still saving)
                await asyncio.to_thread(executor.cancel, handle, settings.cancel_grace_seconds)
            # The lease marks the run as alive, whatever the job's status: a resumed job waits
            # for its previous trainer to finish saving before another one starts.
            await transition(session, job.id, {job.status}, lease_until=now + settings.run_lease_seconds)
            active += 1
            continue
        # The run is over (or unknown to us). Success was reported by the trainer itself.
        if job.status == "running":
            detail = status.detail
            if status.exit_code is not None:
                detail = f"exit code {status.exit_code}" + (f": {detail}" if detail else "")
            await requeue_or_fail(session, settings, job, f"The trainer stopped ({detail})")
            continue
        await transition(
            session, job.id, {job.status}, executor_handle=None, claimed_by=None, lease_until=None
        )
    await session.commit()
    return active


async def recover_orphans(session: AsyncSession, settings: Settings, now: int) -> int:
    """Running jobs whose lease ran out lost their worker (it died or was restarted): queue them
    again, or fail them once they have used up their attempts. Returns how many were moved."""
    orphans = (
        await session.scalars(
            select(FineTuningJobRow).where(
                FineTuningJobRow.status == "running", FineTuningJobRow.lease_until < now
            )
        )
    ).all()
    for job in orphans:
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
