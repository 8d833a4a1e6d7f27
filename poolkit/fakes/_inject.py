"""``inject(module, plan)``: the fake's faults around a real driver.

The wrapper is a PEP 249 module in its own right: its attributes are the real module's (so the
exceptions raised are the real driver's classes, and ``__name__`` is the real one, which is
how poolkit picks the driver's profile), ``connect`` returns wrapped connections, and every
PEP 249 call goes through the plan. Attributes a wrapper does not know (``closed``,
``get_transaction_status()``, ``server_status``, ``autocommit``) reach the real object.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._clock import Clock, RealClock
from ._controls import Controls, mask_connect
from ._dbapi import CursorIteration
from ._engine import ConnCore, DriverCore
from ._plan import Plan, PlanError
from ._record import CallLog
from ._texts import dialect_for

__all__ = ["InjectedConnection", "InjectedCursor", "InjectedDriver", "inject"]


def inject(
    module: Any,
    plan: Plan | None = None,
    *,
    clock: Clock | None = None,
    strict_threads: bool = False,
    max_calls: int | None = 100_000,
) -> InjectedDriver:
    """Wrap a real PEP 249 module (psycopg2, pymysql, pyodbc, sqlite3, ...) with a fault plan.

    The faults raise the real driver's own exception classes with its own codes and texts;
    a dropped connection is really closed, so its server session ends.
    """
    if not callable(getattr(module, "connect", None)):
        raise PlanError(f"inject() needs a PEP 249 module with connect(), got {module!r}")
    return InjectedDriver(module, plan, clock, strict_threads, max_calls)


def _autocommit_of(real: Any) -> bool:
    try:
        value = getattr(real, "autocommit", None)
        if isinstance(value, bool):
            return value
        get = getattr(real, "get_autocommit", None)
        if callable(get):
            return bool(get())
        if hasattr(real, "isolation_level") and type(real).__module__.startswith("sqlite3"):
            return real.isolation_level is None
    except Exception:  # a closed connection may refuse even this
        return False
    return False


class InjectedDriver(Controls):
    """A real driver module with a fault plan. See :func:`inject`."""

    def __init__(
        self,
        module: Any,
        plan: Plan | None,
        clock: Clock | None,
        strict_threads: bool,
        max_calls: int | None,
    ) -> None:
        if plan is None:
            plan = Plan()
        elif not isinstance(plan, Plan):
            raise PlanError(f"inject(): plan must be a Plan, got {plan!r}")
        Controls.__init__(self)
        self._module = module
        self.__name__ = str(getattr(module, "__name__", type(module).__name__))
        threadsafety = int(getattr(module, "threadsafety", 1))
        self._core = DriverCore(
            module,
            dialect_for(module),
            plan,
            clock if clock is not None else RealClock(),
            CallLog(max_calls),
            threadsafety,
            strict_threads,
        )

    @property
    def module(self) -> Any:
        """The real driver module."""
        return self._module

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._module, name)

    def connect(self, *args: Any, **kwargs: Any) -> InjectedConnection:
        def make(conn_id: int) -> InjectedConnection:
            conn = InjectedConnection(self, conn_id, self._module.connect(*args, **kwargs))
            self._remember(conn_id, conn, conn._pk_core)
            return conn

        return self._core.connect(make, mask_connect(args, kwargs))

    def __repr__(self) -> str:
        return (
            f"<InjectedDriver {self.__name__} {len(self.connections)} open, "
            f"{len(self.calls)} calls, plan={self.plan!r}>"
        )


# Optional PEP 249 cursor methods -> the "sql" to record for their arguments.
_OPTIONAL: dict[str, Any] = {
    "callproc": lambda args: str(args[0]) if args else None,
    "nextset": lambda args: None,
}

_OWN = frozenset({"_pk_driver", "_pk_core", "_pk_real", "_pk_cursors"})


class InjectedConnection:
    """A real connection behind the plan; unknown attributes reach the real connection."""

    def __init__(self, driver: InjectedDriver, conn_id: int, real: Any) -> None:
        interrupt = getattr(real, "cancel", None) or getattr(real, "interrupt", None)
        object.__setattr__(self, "_pk_driver", driver)
        object.__setattr__(self, "_pk_real", real)
        object.__setattr__(self, "_pk_cursors", 0)
        object.__setattr__(
            self,
            "_pk_core",
            ConnCore(
                driver._core,
                conn_id,
                lambda: _autocommit_of(real),
                on_drop=real.close,
                on_interrupt=interrupt if callable(interrupt) else (lambda: None),
            ),
        )

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pk_real, name)
        if name in ("execute", "executemany"):
            # sqlite3's shortcuts: through a wrapped cursor, so the plan applies to them too
            def shortcut(*args: Any) -> InjectedCursor:
                cursor = self.cursor()
                getattr(cursor, name)(*args)
                return cursor

            return shortcut
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._pk_real, name, value)

    @property
    def id(self) -> int:
        """The connection's id in the record: its connect attempt's number."""
        return int(self._pk_core.id)

    @property
    def real(self) -> Any:
        """The wrapped driver connection."""
        return self._pk_real

    def cursor(self, *args: Any, **kwargs: Any) -> InjectedCursor:
        number = self._pk_cursors + 1
        object.__setattr__(self, "_pk_cursors", number)
        cursor: InjectedCursor = self._pk_core.run(
            "cursor",
            None,
            None,
            number,
            lambda: InjectedCursor(self, self._pk_real.cursor(*args, **kwargs), number),
        )
        return cursor

    def commit(self) -> None:
        self._pk_core.run("commit", None, None, None, self._pk_real.commit)

    def rollback(self) -> None:
        self._pk_core.run("rollback", None, None, None, self._pk_real.rollback)

    def close(self) -> None:
        core = self._pk_core
        core.closing()
        try:
            core.run("close", None, None, None, self._pk_real.close)
        finally:
            self._pk_driver._forget(core.id)

    def cancel(self) -> None:
        """Cancel from another thread: an injected hang ends, and the real driver cancels."""
        self._pk_core.cancel()
        cancel = getattr(self._pk_real, "cancel")  # noqa: B009 - AttributeError like the real
        cancel()

    def interrupt(self) -> None:
        """sqlite3's cancel: an injected hang ends, and the real statement is interrupted."""
        self._pk_core.cancel()
        interrupt = getattr(self._pk_real, "interrupt")  # noqa: B009
        interrupt()

    def __enter__(self) -> InjectedConnection:
        self._pk_real.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        return self._pk_real.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        state = "dropped" if self._pk_core.dropped else "open"
        return f"<InjectedConnection {self._pk_core.id} {state} of {self._pk_real!r}>"


class InjectedCursor(CursorIteration):
    """A real cursor behind the plan; unknown attributes reach the real cursor."""

    def __init__(self, connection: InjectedConnection, real: Any, number: int) -> None:
        object.__setattr__(self, "connection", connection)
        object.__setattr__(self, "_pk_real", real)
        object.__setattr__(self, "_pk_number", number)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pk_real, name)
        if name in _OPTIONAL:  # wrapped only where the real cursor has them (PEP 249 optional)
            record = _OPTIONAL[name]
            return lambda *args: self._run(name, record(args), args, lambda: attr(*args))
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pk_real, name, value)

    def _run(self, op: str, sql: str | None, params: Any, fn: Any) -> Any:
        core: ConnCore = self.connection._pk_core
        result = core.run(op, sql, params, self._pk_number, fn)
        return self if result is self._pk_real else result

    def execute(self, operation: str, parameters: Any = None) -> Any:
        real = self._pk_real
        if parameters is None:
            return self._run("execute", operation, None, lambda: real.execute(operation))
        return self._run(
            "execute", operation, parameters, lambda: real.execute(operation, parameters)
        )

    def executemany(self, operation: str, seq_of_parameters: Any) -> Any:
        real = self._pk_real
        return self._run(
            "executemany",
            operation,
            seq_of_parameters,
            lambda: real.executemany(operation, seq_of_parameters),
        )

    def fetchone(self) -> Any:
        return self._run("fetchone", None, None, self._pk_real.fetchone)

    def fetchmany(self, *args: Any) -> Any:
        real = self._pk_real
        return self._run("fetchmany", None, None, lambda: real.fetchmany(*args))

    def fetchall(self) -> Any:
        return self._run("fetchall", None, None, self._pk_real.fetchall)

    def close(self) -> None:
        self._pk_real.close()

    def __repr__(self) -> str:
        return f"<InjectedCursor {self.connection.id}.{self._pk_number} of {self._pk_real!r}>"
