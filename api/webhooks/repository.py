"""SQL for webhook endpoints and their deliveries. Tenant queries start from the project id."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.tables import WebhookDeliveryRow, WebhookEndpointRow
from api.pagination import after_cursor


class WebhookRepository:
    def __init__(self, session: AsyncSession, project_id: str) -> None:
        self.session = session
        self.project_id = project_id

    async def get(self, endpoint_id: str) -> WebhookEndpointRow | None:
        return await self.session.scalar(
            select(WebhookEndpointRow).where(
                WebhookEndpointRow.project_id == self.project_id, WebhookEndpointRow.id == endpoint_id
            )
        )

    async def by_idempotency_key(self, key: str) -> WebhookEndpointRow | None:
        return await self.session.scalar(
            select(WebhookEndpointRow).where(
                WebhookEndpointRow.project_id == self.project_id, WebhookEndpointRow.idempotency_key == key
            )
        )

    async def page(self, after: WebhookEndpointRow | None, limit: int) -> Sequence[WebhookEndpointRow]:
        """Newest first, `limit + 1` rows (the extra one says whether there are more)."""
        stmt = select(WebhookEndpointRow).where(WebhookEndpointRow.project_id == self.project_id)
        cursor = (after.created_at_us, after.id) if after else None
        stmt = after_cursor(stmt, WebhookEndpointRow.created_at_us, WebhookEndpointRow.id, cursor, "desc")
        return (await self.session.scalars(stmt.limit(limit + 1))).all()

    async def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDeliveryRow | None:
        return await self.session.scalar(
            select(WebhookDeliveryRow).where(
                WebhookDeliveryRow.endpoint_id == endpoint_id, WebhookDeliveryRow.id == delivery_id
            )
        )

    async def deliveries(
        self, endpoint_id: str, after: WebhookDeliveryRow | None, limit: int
    ) -> Sequence[WebhookDeliveryRow]:
        """An endpoint's deliveries, newest first, `limit + 1` rows (callers checked the endpoint)."""
        stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        cursor = (after.created_at_us, after.id) if after else None
        stmt = after_cursor(stmt, WebhookDeliveryRow.created_at_us, WebhookDeliveryRow.id, cursor, "desc")
        return (await self.session.scalars(stmt.limit(limit + 1))).all()
