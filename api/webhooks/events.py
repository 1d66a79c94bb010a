"""The events a project's webhook endpoints get: written as deliveries (an outbox) in the
transaction that moves the job, so an event exists exactly when its job reached that state."""

from __future__ import annotations

import json
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.tables import FineTuningJobRow, WebhookDeliveryRow, WebhookEndpointRow
from api.ids import new_id, now_us

JOB_EVENTS = {
    "succeeded": "fine_tuning.job.succeeded",
    "failed": "fine_tuning.job.failed",
    "cancelled": "fine_tuning.job.cancelled",
}
EVENT_TYPES = tuple(JOB_EVENTS.values())


def event_body(event_id: str, event_type: str, object_id: str, created_at: int) -> str:
    """The JSON of an event, shaped as the SDK's FineTuningJob*WebhookEvent."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "created_at": created_at,
            "type": event_type,
            "data": {"id": object_id},
        },
        separators=(",", ":"),
    )


def new_delivery(endpoint_id: str, event_type: str, body: str, event_id: str) -> WebhookDeliveryRow:
    now = now_us()
    return WebhookDeliveryRow(
        id=new_id("msg_"),
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type=event_type,
        payload=body,
        status="pending",
        attempts=0,
        next_attempt_at_us=now,
        lease_until_us=None,
        log=[],
        created_at_us=now,
    )


async def enqueue_job_event(session: AsyncSession, job_id: str, status: str) -> None:
    """Queue `fine_tuning.job.<status>` for every endpoint of the job's project that wants it
    (`transition` calls this), before the commit that makes the move and the deliveries durable."""
    event_type = JOB_EVENTS.get(status)
    if event_type is None:
        return
    project = select(FineTuningJobRow.project_id).where(FineTuningJobRow.id == job_id).scalar_subquery()
    endpoints = (
        await session.scalars(select(WebhookEndpointRow).where(WebhookEndpointRow.project_id == project))
    ).all()
    wanted = [e for e in endpoints if event_type in e.event_types]
    if not wanted:
        return
    event_id = new_id("evt_")
    body = event_body(event_id, event_type, job_id, int(time.time()))
    for endpoint in wanted:
        session.add(new_delivery(endpoint.id, event_type, body, event_id))
