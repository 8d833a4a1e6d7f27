"""Leak detection (``Pool(leak_timeout=...)``): where a checkout was taken, and which
checkouts have been held too long.

The pool records the caller's stack at each checkout only when ``leak_timeout`` is set, and
its maintenance sweep asks :func:`overdue` which checkouts to report. Source lines are read
only when a report is formatted, never at checkout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._connection import PooledConn

__all__ = ["Site", "acquire_site", "format_site", "overdue"]

#: (file, line, function) of each frame where a checkout was taken, innermost first
Site = list[tuple[str, int, str]]

# Frames of poolkit's core and of contextlib on top of the stack are how poolkit hands out a
# connection (pool.connection(), acquire(), transaction(), fetchall() ...), not the caller.
_POOLKIT = os.path.dirname(__file__)  # the core package only, not fakes/ or conformance/
_CONTEXTLIB = contextlib.__file__
_DEPTH = 40  # frames kept, innermost first: bounds the cost of a checkout on a deep stack


def acquire_site() -> Site:
    """The calling task's stack, innermost first, less poolkit's own frames on top.

    Only names and numbers: no source lines, no ``linecache`` (whose freshness check stats
    every file), so a checkout pays a few microseconds; :func:`format_site` reads the lines.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    site: Site = []
    while frame is not None and len(site) < _DEPTH:
        code = frame.f_code
        site.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return site


def _is_internal(filename: str) -> bool:
    return filename == _CONTEXTLIB or os.path.dirname(filename) == _POOLKIT


def format_site(site: Site) -> str:
    """``site`` as a traceback prints it: ``File "...", line N, in f`` and the source line,
    most recent call last."""
    frames = traceback.StackSummary.from_list([(*frame, None) for frame in reversed(site)])
    return "".join(frames.format()).rstrip("\n")


def overdue(
    conns: Iterable[PooledConn], now: float, limit: float
) -> list[tuple[PooledConn, float]]:
    """Checkouts held ``limit`` seconds or more and not reported yet, with how long each has
    been held; each is marked reported, so a checkout is reported once."""
    found = []
    for conn in conns:
        if conn.acquired_from is None or conn.leaked:  # not checked out, or told already
            continue
        held = now - conn.checked_out_at
        if held >= limit:
            conn.leaked = True
            found.append((conn, held))
    return found
