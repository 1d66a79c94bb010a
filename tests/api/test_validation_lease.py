"""A worker that fails or dies after claiming a job for validation holds it for one lease (the run
lease, 2 s here), not ten minutes; the lease is renewed while files are read, and a job cancelled
meanwhile stops the reading.

A real `ftapi serve` owns the database and storage (its own dispatcher sleeps: the dispatch interval
is an hour, so it never claims the job). The workers are the real Dispatcher and repository code,
two dispatchers with their own worker ids, run here against that server's SQLite database and store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import openai
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.catalogue import load_catalogue
from api.db.session import create_engine, session_factory
from api.db.tables import FileRow, FineTuningJobRow
from api.dispatch.dispatcher import Dispatcher
from api.dispatch.factory import build_executor
from api.dispatch.validation import ValidationAbandoned, ValidationLease
from api.fine_tuning.repository import claim
from api.settings import Settings
from storage.factory import build_store
from tests.conftest import ADMIN_KEY
from tests.support.data import chat_jsonl
from tests.support.server import RunningServer, run_server

LEASE_SECONDS = 2
ENV = {
    "FTAPI_API_KEY": ADMIN_KEY,
    "FTAPI_DISPATCH_INTERVAL_SECONDS": "3600",
    "FTAPI_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
    "FTAPI_MAX_CONCURRENT_JOBS": "0",  # queued is as far as these jobs go
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("lease"), ENV) as srv:
        yield srv


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)


@pytest.fixture
def settings(server: RunningServer) -> Settings:
    return Settings(data_dir=server.data_dir, run_lease_seconds=LEASE_SECONDS, max_concurrent_jobs=0)


@pytest_asyncio.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.resolved_database_url)
    yield session_factory(engine)
    await engine.dispose()


def new_job(client: openai.OpenAI) -> str:
    fid = client.files.create(file=("train.jsonl", chat_jsonl(12)), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid).id


async def job_row(sessions: async_sessionmaker[AsyncSession], job_id: str) -> FineTuningJobRow:
    async with sessions() as session:
        row = await session.get(FineTuningJobRow, job_id)
        assert row is not None
        return row


async def test_a_worker_that_fails_mid_validation_holds_the_job_for_one_lease_only(
    client: openai.OpenAI, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = new_job(client)
    store = build_store(settings.store_config)
    catalogue = await load_catalogue(settings.models_file, store)
    # The first worker claims the job and fails while reading its file (the blob is gone for a
    # moment): it leaves its claim behind, as a worker killed there does.
    async with sessions() as session:
        row = await session.get(FineTuningJobRow, job_id)
        assert row is not None
        file = await session.get(FileRow, row.training_file)
        assert file is not None
    blob = b"".join([chunk async for chunk in store.open_stream(file.storage_key)])
    await store.delete(file.storage_key)
    failing = Dispatcher(sessions, store, catalogue, settings, build_executor(settings))
    failing.worker_id = "failing-worker:1"
    assert await failing.step()
    held = await job_row(sessions, job_id)
    assert (held.status, held.claimed_by) == ("validating_files", "failing-worker:1")
    assert held.lease_until is not None and held.lease_until <= int(time.time()) + LEASE_SECONDS
    await store.put_bytes(file.storage_key, blob)

    live = Dispatcher(sessions, store, catalogue, settings, build_executor(settings))
    live.worker_id = "live-worker:1"
    assert not await live.step(), "the failed worker's lease was taken before it ran out"
    deadline = time.monotonic() + 30
    while not await live.step():  # the lease runs out within LEASE_SECONDS (whole seconds: +1)
        assert time.monotonic() < deadline, "the job was never taken over"
        await asyncio.sleep(0.2)
    row = await job_row(sessions, job_id)
    assert (row.status, row.claimed_by) == ("queued", None)
    assert client.fine_tuning.jobs.retrieve(job_id).status == "queued"


async def test_the_lease_is_renewed_while_files_are_read_and_a_cancel_stops_the_reading(
    client: openai.OpenAI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = new_job(client)
    async with sessions() as session:
        claimed = await claim(session, "validating_files", "reader:1", LEASE_SECONDS, int(time.time()))
        assert claimed is not None
        first_lease = claimed.lease_until
        lease = ValidationLease(session, job_id, LEASE_SECONDS)
        await lease.keep()  # too early: nothing written
        assert (await job_row(sessions, job_id)).lease_until == first_lease
        await asyncio.sleep(LEASE_SECONDS / 3 + 1.1)  # a third of a lease, and a new whole second
        await lease.keep()
        renewed = (await job_row(sessions, job_id)).lease_until
        assert renewed is not None and first_lease is not None and renewed > first_lease

        client.fine_tuning.jobs.cancel(job_id)
        lease.next_renewal = 0  # due now
        with pytest.raises(ValidationAbandoned):
            await lease.keep()
    assert client.fine_tuning.jobs.retrieve(job_id).status == "cancelled"
