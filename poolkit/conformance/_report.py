"""The conformance matrix: backend x driver x pool x check, as Markdown, JSON and a table."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

__all__ = ["Outcome", "Report", "Result"]

Outcome = Literal["pass", "fail", "skip", "not supported", "unexpected pass"]
_SYMBOL = {
    "pass": "pass",
    "fail": "FAIL",
    "skip": "skip",
    "not supported": "n/s",
    "unexpected pass": "XPASS",
}


@dataclass(frozen=True)
class Result:
    """One check on one case."""

    backend: str
    driver: str
    pool: str
    source: str
    check: str
    outcome: Outcome
    why: str = ""

    @property
    def case(self) -> str:
        return f"{self.backend}/{self.driver}/{self.pool}"


class Report:
    """Collects results during the run; renders the matrix at the end."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def add(self, result: Result) -> None:
        self.results.append(result)

    @property
    def failed(self) -> bool:
        return any(r.outcome in ("fail", "unexpected pass") for r in self.results)

    def cases(self) -> list[str]:
        return list(dict.fromkeys(r.case for r in self.results))

    def checks(self) -> list[str]:
        return list(dict.fromkeys(r.check for r in self.results))

    def cell(self, check: str, case: str) -> Result | None:
        for r in self.results:
            if r.check == check and r.case == case:
                return r
        return None

    def totals(self, case: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            if r.case == case:
                out[r.outcome] = out.get(r.outcome, 0) + 1
        return out

    def rows(self) -> Iterable[tuple[str, list[str]]]:
        for check in self.checks():
            cells = []
            for case in self.cases():
                r = self.cell(check, case)
                cells.append(_SYMBOL[r.outcome] if r is not None else "")
            yield check, cells

    def markdown(self) -> str:
        cases = self.cases()
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            "# poolkit conformance report",
            "",
            f"{when} · Python {platform.python_version()} · {platform.platform()}",
            "",
            "| case | source | pass | fail | skip | not supported |",
            "|---|---|---|---|---|---|",
        ]
        for case in cases:
            t = self.totals(case)
            source = next(r.source for r in self.results if r.case == case)
            fails = t.get("fail", 0) + t.get("unexpected pass", 0)
            lines.append(
                f"| {case} | {source} | {t.get('pass', 0)} | {fails} | {t.get('skip', 0)} "
                f"| {t.get('not supported', 0)} |"
            )
        lines += ["", "| check | " + " | ".join(cases) + " |"]
        lines.append("|---|" + "---|" * len(cases))
        for check, cells in self.rows():
            lines.append(f"| {check} | " + " | ".join(cells) + " |")
        groups: dict[tuple[str, str, str], list[str]] = {}
        for r in self.results:
            if r.outcome != "pass":
                groups.setdefault((r.case, r.outcome, r.why), []).append(r.check)
        if groups:
            lines += ["", "## Why not passed", ""]
            for (case, outcome, why), checks in groups.items():
                total = sum(1 for r in self.results if r.case == case)
                which = (
                    f"all {total} checks"
                    if len(checks) == total
                    else ", ".join(f"`{c}`" for c in checks)
                )
                lines.append(f"- **{case}** {outcome}: {why or 'no reason given'} ({which})")
        return "\n".join(lines) + "\n"

    def json(self) -> str:
        return json.dumps(
            {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "results": [asdict(r) for r in self.results],
            },
            indent=2,
        )

    def write(self, path: str) -> list[Path]:
        """Write ``path`` (Markdown, ``.md`` added when missing) and the JSON beside it."""
        base = Path(path)
        if base.suffix in (".md", ".json"):
            base = base.with_suffix("")
        md = base.with_name(base.name + ".md")
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(self.markdown())
        js = md.with_name(md.name.removesuffix(".md") + ".json")
        js.write_text(self.json())
        return [md, js]

    def table(self) -> str:
        """The matrix for the terminal (rich when installed, plain text otherwise)."""
        cases = self.cases()
        try:
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table
        except ImportError:
            return self.markdown()
        table = Table(title="poolkit conformance", show_lines=False)
        width = max((len(c) for c in self.checks()), default=5)
        table.add_column("check", no_wrap=True, min_width=width)
        for case in cases:
            table.add_column(escape(case.replace("/", "\n")), justify="center")
        for check, cells in self.rows():
            table.add_row(escape(check), *cells)
        console = Console(width=max(100, width + 8 + 15 * len(cases)), record=True)
        with console.capture() as capture:
            console.print(table)
        text: str = capture.get()
        return text
