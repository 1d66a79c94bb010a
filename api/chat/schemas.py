"""The chat-completions request as this API checks it before any engine sees it.

Fields are checked where OpenAI checks them; everything else (tools, response_format, logprobs,
metadata, fields of newer SDKs) is kept as sent (`extra="allow"`) and left to the engine, which
answers a 400 for what it cannot do. Unknown fields are not an error (the SDK version decides).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.errors import InvalidRequest


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatCompletionCreateParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionCreateParams:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise InvalidRequest("'stop' accepts at most 4 sequences.", param="stop")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
        return self

    def engine_body(self) -> dict[str, Any]:
        """The request as sent (unset fields left out), for the engine."""
        return self.model_dump(exclude_unset=True, exclude_none=False)
