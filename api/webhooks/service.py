"""Webhook endpoints of a project (create, list, retrieve, update, delete, rotate its secret, send
a test event) and their delivery log."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.db.tables import WebhookDeliveryRow, WebhookEndpointRow
from api.errors import InvalidRequest, NotFound
from api.idempotency import write_once
from api.ids import new_id, now_us
from api.settings import Settings
from api.webhooks import signing
from api.webhooks.events import EVENT_TYPES, event_body, new_delivery
from api.webhooks.repository import WebhookRepository
from api.webhooks.schemas import (
    DeletedWebhookEndpoint,
    WebhookCreateParams,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
    WebhookRotateSecretParams,
    WebhookUpdateParams,
)
from api.webhooks.sender import post_once, record_attempt

OLD_SECRET_SECONDS = 24 * 3600


def endpoint_object(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        created_at=row.created_at_us // 1_000_000,
        event_types=list(row.event_types),
        name=row.name,
        signing_secret_hint=signing.secret_hint(row.secret),
        url=row.url,
        updated_at=row.updated_at,
    )


def with_secret(row: WebhookEndpointRow) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(**endpoint_object(row).model_dump(), signing_secret=row.secret)


def delivery_object(row: WebhookDeliveryRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        webhook_endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,  # type: ignore[arg-type]
        attempts=row.attempts,
        created_at=row.created_at_us // 1_000_000,
        delivered_at=row.delivered_at_us // 1_000_000 if row.delivered_at_us else None,
        next_attempt_at=row.next_attempt_at_us // 1_000_000 if row.status == "pending" else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        log=list(row.log),
    )


def _page(data: Sequence[WebhookEndpoint | WebhookDelivery], has_more: bool) -> dict[str, Any]:
    """A list page's fields, as the SDK's cursor pages read them."""
    return {
        "data": data,
        "first_id": data[0].id if data else None,
        "last_id": data[-1].id if data else None,
        "has_more": has_more,
    }


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be an http(s) URL with a host.", param="url")
    return url


def _check_event_types(event_types: list[str]) -> list[str]:
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            f"Unsupported event types {unknown}: this server sends {', '.join(EVENT_TYPES)}.",
            param="event_types",
        )
    return sorted(set(event_types), key=event_types.index)


class WebhookService:
    def __init__(self, session: AsyncSession, settings: Settings, principal: Principal) -> None:
        self.session = session
        self.settings = settings
        self.repo = WebhookRepository(session, principal.project_id)
        self.project_id = principal.project_id

    async def _row(self, endpoint_id: str) -> WebhookEndpointRow:
        row = await self.repo.get(endpoint_id)
        if row is None:
            raise NotFound(f"No such webhook endpoint: {endpoint_id}", param="webhook_endpoint_id")
        return row

    async def create(
        self, params: WebhookCreateParams, idempotency_key: str | None
    ) -> WebhookEndpointWithSecret:
        if idempotency_key and (existing := await self.repo.by_idempotency_key(idempotency_key)):
            return with_secret(existing)
        row = WebhookEndpointRow(
            id=new_id("we_"),
            project_id=self.project_id,
            name=params.name,
            url=_check_url(params.url),
            event_types=_check_event_types(params.event_types),
            secret=signing.new_secret(),
            created_at_us=now_us(),
            updated_at=int(time.time()),
            idempotency_key=idempotency_key or None,
        )

        async def write() -> None:
            self.session.add(row)
            await self.session.commit()

        winner = await write_once(self.session, idempotency_key, write, self.repo.by_idempotency_key)
        return with_secret(winner or row)

    async def list(self, *, after: str | None, limit: int) -> WebhookEndpointList:
        cursor = None
        if after is not None:
            cursor = await self.repo.get(after)
            if cursor is None:
                raise InvalidRequest(f"No such webhook endpoint: {after}", param="after")
        rows = await self.repo.page(cursor, limit)
        data = [endpoint_object(r) for r in rows[:limit]]
        return WebhookEndpointList(**_page(data, len(rows) > limit))

    async def retrieve(self, endpoint_id: str) -> WebhookEndpoint:
        return endpoint_object(await self._row(endpoint_id))

    async def update(self, endpoint_id: str, params: WebhookUpdateParams) -> WebhookEndpoint:
        row = await self._row(endpoint_id)
        changed = False
        if params.url is not None and params.url != row.url:
            row.url, changed = _check_url(params.url), True
        if params.name is not None and params.name != row.name:
            row.name, changed = params.name, True
        if params.event_types is not None:
            types = _check_event_types(params.event_types)
            if types != row.event_types:
                row.event_types, changed = types, True
        if changed:  # "unchanged updates do not advance it"
            row.updated_at = int(time.time())
        await self.session.commit()
        return endpoint_object(row)

    async def delete(self, endpoint_id: str) -> DeletedWebhookEndpoint:
        row = await self._row(endpoint_id)
        await self.session.delete(row)
        await self.session.commit()
        return DeletedWebhookEndpoint(id=endpoint_id)

    async def rotate_secret(
        self, endpoint_id: str, params: WebhookRotateSecretParams
    ) -> WebhookEndpointWithSecret:
        row = await self._row(endpoint_id)
        now = int(time.time())
        keep = params.keep_old_secret_active_for_24_hours
        row.previous_secret = row.secret if keep else None
        row.previous_secret_until = now + OLD_SECRET_SECONDS if keep else None
        row.secret = signing.new_secret()
        row.updated_at = now
        await self.session.commit()
        return with_secret(row)

    async def test(self, endpoint_id: str, event_type: str) -> WebhookEndpointTestResult:
        """Send a sample event now, once (no retries); it is in the delivery log like the others."""
        row = await self._row(endpoint_id)
        _check_event_types([event_type])
        event_id = new_id("evt_")
        delivery = new_delivery(
            row.id, event_type, event_body(event_id, event_type, "ftjob-test", int(time.time())), event_id
        )
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            status_code, error = await post_once(http, row, delivery.id, delivery.payload)
        for key, value in record_attempt(delivery, status_code, error, []).items():
            setattr(delivery, key, value)
        self.session.add(delivery)
        await self.session.commit()
        if status_code is None:
            raise InvalidRequest(
                f"The endpoint could not be reached: {error}", param="url", code="webhook_unreachable"
            )
        return WebhookEndpointTestResult(
            event_type=event_type, status_code=status_code, webhook_endpoint_id=row.id
        )

    async def deliveries(self, endpoint_id: str, *, after: str | None, limit: int) -> WebhookDeliveryList:
        await self._row(endpoint_id)
        cursor = None
        if after is not None:
            cursor = await self.repo.delivery(endpoint_id, after)
            if cursor is None:
                raise InvalidRequest(f"No such delivery: {after}", param="after")
        rows = await self.repo.deliveries(endpoint_id, cursor, limit)
        data = [delivery_object(r) for r in rows[:limit]]
        return WebhookDeliveryList(**_page(data, len(rows) > limit))
