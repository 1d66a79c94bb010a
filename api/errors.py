"""The error hierarchy and its single mapping to OpenAI's envelope.

Every non-2xx response leaves through `install_error_handlers`: domain errors, engine errors
(serving.errors, mapped field for field), framework
validation (400, never 422), unknown routes. Unhandled exceptions become a 500 envelope in
api.logging's middleware
(outermost, so that response still carries the request id).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.errors import EngineError


class FtapiError(Exception):
    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None
    # A retry of the same request cannot succeed: tell the SDK not to (it retries 408/409/429/5xx).
    retryable: bool = False

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(FtapiError):
    """400: the request is wrong, or the object is in a state that does not allow it (never 409)."""


class AuthenticationFailed(FtapiError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(FtapiError):
    status = 403
    type = "permission_error"


class NotFound(FtapiError):
    status = 404


class PayloadTooLarge(FtapiError):
    status = 413


class ServiceUnavailable(FtapiError):
    status = 503
    type = "server_error"
    retryable = True


class ServerError(FtapiError):
    status = 500
    type = "server_error"
    retryable = True


def error_response(err: FtapiError | EngineError) -> JSONResponse:
    headers = {"x-should-retry": "true" if err.retryable else "false"}
    envelope = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    return JSONResponse(envelope, status_code=err.status, headers=headers)


def _dotted(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


def _validation_message(err: dict[str, Any]) -> str:
    where = _dotted(tuple(err.get("loc", ())))
    msg = str(err.get("msg", "Invalid value"))
    if err.get("type") == "json_invalid":
        return (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly.)"
        )
    if err.get("type") == "missing":
        return f"Missing required parameter: '{where}'." if where else "Missing required parameter."
    return f"Invalid value for '{where}': {msg}" if where else msg


# What pydantic says of a body that is not an object: FastAPI only parses JSON when the request says
# it is JSON (or says nothing), so `curl -d '{...}'` (form-encoded) arrives here as raw bytes.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def _body_not_sent_as_json(request: Request, err: dict[str, Any]) -> InvalidRequest | None:
    if tuple(err.get("loc", ())) != ("body",) or err.get("type") not in _NOT_AN_OBJECT:
        return None
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return None  # JSON, but not an object: pydantic's own message says so
    return InvalidRequest(
        "The request body must be a JSON object sent with the header `Content-Type: application/json`"
        f" (this request was sent as `{media_type}`). With curl, add"
        " `-H 'Content-Type: application/json'` to `-d`."
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FtapiError)
    async def _ftapi(_: Request, exc: FtapiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(EngineError)
    async def _engine(_: Request, exc: EngineError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        not_json = _body_not_sent_as_json(request, first)
        if not_json is not None:
            return error_response(not_json)
        param = None if first.get("type") == "json_invalid" else _dotted(tuple(first.get("loc", ())))
        return error_response(InvalidRequest(_validation_message(first), param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err: FtapiError = NotFound(f"Invalid URL ({request.method} {request.url.path})")
        elif exc.status_code == 405:
            err = NotFound(f"Invalid URL ({request.method} {request.url.path})")
        else:
            err = FtapiError(str(exc.detail))
            err.status = exc.status_code
        return error_response(err)
