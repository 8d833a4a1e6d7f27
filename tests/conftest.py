"""Shared fixtures: every async test runs on asyncio and trio; ``backend`` spans real databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import Backend, resolve, sqlite_backend

ALL_BACKENDS = ("sqlite", "postgres", "mysql")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=[pytest.mark.sqlite]),
        pytest.param("fake", marks=[pytest.mark.fake]),
        pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.real]),
        pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.real]),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each database the suite can reach (sqlite3 and the fake driver always)."""
    resolved = resolve(str(request.param), tmp_path)
    yield resolved
    if resolved.name == "fake":
        resolved.driver.close()


@pytest.fixture(
    params=[
        pytest.param("fake", marks=[pytest.mark.fake]),
        pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.real]),
        pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.real]),
    ]
)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Databases with sessions that can be killed and statements that can be cancelled."""
    resolved = resolve(str(request.param), tmp_path)
    yield resolved
    if resolved.name == "fake":
        resolved.driver.close()


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    return sqlite_backend(tmp_path)


@pytest.fixture
def table(backend: Backend) -> Iterator[str]:
    with backend.table() as name:
        yield name


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Every pool a test opens must have joined its worker threads by the end of the test."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("poolkit-") and t.is_alive()
    ]
    # Helper threads (driver cancels) may still be finishing; only workers must be gone.
    workers = [n for n in leaked if not n.endswith(("-cancel", "-join"))]
    assert not workers, f"worker threads outlived their pool: {workers}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    for item in items:
        if "real" not in item.keywords:
            item.add_marker(pytest.mark.fake)
