"""Schema migrations through advanced-alchemy's Alembic commands.

Alembic's env runs its own event loop, so these functions are synchronous: call them from
the CLI directly, or through `asyncio.to_thread` from async code.
"""

from __future__ import annotations

import io

from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.config import AlembicAsyncConfig, SQLAlchemyAsyncConfig
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Inside the installed package, or the checkout's top-level folder (pushwire.paths).
from pushwire.paths import migrations_dir


def _commands(url: str, stdout: io.StringIO | None = None) -> AlembicCommands:
    config = SQLAlchemyAsyncConfig(
        # NullPool: Alembic runs in its own event loop, so no pooled connection may outlive it.
        engine_instance=create_async_engine(url, poolclass=NullPool),
        alembic_config=AlembicAsyncConfig(
            script_location=str(migrations_dir()),
            version_table_name="alembic_version",
            render_as_batch=True,
        ),
    )
    return AlembicCommands(sqlalchemy_config=config)


def upgrade(url: str, revision: str = "head") -> None:
    _commands(url).upgrade(revision)


def downgrade(url: str, revision: str) -> None:
    _commands(url).downgrade(revision)


def revision(url: str, message: str) -> None:
    """Autogenerate a new revision from the models (developers only)."""
    _commands(url).revision(message=message, autogenerate=True)
