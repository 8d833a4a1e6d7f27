"""Every Python block in the README runs as written (server-backed ones when reachable)."""

from __future__ import annotations

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
