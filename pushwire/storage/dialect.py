"""The one place that knows how SQLite and MySQL/MariaDB differ.

Column types with per-dialect variants, engine options, and statements whose SQL differs
(insert-or-ignore). Everything else in the project writes dialect-neutral SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Dialect


def name_type(length: int) -> sa.types.TypeEngine[str]:
    """Identifiers (channel names, user ids, key ids): ASCII with binary collation on MySQL.

    MySQL's default collations are case-insensitive, which would merge `Room` and `room`;
    ASCII also keeps composite index keys short.
    """
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def exact_text(length: int) -> sa.types.TypeEngine[str]:
    """Free text compared byte for byte (idempotency keys): binary collation on MySQL."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def big_text() -> sa.types.TypeEngine[str]:
    """Payloads may exceed MySQL TEXT's 64 KiB once an app raises its limit."""
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def big_blob() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes with microseconds on every dialect.

    MySQL's DATETIME drops fractions unless fsp is given, and neither dialect keeps the zone.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use utcnow()")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def engine_options(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        # One writer at a time; a busy timeout queues writers instead of failing them.
        return {"connect_args": {"timeout": 30}}
    return {
        "pool_size": 20,
        "max_overflow": 20,
        # No pre-ping: it costs a round trip per checkout on the push path; a connection found
        # dead raises once (503, nothing stored) and SQLAlchemy then invalidates the pool.
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 3},
        # READ COMMITTED: offset assignment relies on row locks, not snapshot reads.
        "isolation_level": "READ COMMITTED",
    }


def insert_ignore(table: sa.Table, dialect_name: str) -> Any:
    """INSERT that silently keeps the existing row on a unique-key conflict."""
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return mysql.insert(table).prefix_with("IGNORE")


def upsert_add(table: sa.Table, rows: list[dict[str, Any]], key: list[str], column: str, dialect_name: str) -> Any:
    """Multi-row INSERT that, on a key conflict, adds the row's `column` value to the stored one.

    One statement bumps any number of counters (channel offsets) under exclusive row locks,
    instead of an UPDATE/INSERT/UPDATE per row.
    """
    if dialect_name == "sqlite":
        lite = sqlite.insert(table).values(rows)
        return lite.on_conflict_do_update(index_elements=key, set_={column: table.c[column] + lite.excluded[column]})
    my = mysql.insert(table).values(rows)
    return my.on_duplicate_key_update({column: table.c[column] + my.inserted[column]})


def on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def table_of(model: type[Any]) -> sa.Table:
    """A mapped class's Table (typed as such: `__table__` is declared as a FromClause)."""
    return cast(sa.Table, model.__table__)


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE/INSERT (execute() returns a CursorResult for those)."""
    return int(cast("sa.CursorResult[Any]", result).rowcount or 0)
