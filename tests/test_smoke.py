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


def test_every_public_name_loads_on_first_use() -> None:
    """``poolkit``'s names load lazily (PEP 562): each one in ``__all__`` resolves to the
    object of its home module, ``dir()`` lists them, and a misspelt name is an
    AttributeError, as with any module."""
    import importlib

    import poolkit

    assert poolkit.__all__ == sorted(poolkit.__all__)
    homes = poolkit._HOMES
    assert set(homes) == set(poolkit.__all__)
    for name in poolkit.__all__:
        assert getattr(poolkit, name) is getattr(
            importlib.import_module(f"poolkit.{homes[name]}"), name
        )
        assert name in dir(poolkit)
    with pytest.raises(AttributeError, match="'Pooll'"):
        poolkit.Pooll  # type: ignore[attr-defined]  # noqa: B018
