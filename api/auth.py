"""API keys and projects: keys are stored only as SHA-256 hashes; every key belongs to one project."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db.tables import ApiKeyRow, ProjectRow
from api.errors import AuthenticationFailed
from api.ids import hash_api_key, new_api_key, new_id, now_us

DEFAULT_PROJECT_ID = "proj_default"
DEFAULT_PROJECT_NAME = "default"


@dataclass(frozen=True)
class Principal:
    """Who is calling: every tenant query starts from `project_id`."""

    project_id: str
    project_name: str


async def ensure_project(session: AsyncSession, name: str) -> ProjectRow:
    row = await session.scalar(select(ProjectRow).where(ProjectRow.name == name))
    if row is None:
        project_id = DEFAULT_PROJECT_ID if name == DEFAULT_PROJECT_NAME else new_id("proj_")
        row = ProjectRow(id=project_id, name=name, created_at_us=now_us())
        session.add(row)
        await session.flush()
    return row


async def create_key(session: AsyncSession, project_name: str) -> str:
    """Create a key for the project (created if missing). Returns the secret; only its hash is kept."""
    project = await ensure_project(session, project_name)
    key = new_api_key()
    session.add(
        ApiKeyRow(
            id=new_id("key_"),
            project_id=project.id,
            key_hash=hash_api_key(key),
            key_hint=key[:7],
            created_at_us=now_us(),
        )
    )
    await session.flush()
    return key


async def count_keys(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiKeyRow)) or 0)


_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _redact(key: str) -> str:
    return key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "****"


async def authenticate(
    session: AsyncSession, authorization: str | None, configured_key: str | None
) -> Principal:
    """Resolve `Authorization: Bearer <key>` to a project, or raise AuthenticationFailed (401)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthenticationFailed(_MISSING)
    key = authorization[7:].strip()
    if not key:
        raise AuthenticationFailed(_MISSING)
    if configured_key is not None and hmac.compare_digest(key.encode(), configured_key.encode()):
        return Principal(DEFAULT_PROJECT_ID, DEFAULT_PROJECT_NAME)
    row = await session.execute(
        select(ProjectRow.id, ProjectRow.name)
        .join(ApiKeyRow, ApiKeyRow.project_id == ProjectRow.id)
        .where(ApiKeyRow.key_hash == hash_api_key(key))
    )
    found = row.first()
    if found is None:
        raise AuthenticationFailed(f"Incorrect API key provided: {_redact(key)}.")
    return Principal(found.id, found.name)


class PrincipalCache:
    """Keys that authenticated recently → their project, so the chat path skips the database.

    Only successes are kept, for `ttl` seconds (keys are never revoked in place today; a deleted
    project's key would still pass for that long). Entries are keyed by a hash of the header.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._hits: dict[str, tuple[float, Principal]] = {}

    async def authenticate(
        self,
        sessions: async_sessionmaker[AsyncSession],
        authorization: str | None,
        configured_key: str | None,
    ) -> Principal:
        digest = hash_api_key(authorization or "")
        hit = self._hits.get(digest)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        async with sessions() as session:
            principal = await authenticate(session, authorization, configured_key)
        if len(self._hits) >= self.max_entries:
            self._hits.clear()
        self._hits[digest] = (now + self.ttl, principal)
        return principal
