"""The `validating_files` stage: full semantic validation of a job's files with the shared validator.

Run by the dispatcher (any process may die mid-way: the lease expires and another takes over). The
lease is short (the run lease) and renewed while a file is read, so a big file keeps it and a dead
worker's job is taken over within a lease, not after a fixed ten minutes.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from api.catalogue import Catalogue
from api.db.tables import FileRow, FineTuningJobRow
from api.fine_tuning import lifecycle
from api.fine_tuning.hyperparameters import resolve
from api.fine_tuning.repository import add_event, fail_job, transition
from api.models.resolver import base_model_id
from storage import BlobStore
from trainer.data.validate import StreamingValidator, ValidationReport

log = structlog.get_logger()
MIN_TRAINING_EXAMPLES = 10


class ValidationAbandoned(Exception):
    """The job left `validating_files` while its files were read (cancelled): stop reading."""


class ValidationLease:
    """Renews this worker's lease on a job while its files are read, a third of a lease at a time."""

    def __init__(self, session: AsyncSession, job_id: str, seconds: int) -> None:
        self.session = session
        self.job_id = job_id
        self.seconds = seconds
        self.next_renewal = time.monotonic() + seconds / 3

    async def keep(self) -> None:
        if time.monotonic() < self.next_renewal:
            return
        renewed = await transition(
            self.session, self.job_id, {"validating_files"}, lease_until=int(time.time()) + self.seconds
        )
        await self.session.commit()
        if not renewed:
            raise ValidationAbandoned(self.job_id)
        self.next_renewal = time.monotonic() + self.seconds / 3


async def _validate_blob(
    store: BlobStore, key: str, lease: ValidationLease, **kwargs: Any
) -> ValidationReport:
    validator = StreamingValidator(count_tokens=False, max_problems=1, **kwargs)
    async for chunk in store.open_stream(key):
        validator.feed(chunk)
        await lease.keep()
    return validator.finish()


def _failure(report: ValidationReport, param: str) -> dict[str, str]:
    problem = report.first_problem
    assert problem is not None
    if problem.code == "invalid_n_examples":
        return {"code": "invalid_n_examples", "message": problem.message, "param": param}
    code = "invalid_training_file" if param == "training_file" else "invalid_validation_file"
    message = lifecycle.invalid_file_message(problem.message)
    if param == "validation_file":
        message = message.replace("invalid training file", "invalid validation file")
    return {"code": code, "message": message, "param": param}


async def validate_job(
    session: AsyncSession, store: BlobStore, catalogue: Catalogue, job: FineTuningJobRow, lease_seconds: int
) -> None:
    """Validate `job`'s files (claimed for `lease_seconds`) and queue or fail it; a job cancelled
    meanwhile is left as it is."""
    lease = ValidationLease(session, job.id, lease_seconds)
    try:
        await _validate_files(session, store, catalogue, job, lease)
    except ValidationAbandoned:
        log.info("job.validation_abandoned", job_id=job.id)


async def _validate_files(
    session: AsyncSession,
    store: BlobStore,
    catalogue: Catalogue,
    job: FineTuningJobRow,
    lease: ValidationLease,
) -> None:
    expected = "preference" if job.method == "dpo" else "chat"
    entry = catalogue.get(base_model_id(job))
    error: dict[str, str] | None = None
    n_examples = 0
    for file_id, param in ((job.training_file, "training_file"), (job.validation_file, "validation_file")):
        if file_id is None:
            continue
        file = await session.get(FileRow, file_id)
        if file is None or entry is None:
            error = {"code": f"invalid_{param}", "message": f"invalid {param}: {file_id}", "param": param}
            break
        report = await _validate_blob(
            store,
            file.storage_key,
            lease,
            expected_format=expected,
            min_examples=MIN_TRAINING_EXAMPLES if param == "training_file" else None,
        )
        if not report.ok:
            error = _failure(report, param)
            break
        with_system = report.stats.n_examples - report.stats.n_without_system
        if with_system and (reason := catalogue.template(entry.id).system_problem) is not None:
            error = {
                "code": "invalid_training_file" if param == "training_file" else "invalid_validation_file",
                "message": f"{with_system} examples of the {param.replace('_', ' ')} have a system message, "
                f"which model {entry.id} cannot be trained with ({reason}). Remove the system messages "
                "or fold them into the first user message.",
                "param": param,
            }
            break
        if param == "training_file":
            n_examples = report.stats.n_examples
    if error is not None:
        await fail_job(session, job.id, {"validating_files"}, error["code"], error["message"], error["param"])
        log.info("job.validation_failed", job_id=job.id, code=error["code"])
        return
    assert entry is not None
    resolved = resolve(job.hyperparameters, n_examples, entry, job.method)
    moved = await transition(
        session,
        job.id,
        {"validating_files"},
        status="queued",
        resolved_hyperparameters=resolved,
        n_examples=n_examples,
        claimed_by=None,
        lease_until=None,
    )
    if moved:
        add_event(session, job.id, lifecycle.FILES_VALIDATED)
    await session.commit()
    log.info("job.validated", job_id=job.id, n_examples=n_examples)
