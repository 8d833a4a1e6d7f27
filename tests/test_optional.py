"""Optional dependencies: a module that is missing, or installed but unable to load its system
library, is reported the same way, with what to install."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolkit._optional import MissingDependency, require, unavailable
from tests.backends import need


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for modules written by the test (forgotten afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_an_installed_module_imports() -> None:
    assert unavailable("sqlite3") is None
    assert require("sqlite3") is sys.modules["sqlite3"]


def test_a_module_that_is_not_installed_names_the_pip_package() -> None:
    why = unavailable("poolkit_no_such_module")
    assert why == "poolkit_no_such_module is not installed: pip install poolkit_no_such_module"


def test_a_known_driver_that_is_not_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # import raises ModuleNotFoundError
    why = unavailable("pymysql")
    assert why is not None and why.startswith("pymysql is not installed")
    assert "poolkit[mysql]" in why


def test_installed_but_its_system_library_is_missing(site: Path) -> None:
    """What pyodbc does without unixODBC: an ImportError that is not ModuleNotFoundError."""
    (site / "odbc_like.py").write_text(
        "raise ImportError('libodbc.so.2: cannot open shared object file: "
        "No such file or directory')\n"
    )
    why = unavailable("odbc_like")
    assert why is not None
    assert why.startswith("odbc_like is installed but cannot load libodbc.so.2: install unixODBC")
    assert "apt-get install unixodbc" in why
    with pytest.raises(MissingDependency, match="install unixODBC") as caught:
        require("odbc_like", "the pyodbc cases")
    assert isinstance(caught.value, ImportError)  # callers catching ImportError still work
    assert str(caught.value).endswith("(the pyodbc cases)")


def test_a_library_on_macos_and_an_unknown_library(site: Path) -> None:
    (site / "drv_mac.py").write_text(
        "raise ImportError('dlopen(drv.so, 2): Library not loaded: "
        "/opt/homebrew/lib/libodbc.2.dylib')\n"
    )
    (site / "drv_other.py").write_text(
        "raise ImportError('libfoo.so.7: cannot open shared object file')\n"
    )
    assert "libodbc.2.dylib" in (unavailable("drv_mac") or "")
    assert "brew install unixodbc" in (unavailable("drv_mac") or "")
    other = unavailable("drv_other") or ""
    assert "cannot load libfoo.so.7" in other
    assert "install the library it links against" in other


def test_a_dependency_of_the_module_is_missing(site: Path) -> None:
    (site / "needs_trio.py").write_text("import poolkit_missing_dependency\n")
    why = unavailable("needs_trio")
    assert why is not None
    assert why.startswith("needs_trio needs poolkit_missing_dependency, which is not installed")


def test_an_import_that_fails_otherwise_says_so(site: Path) -> None:
    (site / "broken_drv.py").write_text("raise ImportError('cannot import name x')\n")
    assert unavailable("broken_drv") == (
        "broken_drv is installed but cannot be imported (ImportError: cannot import name x)"
    )


def test_need_skips_a_module_that_cannot_load(site: Path) -> None:
    (site / "unloadable.py").write_text(
        "raise ImportError('libodbc.so.2: cannot open shared object file')\n"
    )
    with pytest.raises(pytest.skip.Exception, match="install unixODBC"):
        need("unloadable")
    assert need("sqlite3") is sys.modules["sqlite3"]
