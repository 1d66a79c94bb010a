"""One structlog configuration, and the ASGI middleware that gives every request an id and one log line.

The middleware is pure ASGI (not BaseHTTPMiddleware) so streamed bodies pass through untouched.
It is also the last line of defence: an exception that escaped every handler becomes a 500 envelope.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ids import new_request_id

log = structlog.get_logger()


def configure_logging(fmt: Literal["auto", "json", "console"] = "auto", level: str = "info") -> None:
    """JSON lines in production (no TTY), coloured key=value on a terminal."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


_SERVER_ERROR = (
    b'{"error":{"message":"The server had an error while processing your request. Sorry about that!",'
    b'"type":"server_error","param":null,"code":null}}'
)


ObserveRequest = Callable[[str, str, int, float], None]  # method, route template, status, seconds


class RequestContextMiddleware:
    """Adds `x-request-id`, `openai-version` and `openai-processing-ms`; logs one access line."""

    def __init__(self, app: ASGIApp, observe: ObserveRequest | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                ms = int((time.perf_counter() - start) * 1000)
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-request-id", request_id.encode()),
                    (b"openai-version", b"2020-10-01"),
                    (b"openai-processing-ms", str(ms).encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                log.exception("request.unhandled_error", path=scope.get("path"))
                if not started:
                    status = 500
                    await send_with_headers(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [(b"content-type", b"application/json"), (b"x-should-retry", b"true")],
                        }
                    )
                    await send({"type": "http.response.body", "body": _SERVER_ERROR})
            finally:
                seconds = time.perf_counter() - start
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )
                if self.observe is not None:
                    # The route's template, not the path: ids must not become label values.
                    route = getattr(scope.get("route"), "path", None) or "unmatched"
                    self.observe(str(scope.get("method")), route, status, seconds)
