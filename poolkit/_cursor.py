"""``AsyncCursor``: PEP 249's cursor, awaitable, with results fetched in the same trip.

``execute`` runs the statement and fetches up to ``prefetch`` rows on the worker thread in
one go, so the common "execute, then fetch" costs one loop -> thread -> loop trip. Fetches
are served from that buffer and go back to the driver only for more rows. ``description``,
``rowcount`` and ``lastrowid`` are plain attributes, as in PEP 249. When there is no result
set, fetches go to the driver so that it raises its own error.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._connection import DEFAULT
from ._link import CursorBox, Link, Snapshot
from ._rows import Description, Row

if TYPE_CHECKING:
    from ._connection import AsyncConnection

__all__ = ["AsyncCursor"]


class AsyncCursor:
    """A DB-API cursor whose blocking calls run on the connection's worker thread."""

    def __init__(self, connection: AsyncConnection, box: CursorBox) -> None:
        self._connection = connection
        self._box = box
        # Buffered rows are _rows[_pos:]: a list handed over whole by fetchall(), no copy.
        self._rows: list[Row] = []
        self._pos = 0
        self._exhausted = True
        self._closed = False
        self._unread = False  # counted in PooledConn.unread: results wait in the driver
        # A cursor made with driver arguments (a named/server-side or holdable cursor, a
        # custom class) may hold server resources: open, it always calls for a reset.
        self._special = bool(box.args or box.kwargs)
        self._arraysize: int | None = None
        self.description: Description | None = None
        self.rowcount: int = -1
        self.lastrowid: Any = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._rows) - self._pos} rows buffered"
        return f"<AsyncCursor on connection #{self._connection.id} {state}>"

    @property
    def connection(self) -> AsyncConnection:
        return self._connection

    @property
    def arraysize(self) -> int:
        """Rows per ``fetchmany()`` by default (PEP 249); 1 until set."""
        return 1 if self._arraysize is None else self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"arraysize must be a positive int, got {value!r}")
        self._arraysize = value

    @property
    def closed(self) -> bool:
        return self._closed

    def _take(self, snap: Snapshot) -> Any:
        self.description = snap.description
        self.rowcount = snap.rowcount
        self.lastrowid = snap.lastrowid
        self._rows = snap.rows
        self._pos = 0
        self._exhausted = snap.exhausted
        self._count_unread()
        return snap.value

    def _count_unread(self) -> None:
        """Keep PooledConn.unread right: a connection returned with results still pending in
        the driver (they may hold locks, e.g. sqlite3) gets a reset trip that closes them."""
        unread = not self._closed and (
            self._special or not (self._exhausted or self.description is None)
        )
        if unread != self._unread and not self._connection.closed:
            self._unread = unread
            self._connection._conn.unread += 1 if unread else -1

    def __del__(self) -> None:
        # Runs where the last reference drops (the loop thread). No thread wake-up: the
        # raw cursor is closed by the worker at the start of its next job, or by the reset.
        # `unread` is not decremented: the raw cursor is still open until then, so a return
        # of the connection before that must still reset it.
        if not self._closed:
            self._connection._conn.link.dead.append(self._box)

    def _drop_rows(self) -> None:
        self._rows = []
        self._pos = 0

    def _buffered(self) -> bool:
        """Whether fetches may be answered locally (a result set, cursor not closed)."""
        self._connection._check_usable()
        return not self._closed and self.description is not None

    # ----- statements ------------------------------------------------------------------

    async def execute(
        self, sql: Any, params: Any = None, *, timeout: float | None = DEFAULT
    ) -> AsyncCursor:
        """Run one statement; returns the cursor itself, so calls can be chained."""
        prefetch = self._connection._pool._prefetch
        args = (self._box, sql, params, prefetch, self._arraysize)
        self._take(await self._run(Link.execute, args, timeout, retry=True))
        return self

    async def executemany(
        self, sql: Any, seq_of_params: Sequence[Any], *, timeout: float | None = DEFAULT
    ) -> AsyncCursor:
        args = (self._box, sql, seq_of_params)
        self._take(await self._run(Link.executemany, args, timeout, retry=True))
        return self

    async def callproc(
        self, procname: str, params: Sequence[Any] | None = None, *, timeout: float | None = DEFAULT
    ) -> Any:
        """Call a stored procedure; returns what the driver returns (the parameters)."""
        prefetch = self._connection._pool._prefetch
        args = (self._box, procname, params, prefetch)
        return self._take(await self._run(Link.callproc, args, timeout))

    async def nextset(self, *, timeout: float | None = DEFAULT) -> bool | None:
        prefetch = self._connection._pool._prefetch
        result: bool | None = self._take(
            await self._run(Link.nextset, (self._box, prefetch), timeout)
        )
        return result

    async def _run(
        self, fn: Any, args: tuple[Any, ...], timeout: float | None, retry: bool = False
    ) -> Snapshot:
        """A call that replaces the cursor's result; if it fails, the old result is gone too
        (as with the driver's own cursor), so no stale rows are served afterwards.

        ``retry``: a statement (``args[0]`` the box) that may run once more on another
        connection if it finds its own lost (``Pool(retry_lost=...)``)."""
        try:
            snap: Snapshot = await self._connection._call(fn, args, timeout)
            return snap
        except BaseException as exc:
            self.description = None
            self.rowcount = -1
            self._drop_rows()
            self._exhausted = True
            self._count_unread()
            if not (retry and await self._connection._fresh_after(exc)):
                raise
        # The raw cursor in the old box belongs to the lost connection (closed with it).
        self._box = CursorBox(self._box.args, self._box.kwargs)
        return await self._run(fn, (self._box, *args[1:]), timeout)

    # ----- fetching --------------------------------------------------------------------

    async def fetchone(self, *, timeout: float | None = DEFAULT) -> Row | None:
        if self._buffered():
            if self._pos == len(self._rows):
                if self._exhausted:
                    return None
                size = max(self.arraysize, self._connection._pool._prefetch)
                if not await self._fetch(size, timeout):
                    return None
            row = self._rows[self._pos]
            self._pos += 1
            return row
        fetched: Row | None = await self._connection._call(Link.fetchone, (self._box,), timeout)
        return fetched

    async def fetchmany(
        self, size: int | None = None, *, timeout: float | None = DEFAULT
    ) -> list[Row]:
        if size is None:
            size = self.arraysize
        if self._buffered():
            have = len(self._rows) - self._pos
            if have < size and not self._exhausted:
                await self._fetch(max(size - have, self._connection._pool._prefetch), timeout)
            start = self._pos
            self._pos = min(start + size, len(self._rows))
            return self._rows[start : self._pos]
        rows: list[Row] = await self._connection._call(Link.fetch, (self._box, size), timeout)
        return rows

    async def fetchall(self, *, timeout: float | None = DEFAULT) -> list[Row]:
        if self._buffered():
            if not self._exhausted:
                await self._fetch(None, timeout)
            rows = self._rows if self._pos == 0 else self._rows[self._pos :]
            self._drop_rows()
            return rows
        result: list[Row] = await self._connection._call(Link.fetch, (self._box, None), timeout)
        return result

    async def _fetch(self, size: int | None, timeout: float | None) -> list[Row]:
        rows: list[Row] = await self._connection._call(Link.fetch, (self._box, size), timeout)
        # A new list, never extended in place: the buffer may be the driver's own list.
        left = self._rows[self._pos :] if self._pos else self._rows
        self._rows = left + rows if left else rows
        self._pos = 0
        if size is None or len(rows) < size:
            self._exhausted = True
            self._count_unread()
        return rows

    def __aiter__(self) -> AsyncCursor:
        return self

    async def __anext__(self) -> Row:
        row = await self.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    # ----- life ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the driver's cursor on its thread. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._drop_rows()
        self._count_unread()
        if not self._connection.closed:
            await self._connection._call(Link.close_cursor, (self._box,), DEFAULT)

    async def __aenter__(self) -> AsyncCursor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """Accepted and ignored, as PEP 249 allows."""
