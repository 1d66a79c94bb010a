"""HTTP for /v1/webhook_endpoints (the SDK's `client.webhooks`), and ftapi's delivery log at
/v1/webhook_endpoints/{id}/deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import IdempotencyKey, PrincipalDep, SessionDep, SettingsDep
from api.webhooks.schemas import (
    DeletedWebhookEndpoint,
    WebhookCreateParams,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
    WebhookRotateSecretParams,
    WebhookTestParams,
    WebhookUpdateParams,
)
from api.webhooks.service import WebhookService

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhooks"])


def webhook_service(session: SessionDep, settings: SettingsDep, principal: PrincipalDep) -> WebhookService:
    return WebhookService(session, settings, principal)


Webhooks = Annotated[WebhookService, Depends(webhook_service)]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", response_model=WebhookEndpointWithSecret)
async def create_endpoint(
    params: WebhookCreateParams, webhooks: Webhooks, idempotency_key: IdempotencyKey = None
) -> WebhookEndpointWithSecret:
    """Create a webhook endpoint for this project; the signing secret is shown only here."""
    return await webhooks.create(params, idempotency_key)


@router.get("", response_model=WebhookEndpointList)
async def list_endpoints(
    webhooks: Webhooks, after: str | None = None, limit: Limit = 20
) -> WebhookEndpointList:
    """List this project's webhook endpoints, newest first."""
    return await webhooks.list(after=after, limit=limit)


@router.get("/{webhook_endpoint_id}", response_model=WebhookEndpoint)
async def retrieve_endpoint(webhook_endpoint_id: str, webhooks: Webhooks) -> WebhookEndpoint:
    """Retrieve a webhook endpoint."""
    return await webhooks.retrieve(webhook_endpoint_id)


@router.post("/{webhook_endpoint_id}", response_model=WebhookEndpoint)
async def update_endpoint(
    webhook_endpoint_id: str, params: WebhookUpdateParams, webhooks: Webhooks
) -> WebhookEndpoint:
    """Change a webhook endpoint's URL, name or event types."""
    return await webhooks.update(webhook_endpoint_id, params)


@router.delete("/{webhook_endpoint_id}", response_model=DeletedWebhookEndpoint)
async def delete_endpoint(webhook_endpoint_id: str, webhooks: Webhooks) -> DeletedWebhookEndpoint:
    """Delete a webhook endpoint (and its pending deliveries)."""
    return await webhooks.delete(webhook_endpoint_id)


@router.post("/{webhook_endpoint_id}/rotate_secret", response_model=WebhookEndpointWithSecret)
async def rotate_secret(
    webhook_endpoint_id: str, webhooks: Webhooks, params: WebhookRotateSecretParams | None = None
) -> WebhookEndpointWithSecret:
    """Give the endpoint a new signing secret (optionally still signing with the old one for 24 h)."""
    return await webhooks.rotate_secret(webhook_endpoint_id, params or WebhookRotateSecretParams())


@router.post("/{webhook_endpoint_id}/test", response_model=WebhookEndpointTestResult)
async def test_endpoint(
    webhook_endpoint_id: str, params: WebhookTestParams, webhooks: Webhooks
) -> WebhookEndpointTestResult:
    """Send a sample event to the endpoint now and report its HTTP status."""
    return await webhooks.test(webhook_endpoint_id, params.event_type)


@router.get("/{webhook_endpoint_id}/deliveries", response_model=WebhookDeliveryList)
async def list_deliveries(
    webhook_endpoint_id: str, webhooks: Webhooks, after: str | None = None, limit: Limit = 20
) -> WebhookDeliveryList:
    """ftapi: the endpoint's delivery log, newest first, with every attempt's outcome."""
    return await webhooks.deliveries(webhook_endpoint_id, after=after, limit=limit)
