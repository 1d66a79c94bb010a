"""`Idempotency-Key` on creating POSTs: a retried request returns the first request's object.

The key is unique per project in each table, so of two concurrent requests with one key exactly
one commit lands; the other fails on the constraint and answers with the winner's row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

Row = TypeVar("Row")


async def write_once(
    session: AsyncSession,
    key: str | None,
    write: Callable[[], Awaitable[None]],
    lookup: Callable[[str], Awaitable[Row | None]],
) -> Row | None:
    """Run `write` (it commits). Returns None when it landed, or the row of the request with the
    same key that committed first (this one is rolled back)."""
    try:
        await write()
    except IntegrityError:
        await session.rollback()
        winner = await lookup(key) if key else None
        if winner is None:
            raise  # another constraint failed: not a duplicate request
        return winner
    return None
