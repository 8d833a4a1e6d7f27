"""The cursor's row buffer against the driver's own cursor: any mix of fetches, any prefetch."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import poolkit

Fetch = tuple[str, int]  # ("one", 0) | ("many", size) | ("all", 0)

fetches = st.lists(
    st.one_of(
        st.just(("one", 0)),
        st.tuples(st.just("many"), st.integers(1, 7)),
        st.just(("all", 0)),
    ),
    max_size=12,
)


def plain(cur: sqlite3.Cursor, op: Fetch) -> Any:
    kind, size = op
    if kind == "one":
        return cur.fetchone()
    return cur.fetchmany(size) if kind == "many" else cur.fetchall()


async def pooled(cur: poolkit.AsyncCursor, op: Fetch) -> Any:
    kind, size = op
    if kind == "one":
        return await cur.fetchone()
    return await cur.fetchmany(size) if kind == "many" else await cur.fetchall()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.integers(0, 12), prefetch=st.integers(0, 5), ops=fetches)
def test_any_fetch_sequence_matches_the_driver(
    tmp_path: Path, rows: int, prefetch: int, ops: list[Fetch]
) -> None:
    path = str(tmp_path / "buffer.db")
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT i, 'row ' || i FROM n WHERE i <= ?"
    )
    params = (max(rows, 1), rows)
    raw = sqlite3.connect(path)
    try:
        expected = [plain(cur, op) for cur in [raw.execute(sql, params)] for op in ops]
    finally:
        raw.close()

    async def main() -> list[Any]:
        async with poolkit.Pool(sqlite3, path, max_size=1, prefetch=prefetch) as pool:
            async with pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return [await pooled(cur, op) for op in ops]

    assert anyio.run(main) == expected
