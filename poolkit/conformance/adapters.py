"""Pool adapters: how the conformance suite drives a pool, ours or anyone's.

An adapter opens a pool over a :class:`~poolkit.conformance._targets.Target` and hands out
connections with an async, PEP 249-shaped surface: ``await conn.execute(sql, params)``
returning a cursor with ``await fetchone()/fetchmany()/fetchall()``, ``description``,
``rowcount``, ``arraysize``; ``await conn.commit()/rollback()``; ``conn.cursor()``. poolkit's
and psycopg 3's connections already look like that, so their adapters are thin.

Each adapter declares what it supports (SQLAlchemy's requirements idea). A check that needs
something an adapter lacks is run as a strict expected failure and reported as "not
supported"; if it passes anyway, the run fails, so the declarations stay true.

Write your own: a class with the attributes of :class:`PoolAdapter`, and point
``--pool-under-test module:factory`` at a callable returning it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, runtime_checkable

from ._targets import Masked, MaskedDict, Target

__all__ = [
    "CAPABILITIES",
    "PoolAdapter",
    "PoolHandle",
    "PoolkitAdapter",
    "PsycopgPoolAdapter",
]

#: What a check may require of an adapter (and, with ``backend:`` rules, of a target).
CAPABILITIES: dict[str, str] = {
    "trio": "runs under trio (not only asyncio)",
    "rollback_on_return": "a connection returned in a transaction is rolled back",
    "acquire_timeout": "connection(timeout=...) raises the adapter's timeout error",
    "query_timeout": "a pool option query_timeout=<s> ends a call past it with a TimeoutError",
    "restart_recovery": "after every session is lost at once, at most one call fails",
    "restart_burst": "after every session is lost at once, a burst of concurrent callers "
    "loses at most one call",
    "prompt_recovery": "once the server accepts connections again, a caller waiting for a "
    "connection is served within a second, however far the reconnect back-off had grown",
    "cancel_on_caller_cancel": "a cancelled caller's statement stops on the server",
    "bounded_close": "close() ends in bounded time on a frozen server and releases every "
    "caller blocked in a call",
    "max_waiting": "a bound on waiters fails fast with a typed error",
    "pep249_cursor": "cursors with arraysize/fetchmany/executemany as PEP 249 says",
}


class PoolHandle(Protocol):
    """An open pool, as the checks use it."""

    max_size: int
    timeout_error: type[BaseException]

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]: ...
    async def close(self) -> None: ...


@runtime_checkable
class PoolAdapter(Protocol):
    """Opens pools of one implementation over targets."""

    name: str
    capabilities: frozenset[str]

    def supports(self, backend: str, driver: str) -> str | None:
        """None when this backend and driver can be driven, else why not."""
        ...

    def pool(self, target: Target, **options: Any) -> AbstractAsyncContextManager[PoolHandle]:
        """An open pool (``min_size``, ``max_size``, ``timeout``, ``args``/``kwargs``)."""
        ...

    # Optional: ``lacks(backend, driver) -> frozenset[str]``, the declared capabilities the
    # pool lacks on that backend and driver (their checks are then "not supported" there).


class _PoolkitHandle:
    def __init__(self, pool: Any, max_size: int) -> None:
        import poolkit

        self._pool = pool
        self.max_size = max_size
        self.timeout_error: type[BaseException] = poolkit.PoolTimeout
        self.native = pool

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        if timeout is None:
            return self._pool.connection()  # type: ignore[no-any-return]
        return self._pool.connection(timeout=timeout)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._pool.close()


class PoolkitAdapter:
    """The reference pool, :class:`poolkit.Pool`, over any PEP 249 driver."""

    name = "poolkit"
    capabilities = frozenset(
        {
            "trio",
            "rollback_on_return",
            "acquire_timeout",
            "query_timeout",
            "cancel_on_caller_cancel",
            "max_waiting",
            "pep249_cursor",
            "restart_recovery",
            "restart_burst",
            "prompt_recovery",
            "bounded_close",
        }
    )

    def supports(self, backend: str, driver: str) -> str | None:
        if driver == "psycopg":
            return "poolkit runs blocking PEP 249 drivers; psycopg 3 is driven by psycopg_pool"
        return None

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        import poolkit

        args = Masked(options.pop("args", target.args))
        kwargs = MaskedDict(options.pop("kwargs", target.kwargs))
        pool = poolkit.Pool(
            target.module, *args, connect_kwargs=kwargs, secrets=Masked(target.secrets), **options
        )
        async with pool:
            yield _PoolkitHandle(pool, pool.stats().max_size)


class _PsycopgHandle:
    def __init__(self, pool: Any, max_size: int) -> None:
        import psycopg_pool

        self._pool = pool
        self.max_size = max_size
        self.timeout_error: type[BaseException] = psycopg_pool.PoolTimeout
        self.native = pool

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        return self._pool.connection(timeout=timeout)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._pool.close()


class PsycopgPoolAdapter:
    """psycopg_pool's ``AsyncConnectionPool`` over psycopg 3: a pool that is not ours.

    Declared differences: asyncio only; its ``connection()`` block commits an open transaction
    when the block ends without error (so "rolled back on return" does not apply); no per-call
    timeout. And a caller cancelled by an anyio cancel scope does not stop its statement on the
    server: psycopg 3.3 catches the first cancellation, awaits its own cancel request, is
    cancelled again there (anyio re-delivers), and closes the connection without sending the
    cancel; the statement runs on, and the pool opens a new session meanwhile (plain
    ``task.cancel()`` and ``asyncio.timeout`` do stop it).
    """

    name = "psycopg_pool"
    capabilities = frozenset({"acquire_timeout", "max_waiting", "pep249_cursor"})

    def supports(self, backend: str, driver: str) -> str | None:
        if driver != "psycopg":
            return "psycopg_pool drives psycopg 3 connections to PostgreSQL only"
        try:
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            return f"psycopg_pool is not installed ({exc})"
        return None

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        import psycopg_pool

        args = Masked(options.pop("args", target.args))
        kwargs = MaskedDict(options.pop("kwargs", target.kwargs))
        if target.backend == "postgres-pgbouncer":
            # PgBouncer 1.18 cannot carry prepared statements in transaction pooling mode;
            # psycopg 3 prepares a query run 5 times unless told not to
            kwargs.setdefault("prepare_threshold", None)
        max_waiting = options.pop("max_waiting", 0)
        pool = psycopg_pool.AsyncConnectionPool(
            args[0] if args else "",
            kwargs=kwargs,
            min_size=options.pop("min_size", 1),
            max_size=options.pop("max_size", 10),
            timeout=options.pop("timeout", 30.0),
            max_waiting=max_waiting,
            open=False,
        )
        if options:
            raise TypeError(f"psycopg_pool adapter: unsupported options {sorted(options)}")
        await pool.open(wait=True, timeout=30.0)
        try:
            yield _PsycopgHandle(pool, pool.max_size)
        finally:
            await pool.close()


#: The adapters the suite runs when none is named.
DEFAULT_ADAPTERS: tuple[PoolAdapter, ...] = (PoolkitAdapter(), PsycopgPoolAdapter())
