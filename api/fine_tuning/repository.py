"""SQL for fine-tuning jobs and their events. Tenant queries start from the project id."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.tables import FineTuningJobCheckpointRow, FineTuningJobEventRow, FineTuningJobRow
from api.ids import new_id, now_us
from api.webhooks.events import enqueue_job_event


class JobRepository:
    def __init__(self, session: AsyncSession, project_id: str) -> None:
        self.session = session
        self.project_id = project_id

    async def get(self, job_id: str) -> FineTuningJobRow | None:
        return await self.session.scalar(
            select(FineTuningJobRow).where(
                FineTuningJobRow.project_id == self.project_id, FineTuningJobRow.id == job_id
            )
        )

    async def by_idempotency_key(self, key: str) -> FineTuningJobRow | None:
        return await self.session.scalar(
            select(FineTuningJobRow).where(
                FineTuningJobRow.project_id == self.project_id, FineTuningJobRow.idempotency_key == key
            )
        )

    async def all_newest_first(self) -> Sequence[FineTuningJobRow]:
        stmt = (
            select(FineTuningJobRow)
            .where(FineTuningJobRow.project_id == self.project_id)
            .order_by(FineTuningJobRow.created_at_us.desc(), FineTuningJobRow.id.desc())
        )
        return (await self.session.scalars(stmt)).all()

    async def events(
        self, job_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[FineTuningJobEventRow]:
        stmt = select(FineTuningJobEventRow).where(FineTuningJobEventRow.job_id == job_id)
        if after_seq is not None:
            stmt = stmt.where(FineTuningJobEventRow.seq < after_seq)
        stmt = stmt.order_by(FineTuningJobEventRow.seq.desc()).limit(limit + 1)
        return (await self.session.scalars(stmt)).all()

    async def event_seq(self, job_id: str, event_id: str) -> int | None:
        return await self.session.scalar(
            select(FineTuningJobEventRow.seq).where(
                FineTuningJobEventRow.job_id == job_id, FineTuningJobEventRow.id == event_id
            )
        )

    async def checkpoints(
        self, job_id: str, *, after: str | None, limit: int
    ) -> Sequence[FineTuningJobCheckpointRow]:
        """Newest (highest step) first; `after` is a checkpoint id of this job."""
        stmt = checkpoints_newest_first(job_id)
        if after is not None:
            step = await self.session.scalar(
                select(FineTuningJobCheckpointRow.step_number).where(
                    FineTuningJobCheckpointRow.job_id == job_id, FineTuningJobCheckpointRow.id == after
                )
            )
            if step is None:
                raise LookupError(after)
            stmt = stmt.where(FineTuningJobCheckpointRow.step_number < step)
        return (await self.session.scalars(stmt.limit(limit + 1))).all()


def checkpoints_newest_first(job_id: str) -> Select[FineTuningJobCheckpointRow]:
    """A job's checkpoints, highest step first (no project scope: callers have checked the job)."""
    return (
        select(FineTuningJobCheckpointRow)
        .where(FineTuningJobCheckpointRow.job_id == job_id)
        .order_by(FineTuningJobCheckpointRow.step_number.desc())
    )


async def newest_checkpoint(session: AsyncSession, job_id: str) -> FineTuningJobCheckpointRow | None:
    return await session.scalar(checkpoints_newest_first(job_id).limit(1))


def add_event(
    session: AsyncSession,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        FineTuningJobEventRow(
            id=new_id("ftevent-"),
            job_id=job_id,
            created_at_us=now_us(),
            level=level,
            type=type,
            message=message,
            data=data,
        )
    )


async def transition(
    session: AsyncSession, job_id: str, allowed: frozenset[str] | set[str], **values: Any
) -> bool:
    """Compare-and-set on status: the update happens only from an allowed state. A move to
    succeeded, failed or cancelled also queues that webhook event, in the same transaction."""
    result = await session.execute(
        update(FineTuningJobRow)
        .where(FineTuningJobRow.id == job_id, FineTuningJobRow.status.in_(allowed))
        .values(**values)
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved and "status" in values:
        await enqueue_job_event(session, job_id, str(values["status"]))
    return moved


async def claim(
    session: AsyncSession, status: str, worker: str, lease_seconds: int, now: int
) -> FineTuningJobRow | None:
    """Take one job in `status` whose lease is free or expired; exactly one worker wins it."""
    candidates = (
        await session.scalars(
            select(FineTuningJobRow.id)
            .where(
                FineTuningJobRow.status == status,
                or_(FineTuningJobRow.lease_until.is_(None), FineTuningJobRow.lease_until < now),
            )
            .order_by(FineTuningJobRow.created_at_us)
            .limit(5)
        )
    ).all()
    for job_id in candidates:
        won = await session.execute(
            update(FineTuningJobRow)
            .where(
                FineTuningJobRow.id == job_id,
                FineTuningJobRow.status == status,
                or_(FineTuningJobRow.lease_until.is_(None), FineTuningJobRow.lease_until < now),
            )
            .values(claimed_by=worker, lease_until=now + lease_seconds)
        )
        if won.rowcount:  # type: ignore[attr-defined]
            await session.commit()
            return await session.get(FineTuningJobRow, job_id)
    await session.commit()
    return None


async def take_over(session: AsyncSession, job_id: str, worker: str, now: int, lease_seconds: int) -> bool:
    """A running job whose worker's lease ran out: make its live run `worker`'s. Exactly one wins."""
    result = await session.execute(
        update(FineTuningJobRow)
        .where(
            FineTuningJobRow.id == job_id,
            FineTuningJobRow.status == "running",
            FineTuningJobRow.lease_until < now,
        )
        .values(claimed_by=worker, lease_until=now + lease_seconds)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def fail_job(
    session: AsyncSession, job_id: str, allowed: set[str], code: str, message: str, param: str | None = None
) -> None:
    """Move a job to `failed` with OpenAI's error object and the matching error event; commits."""
    moved = await transition(
        session,
        job_id,
        allowed,
        status="failed",
        error={"code": code, "message": message, "param": param},
        finished_at=int(time.time()),
        executor_handle=None,
        claimed_by=None,
        lease_until=None,
    )
    if moved:
        add_event(session, job_id, message, level="error")
    await session.commit()
