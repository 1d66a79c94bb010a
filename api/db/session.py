"""Engines and sessions. One async engine per process; URLs accept plain `sqlite://` / `postgresql://`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def driver_url(url: str, *, asynchronous: bool) -> str:
    """Pick our drivers: aiosqlite/sqlite3 for SQLite, psycopg 3 (sync and async) for PostgreSQL."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return u.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite").render_as_string(False)
    if backend == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(False)
    raise ValueError(f"unsupported database backend: {backend}")


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    # WAL + a busy timeout let `ftapi keys create` write while the server runs.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(driver_url(url, asynchronous=True), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit when the handler returns, roll back when it raises."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
