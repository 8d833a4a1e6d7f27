"""Every Python block in the README runs as written (server-backed ones when reachable), and
passes ``mypy --strict`` with the project's configuration (all of them: type checking needs
no server)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from poolkit.conformance.pgbouncer import INSTALL, find_binary
from tests.backends import probe, required_backends

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)


def _id(code: str) -> str:
    return code.strip().splitlines()[-1][:40]


def test_readme_has_the_quick_start_of_examples() -> None:
    quickstart = (ROOT / "examples" / "quickstart.py").read_text()
    assert quickstart in BLOCKS, "README quick start and examples/quickstart.py differ"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str, tmp_path: Path) -> None:
    needs = re.match(r"# needs: ([\w ]+)", code)
    for need in needs.group(1).split() if needs else ():
        if need == "pgbouncer":  # a program, not a server: skipped where it is not installed
            if find_binary() is None:
                pytest.skip(f"the pgbouncer binary is not installed ({INSTALL})")
            continue
        backend, why = probe(need)
        if backend is None:
            if need in required_backends():
                pytest.fail(why)
            pytest.skip(why)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{result.stderr}"
    assert result.stdout.strip() or "print(" not in code, "block printed nothing"


# ----- mypy --strict -----------------------------------------------------------------------

#: Rows used without the None check: each line marked ``# E: <code>`` must be an error.
UNCHECKED_ROWS = """\
import poolkit


async def main(pool: poolkit.Pool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1")
        print((await cur.fetchone())[0])  # E: index
        print((await conn.fetchone("SELECT 1"))[0])  # E: index
        print((await pool.fetchone("SELECT 1"))[0])  # E: index
        print([column[0] for column in cur.description])  # E: union-attr
        # Rows are Rows, not Any: a dict cursor's rows need a cast.
        print((await cur.fetchall())[0]["name"])  # E: call-overload
        print((await cur.fetchmany(2))[0]["name"])  # E: call-overload
        print((await conn.fetchall("SELECT 1"))[0]["name"])  # E: call-overload
        print((await pool.fetchall("SELECT 1"))[0]["name"])  # E: call-overload
        async for row in cur:
            print(row["name"])  # E: call-overload
"""

#: Rows used as documented, and the drivers' own row and description types, which must fit.
CHECKED_ROWS = """\
import sqlite3
from typing import Any

import psycopg

import poolkit


def rows_of_drivers(row: tuple[Any, ...] | sqlite3.Row) -> poolkit.Row:
    return row


def description_of_psycopg(description: list[psycopg.Column]) -> poolkit.Description:
    return description


async def main(pool: poolkit.Pool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1, 2")
        row = await cur.fetchone()
        assert row is not None
        print(row[0], row[1:], len(row), tuple(row), 1 in row)
        first, second = row
        for row in await cur.fetchmany(2) + await cur.fetchall():
            print(dict(zip(["a", "b"], row)))
        async for a, b in cur:
            print(a, b)
        if cur.description is not None:
            print([column[0] for column in cur.description])
        one = await pool.fetchone("SELECT 1")
        if one is not None:
            print(one[0])
        print([r[0] for r in await pool.fetchall("SELECT 1")])
"""

#: pyodbc's rows are not tuples (nor Sequences): Row must ask no more of them than they have.
#: Checked against the stub pyodbc ships, which mypy does not find by itself (a bare .pyi).
PYODBC_ROWS = """\
import pyodbc

import poolkit


def rows_of_pyodbc(row: pyodbc.Row) -> poolkit.Row:
    return row


def description_of_pyodbc(cursor: pyodbc.Cursor) -> poolkit.Description | None:
    return cursor.description
"""

SNIPPETS = {"unchecked_rows": UNCHECKED_ROWS, "checked_rows": CHECKED_ROWS}
MYPY_TIMEOUT = 300  # seconds; one run, with a cold cache, checks anyio, trio, tornado...
_MYPY_ERROR = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[\w-]+)\])?$"
)

#: errors by checked file (its stem) or by imported module (its path): (line, code, message)
Errors = dict[str, list[tuple[int, str, str]]]


def _pyodbc_stub() -> Path | None:
    spec = importlib.util.find_spec("pyodbc")  # finds the module without loading unixODBC
    if spec is None or spec.origin is None:
        return None
    stub = Path(spec.origin).with_name("pyodbc.pyi")
    return stub if stub.is_file() else None


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> Errors:
    """One ``mypy --strict`` run over every README block and the snippets above (a run costs
    seconds, so it is shared): its errors by file. The project's configuration applies, so
    third-party imports resolve or are ignored exactly as in the project's own mypy run."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: pip install -e '.[test]'")
    folder = tmp_path_factory.mktemp("mypy")
    files = {f"readme_block{i}": code for i, code in enumerate(BLOCKS)} | SNIPPETS
    stub = _pyodbc_stub()
    if stub is not None:  # found next to the snippet that imports it; its own errors muted
        # Without Row.__getattribute__ (columns as attributes): with it, any method looks present.
        text = re.sub(r"^ *def __getattribute__\(.*\n", "", stub.read_text(), flags=re.MULTILINE)
        (folder / "pyodbc.pyi").write_text("# mypy: ignore-errors\n" + text)
        files["pyodbc_rows"] = PYODBC_ROWS
    for name, code in files.items():
        (folder / f"{name}.py").write_text(code)
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml"]
    command += ["--cache-dir", str(folder / "cache"), "--no-pretty", "--no-error-summary"]
    result = subprocess.run(
        [*command, *(str(folder / f"{name}.py") for name in files)],
        cwd=ROOT,  # as the project runs it: poolkit is this working tree
        capture_output=True,
        text=True,
        timeout=MYPY_TIMEOUT,
    )
    errors: Errors = {name: [] for name in files}
    for line in result.stdout.splitlines():
        match = _MYPY_ERROR.match(line)
        if match is not None:  # errors in imported modules (poolkit's own) are kept by path
            path = Path(match["path"])
            found = (int(match["line"]), match["code"] or "", match["message"])
            errors.setdefault(path.stem if path.parent == folder else str(path), []).append(found)
    crashed = result.returncode not in (0, 1) or (result.returncode == 1) != any(errors.values())
    assert not crashed, f"mypy failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    return errors


def _listed(errors: list[tuple[int, str, str]]) -> str:
    return "\n".join(f"line {line}: {message} [{code}]" for line, code, message in errors)


@pytest.mark.timeout(MYPY_TIMEOUT)
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_type_checks(index: int, mypy_errors: Errors) -> None:
    errors = mypy_errors[f"readme_block{index}"]
    assert not errors, f"mypy --strict on README block:\n{BLOCKS[index]}\n{_listed(errors)}"


@pytest.mark.timeout(MYPY_TIMEOUT)
def test_mypy_flags_a_row_used_without_a_none_check(mypy_errors: Errors) -> None:
    """The check above can fail: ``(await cur.fetchone())[0]`` is an error, and so is
    indexing a row by name, since rows are typed (not Any)."""
    expected = {
        (number, match[1])
        for number, line in enumerate(UNCHECKED_ROWS.splitlines(), start=1)
        if (match := re.search(r"# E: ([\w-]+)$", line))
    }
    found = {(line, code) for line, code, _ in mypy_errors["unchecked_rows"]}
    assert found == expected, _listed(mypy_errors["unchecked_rows"])


@pytest.mark.timeout(MYPY_TIMEOUT)
def test_mypy_accepts_rows_used_as_documented(mypy_errors: Errors) -> None:
    assert not mypy_errors["checked_rows"], _listed(mypy_errors["checked_rows"])


@pytest.mark.timeout(MYPY_TIMEOUT)
def test_pyodbc_rows_are_rows(mypy_errors: Errors) -> None:
    if "pyodbc_rows" not in mypy_errors:
        pytest.skip("pyodbc (with its pyodbc.pyi) is not installed: pip install 'poolkit[odbc]'")
    assert not mypy_errors["pyodbc_rows"], _listed(mypy_errors["pyodbc_rows"])
