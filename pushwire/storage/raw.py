"""Hot-path statements on the driver's own connection, past SQLAlchemy's execution layer.

A publish transaction writes a few multi-row statements. Through SQLAlchemy each costs its
execution context, per-row bind processing and a greenlet switch per await: ~40 % of a batch
push's CPU, more than the driver and the round trip. Here the SQL text is rendered once per
shape (table, columns, row count) in the driver's placeholder style, and the values go to the
driver as they are: sqlite3 binds them natively; for MySQL the statement is rendered here with
hex literals (asyncmy's own escaping costs ~20 µs per blob and ~6 µs per datetime, more than
the rest of a message's publish; `X'…'` is one C call and immune to the server's sql_mode). The transaction
itself (checkout, BEGIN, COMMIT, rollback on error) stays SQLAlchemy's: the statements run on
the connection it holds, inside its transaction.

Values must already be in the stored form (`stored_time` for datetimes): there is no type
processing on this path.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncmy.errors
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

# What the drivers raise: SQLAlchemy does not wrap errors of statements it did not run.
DRIVER_ERRORS: tuple[type[Exception], ...] = (asyncmy.errors.Error, sqlite3.Error)

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own storage format for SQLite DateTime


class SQLLiteral(str):
    """SQL text that goes into a MySQL statement as it is (a value rendered once for many rows)."""

    __slots__ = ()


def stored_time(dialect: Dialect, value: dt.datetime) -> Any:
    """A UTC datetime as UTCDateTime stores it: SQLAlchemy's text on SQLite, a DATETIME(6)
    literal on MySQL (rendered once: strftime costs ~3 µs, and every row of a transaction has it)."""
    naive = value.astimezone(dt.UTC).replace(tzinfo=None)
    if dialect.name == "sqlite":
        return naive.strftime(_SQLITE_TIME)
    return SQLLiteral(naive.strftime("'%Y-%m-%d %H:%M:%S.%f'"))


def _mark(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


@functools.lru_cache(maxsize=256)
def insert_sql(
    dialect: Dialect, table: str, columns: tuple[str, ...], rows: int, returning: tuple[str, ...] = ()
) -> str:
    """`INSERT INTO table (columns) VALUES (…), (…) [RETURNING …]` for `rows` rows."""
    q = dialect.identifier_preparer.quote
    row = "(" + ", ".join([_mark(dialect)] * len(columns)) + ")"
    sql = f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES {', '.join([row] * rows)}"
    if returning:
        sql += f" RETURNING {', '.join(q(c) for c in returning)}"
    return sql


@functools.lru_cache(maxsize=256)
def upsert_sql(
    dialect: Dialect,
    table: str,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    rows: int,
    add: tuple[str, ...],
    returning: tuple[str, ...] = (),
) -> str:
    """A multi-row insert that, on a `key` conflict, adds the row's `add` columns to the stored ones
    (the channel offset bump); RETURNING answers each row as stored (MariaDB ≥ 10.5, SQLite ≥ 3.35)."""
    q = dialect.identifier_preparer.quote
    sql = insert_sql(dialect, table, columns, rows)
    if dialect.name == "sqlite":
        sets = ", ".join(f"{q(c)} = {q(table)}.{q(c)} + excluded.{q(c)}" for c in add)
        sql += f" ON CONFLICT ({', '.join(q(k) for k in key)}) DO UPDATE SET {sets}"
    else:
        sql += " ON DUPLICATE KEY UPDATE " + ", ".join(f"{q(c)} = {q(c)} + VALUES({q(c)})" for c in add)
    if returning:
        sql += f" RETURNING {', '.join(q(c) for c in returning)}"
    return sql


@functools.lru_cache(maxsize=256)
def select_in_sql(dialect: Dialect, table: str, columns: tuple[str, ...], where: str, in_column: str, n: int) -> str:
    """`SELECT columns FROM table WHERE where = ? AND in_column IN (?, …)` with n values."""
    q = dialect.identifier_preparer.quote
    mark = _mark(dialect)
    marks = ", ".join([mark] * n)
    return (
        f"SELECT {', '.join(q(c) for c in columns)} FROM {q(table)} "
        f"WHERE {q(where)} = {mark} AND {q(in_column)} IN ({marks})"
    )


def _mysql_literal(value: Any) -> str:
    kind = type(value)
    literal: str
    if kind is str:
        # A binary string literal: the column's charset takes its bytes as they are (UTF-8 here).
        literal = "X'" + value.encode().hex() + "'"
        return literal
    if kind is int:
        return str(value)
    if kind is SQLLiteral:
        return str(value)
    if value is None:
        return "NULL"
    if kind is bytes:
        literal = "X'" + value.hex() + "'"
        return literal
    if kind is dt.datetime:
        literal = value.strftime("'%Y-%m-%d %H:%M:%S.%f'")
        return literal
    raise TypeError(f"no MySQL literal for {kind.__name__}")


def render_mysql(sql: str, args: Sequence[Any]) -> str:
    """`sql` (with %s marks and no other %) with each mark replaced by its value's literal."""
    return sql % tuple(map(_mysql_literal, args))


async def execute(conn: AsyncConnection, sql: str, args: Sequence[Any], *, fetch: bool = False) -> list[Any]:
    """Run `sql` with positional `args` on the driver connection under `conn`'s transaction;
    the rows when `fetch`. Driver errors propagate as the driver raised them (DRIVER_ERRORS)."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "sqlite":
        # aiosqlite: one hop to its thread per call; sqlite3 begins the transaction implicitly.
        cursor = await driver.execute(sql, args)
        try:
            return list(await cursor.fetchall()) if fetch else []
        finally:
            await cursor.close()
    cursor = driver.cursor()  # asyncmy: buffered, its rows are read with the execute
    try:
        await cursor.execute(render_mysql(sql, args))
        return list(await cursor.fetchall()) if fetch else []
    finally:
        await cursor.close()


def flat(columns: tuple[str, ...], rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Positional args of a multi-row statement, row after row."""
    return [row[c] for row in rows for c in columns]
