"""`ftapi worker`: the dispatcher alone (validation and trainers), beside API replicas sharing the
database and storage."""

from __future__ import annotations

import asyncio
import contextlib

from api.catalogue import keep_refreshed, load_catalogue
from api.db.session import create_engine, session_factory
from api.dispatch.dispatcher import Dispatcher
from api.dispatch.factory import build_executor
from api.settings import Settings
from api.webhooks.sender import WebhookSender
from storage.factory import build_store


async def run_worker(settings: Settings) -> None:
    engine = create_engine(settings.resolved_database_url)
    store = build_store(settings.store_config)
    try:
        catalogue = await load_catalogue(settings.models_file, store)
        dispatcher = Dispatcher(session_factory(engine), store, catalogue, settings, build_executor(settings))
        refresh = asyncio.create_task(keep_refreshed(catalogue, store, settings.catalogue_refresh_seconds))
        try:
            # The dispatcher moves jobs on; the sender delivers the webhook events that this queues.
            await asyncio.gather(dispatcher.run(), WebhookSender(dispatcher.sessions, settings).run())
        finally:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh
    finally:
        await store.close()
        await engine.dispose()
