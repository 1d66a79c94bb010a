"""The /v1/responses request as this server accepts it: text in, text out, on any model chat serves.

What a chat model cannot do here (tools, stored conversations, non-text input) is refused with a 400
naming the parameter; other fields of newer SDKs are ignored (`extra="allow"`), as in chat.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.errors import InvalidRequest


class ResponseCreateParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = False
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    text: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> ResponseCreateParams:
        if self.previous_response_id is not None:
            raise InvalidRequest(
                "This server does not store responses: send the conversation in 'input' instead.",
                param="previous_response_id",
            )
        if self.tools:
            raise InvalidRequest("Tools are not supported on /v1/responses by this server.", param="tools")
        fmt = (self.text or {}).get("format") or {"type": "text"}
        if fmt.get("type") != "text":
            raise InvalidRequest("Only text output is supported by this server.", param="text.format")
        if isinstance(self.input, list) and not self.input:
            raise InvalidRequest("'input' must not be empty.", param="input")
        return self
