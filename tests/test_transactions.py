"""Transaction blocks, nested ones as savepoints, on every backend."""

from __future__ import annotations

import pytest

from tests.backends import Backend

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


async def rows(backend: Backend, table: str) -> list[int]:
    return sorted(r[0] for r in backend.run(f"SELECT id FROM {table}"))


async def test_nested_success_commits_both_levels(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=1) as pool, pool.transaction() as conn:
        await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (1,))
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (2,))
    assert await rows(backend, table) == [1, 2]


async def test_inner_failure_rolls_back_only_the_inner_block(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=1) as pool:
        async with pool.transaction() as conn:
            await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (1,))
            with pytest.raises(Boom):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (2,))
                    raise Boom
            await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (3,))
    assert await rows(backend, table) == [1, 3]


async def test_outer_failure_rolls_back_the_inner_block_too(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=1) as pool:
        with pytest.raises(Boom):
            async with pool.transaction() as conn:
                await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (1,))
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (2,))
                raise Boom
        assert await rows(backend, table) == []
        async with pool.transaction() as conn:  # the connection is clean for the next user
            await conn.execute(f"INSERT INTO {table} (id) VALUES ({q(0)})", (4,))
    assert await rows(backend, table) == [4]


async def test_three_levels_and_a_new_block_after_the_first(backend: Backend, table: str) -> None:
    q = backend.q
    insert = f"INSERT INTO {table} (id) VALUES ({q(0)})"
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        async with conn.transaction():
            async with conn.transaction():
                await conn.execute(insert, (1,))
                with pytest.raises(Boom):
                    async with conn.transaction():
                        await conn.execute(insert, (2,))
                        raise Boom
        async with conn.transaction():  # depth was restored: an outermost block again
            await conn.execute(insert, (3,))
        await conn.rollback()  # nothing open: the block above committed
    assert await rows(backend, table) == [1, 3]
