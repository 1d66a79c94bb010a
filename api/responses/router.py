"""HTTP for /v1/responses: resolve the model as chat does, translate (api/responses/translate.py),
hand the chat request to serving."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api.auth import Principal
from api.chat.router import chat_principal, prepend, served_model
from api.models.router import RegistryDep
from api.responses.schemas import ResponseCreateParams
from api.responses.translate import ResponseBuilder, chat_request, stream_events

router = APIRouter(prefix="/v1", tags=["responses"])


@router.post(
    "/responses",
    responses={200: {"content": {"text/event-stream": {}}, "description": "A response, or SSE events"}},
)
async def create_response(
    params: ResponseCreateParams,
    request: Request,
    principal: Annotated[Principal, Depends(chat_principal)],
    registry: RegistryDep,
) -> Any:
    """Create a model response (text) with a base model, a fine-tuned model or a checkpoint."""
    served = await served_model(request, principal, params.model)
    body = chat_request(params)
    builder = ResponseBuilder(params)
    if not params.stream:
        return JSONResponse(builder.from_chat(await registry.chat(served, body)))
    chunks = await registry.chat_stream(served, body)
    # Pull the first chunk before answering: failures up to there get a real status code.
    first = await anext(chunks)
    events = stream_events(builder, prepend(first, chunks))
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
