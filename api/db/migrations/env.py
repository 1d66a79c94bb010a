"""Alembic environment: runs migrations with a synchronous engine built from the configured URL."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from api.db import tables  # noqa: F401  (registers every table on the metadata)
from api.db.base import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK = 0x66746170  # "ftap": any constant all ftapi processes share


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "api.db.migrate sets sqlalchemy.url"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas starting together: one migrates, the others wait here (until its commit),
                # then read the new version and find nothing to do.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
