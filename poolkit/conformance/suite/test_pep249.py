"""PEP 249 behaviour through the pool: what a driver promises must survive the pool."""

from __future__ import annotations

from typing import Any

import pytest

from poolkit.conformance._targets import Target

pytestmark = pytest.mark.anyio


async def test_select_one_round_trip(target: Target, adapter: Any) -> None:
    """A pooled connection runs a statement and returns its row."""
    async with adapter.pool(target, min_size=1, max_size=2) as pool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 41")
            assert [tuple(r) for r in await cur.fetchall()] == [(41,)]


async def test_commit_is_seen_by_another_connection(target: Target, adapter: Any) -> None:
    """A committed row is visible from a second pooled connection."""
    with target.table(f"id {target.dialect.int_pk}, name {target.dialect.text}") as table:
        async with adapter.pool(target, min_size=0, max_size=2) as pool:
            async with pool.connection() as a:
                await a.execute(
                    f"INSERT INTO {table} (id, name) VALUES ({target.q(0)}, {target.q(1)})",
                    (1, "committed"),
                )
                await a.commit()
                async with pool.connection() as b:
                    cur = await b.execute(f"SELECT name FROM {table} WHERE id = 1")
                    assert [tuple(r) for r in await cur.fetchall()] == [("committed",)]
                    await b.rollback()


@pytest.mark.requires("rollback_on_return")
async def test_reset_on_return_rolls_back(target: Target, adapter: Any) -> None:
    """A row inserted without commit is gone once its connection is back in the pool."""
    with target.table(f"id {target.dialect.int_pk}, name {target.dialect.text}") as table:
        async with adapter.pool(target, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                await conn.execute(
                    f"INSERT INTO {table} (id, name) VALUES ({target.q(0)}, {target.q(1)})",
                    (1, "uncommitted"),
                )
            async with pool.connection() as conn:
                cur = await conn.execute(f"SELECT count(*) FROM {table}")
                assert [tuple(r) for r in await cur.fetchall()] == [(0,)]
                await conn.rollback()
        assert target.run(f"SELECT count(*) FROM {table}") == [(0,)]
