"""The one place that knows how SQLite and MySQL/MariaDB differ.

Column types with per-dialect variants, engine options, and statements whose SQL differs
(insert-or-ignore). Everything else in the project writes dialect-neutral SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
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
        # Writers of this process queue on Database's write lock; the busy timeout covers the
        # others (CLI commands, a second process) instead of failing them.
        return {"connect_args": {"timeout": 30}}
    return {
        "pool_size": 20,
        "max_overflow": 20,
        # No pre-ping: it costs a round trip per checkout on the push path; a connection found
        # dead raises once (503, nothing stored) and SQLAlchemy then invalidates the pool.
        "pool_recycle": 1800,
        # No ROLLBACK when a connection goes back to the pool: SQLAlchemy sent one after every
        # COMMIT (a round trip per transaction). A Connection closed inside a transaction (its
        # block raised, or a read autobegan one) rolls it back itself before release.
        "pool_reset_on_return": None,
        "connect_args": {"connect_timeout": 3},
        # READ COMMITTED: offset assignment relies on row locks, not snapshot reads.
        "isolation_level": "READ COMMITTED",
    }


def insert_ignore(table: sa.Table, dialect_name: str) -> sa.Insert:
    """INSERT that silently keeps the existing row on a unique-key conflict.

    A standard Insert with per-dialect prefixes, not the dialects' own insert constructs:
    SQLAlchemy caches the compiled form of this one, and recompiles those on every execution.
    """
    del dialect_name  # the prefixes pick the dialect at compile time
    ignore = sa.insert(table).prefix_with("OR IGNORE", dialect="sqlite")
    return ignore.prefix_with("IGNORE", dialect="mysql").prefix_with("IGNORE", dialect="mariadb")


@functools.lru_cache(maxsize=512)
def upsert(
    dialect: Dialect,
    table: sa.Table,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    rows: int,
    *,
    add: tuple[str, ...] = (),
    assign: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> sa.Executable:
    """A multi-row INSERT of `rows` rows (bind `<column>_<i>` for row i) that, on a `key` conflict,
    adds the row's `add` columns to the stored ones and overwrites its `assign` columns; with
    `returning`, it answers those columns of each row as stored (MariaDB ≥ 10.5, SQLite ≥ 3.35).

    Text built once per shape: the dialects' upsert constructs are recompiled on every execution
    (SQLAlchemy has no cache key for them), which costs more than the round trip. One statement
    bumps any number of counters (channel offsets) under exclusive row locks, rows in the given order.
    """
    q = dialect.identifier_preparer.quote
    name = q(table.name)
    values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")" for i in range(rows))
    if dialect.name == "sqlite":
        sets = [f"{q(c)} = {name}.{q(c)} + excluded.{q(c)}" for c in add]
        sets += [f"{q(c)} = excluded.{q(c)}" for c in assign]
        conflict = f"ON CONFLICT ({', '.join(q(k) for k in key)}) DO UPDATE SET {', '.join(sets)}"
    else:
        sets = [f"{q(c)} = {q(c)} + VALUES({q(c)})" for c in add]
        sets += [f"{q(c)} = VALUES({q(c)})" for c in assign]
        conflict = f"ON DUPLICATE KEY UPDATE {', '.join(sets)}"
    sql = f"INSERT INTO {name} ({', '.join(q(c) for c in columns)}) VALUES {values} {conflict}"
    if returning:
        sql += f" RETURNING {', '.join(q(c) for c in returning)}"
    binds = [sa.bindparam(f"{c}_{i}", type_=table.c[c].type) for i in range(rows) for c in columns]
    statement = sa.text(sql).bindparams(*binds)
    return statement.columns(*(table.c[c] for c in returning)) if returning else statement


def upsert_params(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The bind values of `upsert` for these rows."""
    return {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}


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
