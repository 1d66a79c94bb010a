"""Wire types of /v1/webhook_endpoints, named and shaped as in openai-python (`types/webhooks/`),
plus ftapi's delivery log (`WebhookDelivery`, not an OpenAI object)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class WebhookCreateParams(BaseModel):
    event_types: list[str] = Field(min_length=1)
    name: str = Field(min_length=1, max_length=256)
    url: str = Field(min_length=1, max_length=2048)


class WebhookUpdateParams(BaseModel):
    event_types: list[str] | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1, max_length=256)
    url: str | None = Field(default=None, min_length=1, max_length=2048)


class WebhookRotateSecretParams(BaseModel):
    keep_old_secret_active_for_24_hours: bool = False


class WebhookTestParams(BaseModel):
    event_type: str


class WebhookEndpoint(BaseModel):
    id: str
    created_at: int
    event_types: list[str]
    name: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    signing_secret_hint: str | None = None
    url: str
    updated_at: int | None = None


class WebhookEndpointWithSecret(WebhookEndpoint):
    signing_secret: str


class WebhookEndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class DeletedWebhookEndpoint(BaseModel):
    id: str
    deleted: bool = True
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"


class WebhookEndpointTestResult(BaseModel):
    event_type: str
    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    status_code: int
    success: Literal[True] = True
    webhook_endpoint_id: str


class WebhookDelivery(BaseModel):
    """One event sent (or being sent) to one endpoint, with every attempt so far."""

    id: str  # the `webhook-id` header the receiver saw
    object: Literal["webhook_endpoint.delivery"] = "webhook_endpoint.delivery"
    webhook_endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: int
    delivered_at: int | None = None
    next_attempt_at: int | None = None  # while pending
    last_status_code: int | None = None
    last_error: str | None = None
    log: list[dict[str, Any]]  # {"attempt", "at", "status_code", "error"} per attempt


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDelivery]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool
