"""The conformance matrix: backend x driver x pool x check, as Markdown, JSON and a table."""

from __future__ import annotations

import json
import platform
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

__all__ = ["NotRun", "Outcome", "Report", "Result"]

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


@dataclass(frozen=True)
class NotRun:
    """A backend reached by a driver that this run could not use, and what would enable it."""

    backend: str
    driver: str
    pools: tuple[str, ...]
    why: str

    @property
    def case(self) -> str:
        return f"{self.backend}/{self.driver}"


class Report:
    """Collects results during the run; renders the summary and the matrix at the end."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.not_run: list[NotRun] = []

    def add(self, result: Result) -> None:
        self.results.append(result)

    def add_not_run(self, item: NotRun) -> None:
        self.not_run.append(item)

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

    def line(self, case: str) -> tuple[str, int, int, int, int]:
        """A case's source and its pass, fail (unexpected passes included), not supported
        and skip counts."""
        t = self.totals(case)
        source = next(r.source for r in self.results if r.case == case)
        failed = t.get("fail", 0) + t.get("unexpected pass", 0)
        return source, t.get("pass", 0), failed, t.get("not supported", 0), t.get("skip", 0)

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
            source, passed, failed, not_supported, skipped = self.line(case)
            lines.append(
                f"| {case} | {source} | {passed} | {failed} | {skipped} | {not_supported} |"
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
        if self.not_run:
            lines += ["", "## Not run", ""]
            for item in self.not_run:
                lines.append(f"- **{item.case}** ({', '.join(item.pools)}): {item.why}")
        return "\n".join(lines) + "\n"

    def json(self) -> str:
        return json.dumps(
            {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "results": [asdict(r) for r in self.results],
                "not_run": [asdict(n) for n in self.not_run],
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

    def skip_reasons(self, case: str) -> dict[str, int]:
        """Why checks of a case were skipped, with how many each reason covers."""
        out: dict[str, int] = {}
        for r in self.results:
            if r.case == case and r.outcome == "skip":
                out[r.why or "no reason given"] = out.get(r.why or "no reason given", 0) + 1
        return out

    def summary(self, width: int = 100) -> str:
        """One line per case that ran (pass / fail / n/s / skip), then why checks were skipped
        and which cases did not run, with what would enable them; fits ``width`` columns."""
        lines: list[str] = []
        rows = []
        for case in self.cases():
            source, *counts = self.line(case)
            rows.append((case, source, *(str(n) for n in counts)))
        header = ("case (backend/driver/pool)", "source", "pass", "fail", "n/s", "skip")
        if rows:
            lines += _columns(header, rows, width)
        for case in self.cases():
            for why, n in self.skip_reasons(case).items():
                lines += _wrapped(f"{case}: {n} skipped: {why}", width, "  ")
        if self.not_run:
            lines += ["", "not run (set what each line says to include it):"][0 if rows else 1 :]
            by_why: dict[str, dict[str, list[str]]] = {}
            for item in self.not_run:
                why = item.why.removeprefix(f"{item.backend} via {item.driver}: ")
                by_why.setdefault(why, {}).setdefault(item.backend, []).append(item.driver)
            for why, backends in by_why.items():
                which = ", ".join(f"{b} ({', '.join(ds)})" for b, ds in backends.items())
                lines += _wrapped(f"{which}: {why}", width, "  ")
        return "\n".join(lines) + "\n"

    def failures(self, width: int = 100) -> str:
        """Each failed check of each case, with its first error line."""
        lines: list[str] = []
        for r in self.results:
            if r.outcome in ("fail", "unexpected pass"):
                lines += _wrapped(f"{_SYMBOL[r.outcome]} {r.check} on {r.case}: {r.why}", width)
        return "\n".join(lines) + ("\n" if lines else "")

    def table(self, width: int = 100) -> str:
        """The check x case matrix for the terminal, as tables of as many cases as fit in
        ``width`` columns (rich when installed, Markdown otherwise)."""
        cases = self.cases()
        try:
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table
        except ImportError:
            return self.markdown()
        check_width = max((len(c) for c in self.checks()), default=5)
        groups: list[list[str]] = [[]]
        used = check_width + 4
        for case in cases:
            need = max(max(len(part) for part in case.split("/")), 5) + 3
            if groups[-1] and used + need > width:
                groups.append([])
                used = check_width + 4
            groups[-1].append(case)
            used += need
        console = Console(width=max(width, check_width + 16), record=True, color_system=None)
        with console.capture() as capture:
            for group in groups:
                table = Table(title="poolkit conformance", show_lines=False)
                table.add_column("check", no_wrap=True, min_width=check_width)
                for case in group:
                    table.add_column(escape(case.replace("/", "\n")), justify="center")
                for check in self.checks():
                    cells = []
                    for case in group:
                        r = self.cell(check, case)
                        cells.append(_SYMBOL[r.outcome] if r is not None else "")
                    table.add_row(escape(check), *cells)
                console.print(table)
        text: str = capture.get()
        return text


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]], width: int) -> list[str]:
    """A plain table: the first two columns left-aligned, the counts right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    overflow = sum(widths) + 2 * (len(widths) - 1) - width
    if overflow > 0:  # shorten the case column, keeping its end (the pool) readable
        widths[0] = max(12, widths[0] - overflow)

    def line(row: tuple[str, ...]) -> str:
        first = row[0] if len(row[0]) <= widths[0] else "…" + row[0][-(widths[0] - 1) :]
        cells = [first.ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]
        return "  ".join(cells).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _wrapped(text: str, width: int, indent: str = "") -> list[str]:
    return textwrap.wrap(
        text, width=width, initial_indent=indent, subsequent_indent=indent + "    "
    ) or [indent]
