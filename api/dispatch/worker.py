"""`ftapi worker`: the dispatcher alone (validation and trainers), beside API replicas sharing the
database and storage."""

from __future__ import annotations

import asyncio

from api.catalogue import Catalogue
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
        dispatcher = Dispatcher(
            session_factory(engine),
            store,
            Catalogue.load(settings.models_file),
            settings,
            build_executor(settings),
        )
        sessions = dispatcher.sessions
        # The dispatcher moves jobs on; the sender delivers the webhook events that this queues.
        await asyncio.gather(dispatcher.run(), WebhookSender(sessions, settings).run())
    finally:
        await store.close()
        await engine.dispose()
