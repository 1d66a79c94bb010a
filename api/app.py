"""`create_app(settings)`: the FastAPI application, its resources on `app.state`, and its routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.auth import PrincipalCache
from api.catalogue import keep_refreshed, load_catalogue
from api.chat.router import router as chat_router
from api.checkpoints.router import router as checkpoints_router
from api.db.migrate import upgrade
from api.db.session import create_engine, session_factory
from api.dispatch.dispatcher import Dispatcher
from api.dispatch.factory import build_executor
from api.errors import install_error_handlers
from api.files.router import router as files_router
from api.fine_tuning.internal import router as internal_router
from api.fine_tuning.router import router as fine_tuning_router
from api.logging import RequestContextMiddleware
from api.metrics import Metrics
from api.metrics import router as metrics_router
from api.models.resolver import ModelResolver
from api.models.router import router as models_router
from api.ops import router as ops_router
from api.responses.router import router as responses_router
from api.serving import build_serving
from api.settings import Settings
from api.sweeper import run_sweeper
from api.ui.router import install_ui
from api.uploads.router import router as uploads_router
from api.webhooks.router import router as webhooks_router
from api.webhooks.sender import WebhookSender
from storage.factory import build_store


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await asyncio.to_thread(upgrade, settings.resolved_database_url)
        engine = create_engine(settings.resolved_database_url)
        store = build_store(settings.store_config)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.store = store
        app.state.catalogue = await load_catalogue(settings.models_file, store)
        app.state.resolver = ModelResolver(app.state.catalogue, settings.data_dir.resolve() / "models", store)
        app.state.serving = await build_serving(settings, app.state.resolver, store)
        executor = build_executor(settings)
        app.state.executor = executor
        dispatcher = Dispatcher(app.state.sessions, store, app.state.catalogue, settings, executor)
        tasks = [
            asyncio.create_task(run_sweeper(app.state.sessions, store, settings.sweep_interval_seconds)),
            asyncio.create_task(dispatcher.run()),
            asyncio.create_task(WebhookSender(app.state.sessions, settings).run()),
            asyncio.create_task(
                keep_refreshed(app.state.catalogue, store, settings.catalogue_refresh_seconds)
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.serving.aclose()
            await store.close()
            await engine.dispose()

    app = FastAPI(
        title="ftapi",
        version="0.1.0",
        summary="Self-hosted fine-tuning service that speaks the OpenAI API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.state.metrics = Metrics()
    app.state.principals = PrincipalCache()
    app.add_middleware(RequestContextMiddleware, observe=app.state.metrics.observe_request)
    app.include_router(ops_router)
    app.include_router(metrics_router)
    app.include_router(files_router)
    app.include_router(uploads_router)
    app.include_router(fine_tuning_router)
    app.include_router(checkpoints_router)
    app.include_router(models_router)
    app.include_router(chat_router)
    app.include_router(responses_router)
    app.include_router(webhooks_router)
    app.include_router(internal_router)
    install_ui(app)
    app.openapi = lambda: openapi_without_422(app)  # type: ignore[method-assign]
    return app


def openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents a 422 on every route; we never send one (validation errors are 400 envelopes)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
