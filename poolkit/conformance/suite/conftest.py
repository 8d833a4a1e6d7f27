"""Fixtures of the conformance suite: each check on asyncio and on trio (when installed)."""

from __future__ import annotations

from importlib.util import find_spec

import pytest

_NO_TRIO = pytest.mark.skipif(find_spec("trio") is None, reason="trio is not installed")


@pytest.fixture(params=["asyncio", pytest.param("trio", marks=_NO_TRIO)])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
