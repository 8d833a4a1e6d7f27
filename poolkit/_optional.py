"""Optional dependencies: import one, or say in one line what to install.

A driver can be missing in two ways. Not installed: ``import pyodbc`` raises
``ModuleNotFoundError``. Installed but not loadable: the package is there, but the system
library its extension links against is not, and the import raises a plain ``ImportError``
("libodbc.so.2: cannot open shared object file"). Both mean "this cannot run here", and both
get a reason naming what to install: the pip package (or poolkit extra) for the first, the
system package for the second. ``pytest.importorskip`` skips only the first kind, so the test
suite, the conformance targets and the benchmarks all ask here instead.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

__all__ = ["MissingDependency", "require", "unavailable"]

#: What to install for a module that is not there, by top-level import name.
PIP: dict[str, str] = {
    "psycopg2": "pip install 'poolkit[postgres]' (psycopg2-binary)",
    "pymysql": "pip install 'poolkit[mysql]' (PyMySQL)",
    "pyodbc": "pip install 'poolkit[odbc]' (pyodbc), plus unixODBC and an ODBC driver",
    "MySQLdb": "pip install mysqlclient (it compiles: apt-get install libmariadb-dev "
    "pkg-config build-essential)",
    "psycopg": "pip install 'psycopg[binary]'",
    "psycopg_pool": "pip install psycopg-pool",
    "oracledb": "pip install oracledb",
    "trio": "pip install trio",
    "tornado": "pip install tornado",
    "hypothesis": "pip install 'poolkit[fakes]' (hypothesis)",
    "pytest": "pip install 'poolkit[conformance]'",
    "rich": "pip install 'poolkit[conformance]' (rich)",
    "testcontainers": "pip install 'poolkit[containers]' (testcontainers)",
    "docker": "pip install 'poolkit[containers]' (testcontainers, with the docker SDK)",
    "opentelemetry": "pip install 'poolkit[otel]' (opentelemetry-api)",
    "asyncpg": "pip install 'poolkit[bench]' (asyncpg)",
    "aiomysql": "pip install 'poolkit[bench]' (aiomysql)",
    "sqlalchemy": "pip install 'poolkit[bench]' (SQLAlchemy[asyncio])",
    "matplotlib": "pip install 'poolkit[bench]' (matplotlib)",
}

#: The system package behind a shared library an extension module failed to load.
LIBRARIES: tuple[tuple[str, str], ...] = (
    (
        "libodbc",
        "unixODBC (Debian/Ubuntu: apt-get install unixodbc; Fedora: dnf install unixODBC; "
        "macOS: brew install unixodbc)",
    ),
    ("libiodbc", "iODBC (or unixODBC: apt-get install unixodbc)"),
    ("libpq", "libpq (Debian/Ubuntu: apt-get install libpq5; or pip install psycopg2-binary)"),
    ("libmariadb", "the MariaDB client library (apt-get install libmariadb3)"),
    ("libmysqlclient", "the MySQL client library (apt-get install libmysqlclient21)"),
    ("libclntsh", "Oracle Instant Client"),
)

# "libodbc.so.2: cannot open shared object file", "Library not loaded: .../libodbc.2.dylib",
# "DLL load failed while importing pyodbc"
_LIBRARY = re.compile(r"(lib[\w+-]*(?:\.[\d]+)*\.(?:so(?:\.\d+)*|dylib|dll))|DLL load failed")


class MissingDependency(ImportError):
    """An optional dependency is not installed, or installed but cannot load (says what to do)."""


def unavailable(name: str) -> str | None:
    """None when ``name`` imports, else one line saying why not and what to install."""
    try:
        importlib.import_module(name)
    except (ImportError, OSError) as exc:  # OSError: a library loaded by hand (ctypes)
        return _why(name, exc)
    return None


def require(name: str, purpose: str = "") -> ModuleType:
    """``import name``, or :class:`MissingDependency` saying what to install (and what for)."""
    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as exc:
        why = _why(name, exc)
        raise MissingDependency(f"{why}{f' ({purpose})' if purpose else ''}") from exc


def _why(name: str, exc: BaseException) -> str:
    top = name.split(".")[0]
    missing = getattr(exc, "name", None)
    text = str(exc)
    if isinstance(exc, ModuleNotFoundError) and missing is not None:
        missing_top = missing.split(".")[0]
        hint = PIP.get(missing_top) or PIP.get(top) or f"pip install {missing_top}"
        if missing_top == top:
            return f"{top} is not installed: {hint}"
        return f"{name} needs {missing_top}, which is not installed: {hint}"
    library = _LIBRARY.search(text)
    if library is not None:
        lib = library.group(1) or ""
        package = next((pkg for prefix, pkg in LIBRARIES if lib.startswith(prefix)), None)
        if not lib:  # Windows names no library
            return f"{top} is installed but cannot load a system library ({text})"
        fix = f"install {package}" if package else "install the library it links against"
        return f"{top} is installed but cannot load {lib}: {fix}"
    return f"{top} is installed but cannot be imported ({type(exc).__name__}: {text})"
