"""HTTP for /v1/chat/completions: resolve the model for this project, hand the request to serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api.auth import Principal, PrincipalCache
from api.chat.schemas import ChatCompletionCreateParams
from api.models.resolver import ModelResolver
from api.models.router import RegistryDep
from api.settings import Settings
from serving.models import ServedModel

router = APIRouter(prefix="/v1/chat", tags=["chat"])


async def chat_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    # Not the shared session dependency: it would hold a database connection for a whole stream.
    # Keys seen recently skip the database entirely (chat is the hot path).
    settings: Settings = request.app.state.settings
    configured = settings.api_key.get_secret_value() if settings.api_key else None
    cache: PrincipalCache = request.app.state.principals
    return await cache.authenticate(request.app.state.sessions, authorization, configured)


async def served_model(request: Request, principal: Principal, model: str) -> ServedModel:
    """What serving loads for `model` as this project names it (chat and /v1/responses)."""
    resolver: ModelResolver = request.app.state.resolver
    base = resolver.catalogue.get(model)
    if base is not None:  # no database needed
        return await resolver.base(base)
    async with request.app.state.sessions() as session:
        return await resolver.resolve(session, principal.project_id, model)


@router.post(
    "/completions",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "A chat.completion, or SSE chunks"}
    },
)
async def create_chat_completion(
    params: ChatCompletionCreateParams,
    request: Request,
    principal: Annotated[Principal, Depends(chat_principal)],
    registry: RegistryDep,
) -> Any:
    """Chat with a base model, a fine-tuned model or a checkpoint of this project."""
    served = await served_model(request, principal, params.model)
    body = params.engine_body()
    if not params.stream:
        return JSONResponse(await registry.chat(served, body))
    events = await registry.chat_stream(served, body)
    # Pull the first event before answering: failures up to there get a real status code.
    first = await anext(events)
    return StreamingResponse(
        prepend(first, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:  # a client that went away stops the generation behind the stream
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()
