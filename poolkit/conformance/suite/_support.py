"""Small helpers the checks share."""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

__all__ = ["not_supported", "rows"]


def not_supported(why: str) -> NoReturn:
    """End a check as "not supported" here (the target cannot do what the check needs)."""
    pytest.xfail(f"not supported: {why}")


async def rows(cursor: Any) -> list[tuple[Any, ...]]:
    """All remaining rows of a cursor, as plain tuples."""
    return [tuple(r) for r in await cursor.fetchall()]
