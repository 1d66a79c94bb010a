"""Operational endpoints (no auth): liveness and readiness."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.dispatch.executor import ExecutorUnavailable, ReadinessCheck

router = APIRouter(tags=["ops"])
log = structlog.get_logger()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: the database, the blob store and (where trainers run) the executor are reachable;
    the engines' state is shown."""
    checks: dict[str, str] = {}
    try:
        async with request.app.state.sessions() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    try:
        await request.app.state.store.exists("ready-probe")
        checks["storage"] = "ok"
    except Exception:
        checks["storage"] = "unavailable"
    executor = getattr(request.app.state, "executor", None)
    if isinstance(executor, ReadinessCheck) and request.app.state.settings.max_concurrent_jobs > 0:
        try:
            await asyncio.to_thread(executor.ready)
            checks["executor"] = "ok"
        except ExecutorUnavailable as exc:
            log.warning("ready.executor_unavailable", reason=str(exc))
            checks["executor"] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    # Engines are reported, not required: files and jobs work while a vLLM server starts.
    engines = {
        name: "ok" if up else "starting" for name, up in (await request.app.state.serving.ready()).items()
    }
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks, "engines": engines},
        status_code=200 if ok else 503,
    )
