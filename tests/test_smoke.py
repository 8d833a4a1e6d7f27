from __future__ import annotations

import pytest

from tests.backends import Backend

pytestmark = pytest.mark.anyio


async def test_roundtrip(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=2) as pool:
        async with pool.transaction() as conn:
            await conn.execute(f"INSERT INTO {table} (id, name) VALUES ({q(0)}, {q(1)})", (1, "a"))
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT id, name FROM {table}")
            assert await cur.fetchall() == [(1, "a")]
            assert cur.description is not None and cur.description[0][0] == "id"
