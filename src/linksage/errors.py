"""Errors that reach the user. The CLI turns each into one clear message and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LinksageError(Exception):
    """Base of every error whose message is meant for the user as it is."""


class InputError(LinksageError):
    """Bad input data: names the file, the row (0-based, in that file) and the offending value."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.value = value
        where = []
        if self.file is not None:
            where.append(self.file)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        shown = "" if value is None else f" (value: {_short(value)})"
        super().__init__(f"{prefix}: {message}{shown}" if prefix else f"{message}{shown}")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
