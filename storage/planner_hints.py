"""Hints for SQLite's query planner, rendered as plain SQL elsewhere.

SQLite's statistics (``ANALYZE``, ``PRAGMA optimize``) keep, per index, only how many rows
share a value on average; without ``STAT4`` they know no value is rarer than another. The
outbox's states are the extreme case: nearly every row is ``sent``, so statistics say any
state matches about all of them, and the planner scans the whole table in id order
(30-40 ms at 200,000 rows) rather than look the few waiting rows up in ``ix_outbox_due``.
``likelihood(X, p)`` is SQLite's own way to say X holds for a share p of the rows; it
changes no result. With p = 0.001 (about one row in a thousand waits) the plan uses the
index with statistics and without, on an empty outbox as on 200,000 rows; ``unlikely(X)``
(p = 0.0625) is not enough for the claim's OR and scans in both cases (measured).
PostgreSQL keeps the most common values per column and needs no hint."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

RARE = 0.001


class rarely_true(FunctionElement[bool]):
    """``condition``, telling SQLite's planner that few rows meet it."""

    # Untyped: typed Boolean, SQLAlchemy would compare it with 1 on SQLite (which has no
    # boolean type), and SQLite reads a hint only where it stands alone.
    type = NullType()
    inherit_cache = True
    name = "rarely_true"

    def __init__(self, condition: ColumnElement[bool]) -> None:
        super().__init__(condition)


@compiles(rarely_true)
def _plain(element: rarely_true, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


@compiles(rarely_true, "sqlite")
def _sqlite(element: rarely_true, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, {RARE})"
