"""Engine failures, shaped so the API can map them to OpenAI's error envelope in one place."""

from __future__ import annotations


class EngineError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class EngineRequestError(EngineError):
    """The engine refused the request itself (a bad parameter, a prompt too long): 400."""

    status = 400
    type = "invalid_request_error"


class EngineUnavailable(EngineError):
    """The engine cannot be reached or is starting: 503, worth retrying."""

    status = 503
    retryable = True


class UnsafeWeights(EngineError):
    """Stored weights that an engine must not load (pickles, code, missing safetensors)."""

    status = 500
    code = "model_not_servable"


class UpstreamError(EngineError):
    """Any other failure reported by an engine, with the engine's status when it gave one."""

    def __init__(self, message: str, *, status: int = 500, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.retryable = status >= 500
