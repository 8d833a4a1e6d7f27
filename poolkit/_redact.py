"""Keep connection secrets out of reprs, logs, stats and error messages."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Redactor"]

MASK = "***"

# Connect keyword names that hold secrets: password, sslpassword, wallet_password, pwd,
# access_token, api_key, client_secret, credentials, auth (a (user, password) pair) ...
SECRET_KEY = re.compile(
    r"(password|passwd|pwd|secret|token|api_?key|credential)|^(pass|auth)$", re.IGNORECASE
)
# key=value pairs in libpq DSNs and ODBC connection strings, quoted or not
_KV = re.compile(
    r"(?i)\b(\w*password|passwd|pwd|\w*token|\w*secret)\s*=\s*"
    r"('(?:[^'\\]|\\.)*'|\{[^}]*\}|\"[^\"]*\"|[^\s;]+)"
)
# user:password@host in URLs
_URL = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^:/@\s]*:)([^@\s]+)(@)")


def _scrub_patterns(text: str) -> str:
    text = _KV.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _URL.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)


class Redactor:
    """Knows the secrets in one pool's connect arguments and masks them in any text."""

    def __init__(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        extra: Iterable[str] = (),
    ) -> None:
        secrets: set[str] = {s for s in extra if isinstance(s, str)}
        for arg in args:
            if isinstance(arg, str):
                secrets.update(_values_in(arg))
        for key, value in (kwargs or {}).items():
            if value is None:
                continue
            if SECRET_KEY.search(key):
                if isinstance(value, (tuple, list)) and value:
                    secrets.add(str(value[-1]))  # auth=(user, password)
                else:
                    secrets.add(
                        value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    )
            elif isinstance(value, str):
                secrets.update(_values_in(value))
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted((s for s in secrets if len(s) >= 2), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return _scrub_patterns(text)

    def exception(self, exc: BaseException) -> str:
        """``Type: message`` of an exception, secrets masked."""
        return self(f"{type(exc).__name__}: {exc}".strip())

    def masked(self, exc: BaseException) -> BaseException | None:
        """A fresh copy of ``exc`` to raise: its class and attributes, with the secrets masked
        in its args and string attributes, no traceback and no chained exception; None when
        no copy can be made, or the copy still shows a secret (say, in a C attribute)."""
        try:
            fresh = copy.copy(exc)
            fresh.args = tuple(self(a) if isinstance(a, str) else a for a in exc.args)
            for key, value in list(getattr(fresh, "__dict__", {}).items()):
                if isinstance(value, str):
                    setattr(fresh, key, self(value))
            fresh.__traceback__ = fresh.__cause__ = fresh.__context__ = None
            shown = (str(fresh), repr(fresh))
        except Exception:
            return None
        if any(self(text) != text for text in shown):
            return None
        return fresh

    def __repr__(self) -> str:
        return f"<Redactor {len(self._secrets)} secrets>"


def _values_in(text: str) -> set[str]:
    found: set[str] = set()
    for match in _KV.finditer(text):
        value = match.group(2)
        if value[:1] in "'\"{" and len(value) >= 2:
            value = value[1:-1]
        found.add(value)
    for match in _URL.finditer(text):
        found.add(match.group(2))
    return found
