"""Sends due webhook deliveries with retries and backoff. Runs in every process that runs the
dispatcher; all its state is in the database, so any process may take over (a claim is a lease,
compare-and-set), and a restarted one continues the schedule where it was. At-least-once, as
Standard Webhooks expects: receivers deduplicate by `webhook-id`, which every retry repeats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db.tables import WebhookDeliveryRow, WebhookEndpointRow
from api.ids import now_us
from api.settings import Settings
from api.webhooks import signing

log = structlog.get_logger()
BATCH = 20
_LEASE_US = 120 * 1_000_000  # longer than one send's timeout: a dead sender's claims come free


def endpoint_secrets(endpoint: WebhookEndpointRow, now: int) -> list[str]:
    keys = [endpoint.secret]
    if endpoint.previous_secret and (endpoint.previous_secret_until or 0) > now:
        keys.append(endpoint.previous_secret)
    return keys


async def post_once(
    http: aiohttp.ClientSession, endpoint: WebhookEndpointRow, msg_id: str, body: str
) -> tuple[int | None, str | None]:
    """One signed POST; returns (status code, error). 2xx is success; redirects are not followed."""
    now = int(time.time())
    headers = signing.headers(endpoint_secrets(endpoint, now), msg_id, now, body)
    try:
        async with http.post(
            endpoint.url, data=body.encode(), headers=headers, allow_redirects=False
        ) as resp:
            await resp.read()
            return resp.status, None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"


def record_attempt(
    row: WebhookDeliveryRow, status_code: int | None, error: str | None, schedule: list[float]
) -> dict[str, Any]:
    """The row's new values after one attempt (ends it, or schedules the next one)."""
    attempts = row.attempts + 1
    now = now_us()
    entry = {"attempt": attempts, "at": now // 1_000_000, "status_code": status_code, "error": error}
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": status_code,
        "last_error": error,
        "log": [*row.log, entry],
        "lease_until_us": None,
    }
    if error is None:
        values |= {"status": "delivered", "delivered_at_us": now}
    elif attempts > len(schedule):
        values["status"] = "failed"
    else:
        values["next_attempt_at_us"] = now + int(schedule[attempts - 1] * 1_000_000)
    return values


class WebhookSender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.schedule = list(settings.webhook_retry_seconds)
        self.timeout = settings.webhook_timeout_seconds
        self.interval = settings.webhook_poll_seconds

    async def _claim(self, session: AsyncSession) -> list[str]:
        now = now_us()
        due = (
            await session.scalars(
                select(WebhookDeliveryRow.id)
                .where(
                    WebhookDeliveryRow.status == "pending",
                    WebhookDeliveryRow.next_attempt_at_us <= now,
                    or_(WebhookDeliveryRow.lease_until_us.is_(None), WebhookDeliveryRow.lease_until_us < now),
                )
                .order_by(WebhookDeliveryRow.next_attempt_at_us)
                .limit(BATCH)
            )
        ).all()
        won = []
        for delivery_id in due:
            result = await session.execute(
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == delivery_id,
                    WebhookDeliveryRow.status == "pending",
                    or_(WebhookDeliveryRow.lease_until_us.is_(None), WebhookDeliveryRow.lease_until_us < now),
                )
                .values(lease_until_us=now + _LEASE_US)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                won.append(delivery_id)
        await session.commit()
        return won

    async def step(self, http: aiohttp.ClientSession) -> int:
        """Send every delivery that is due now; returns how many were attempted."""
        async with self.sessions() as session:
            claimed = await self._claim(session)
            for delivery_id in claimed:
                row = await session.get(WebhookDeliveryRow, delivery_id)
                endpoint = await session.get(WebhookEndpointRow, row.endpoint_id) if row else None
                if row is None or endpoint is None:
                    continue  # its endpoint was deleted (with its deliveries)
                status_code, error = await post_once(http, endpoint, row.id, row.payload)
                values = record_attempt(row, status_code, error, self.schedule)
                await session.execute(
                    update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == row.id).values(**values)
                )
                await session.commit()
                log.info(
                    "webhook.attempt",
                    delivery=row.id,
                    event_type=row.event_type,
                    attempt=values["attempts"],
                    status_code=status_code,
                    outcome=values.get("status", "retrying"),
                )
            return len(claimed)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    busy = await self.step(http)
                except Exception:
                    log.exception("webhook.sender_failed")
                    busy = 0
                if not busy:
                    await asyncio.sleep(self.interval)
