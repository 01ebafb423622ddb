"""Where a JSONL file goes wrong: the first bad row, named by row, line, column and value.

pyarrow's JSON reader says *what* failed ("Column(/a) changed from number to string in row 1"), but its
row counts from the start of the block it was parsing, not of the file, and it shows no value. When it
refuses a file, ``locate_jsonl_error`` reads the file again line by line with the standard library and
finds the first line that is not one JSON object, or the first value whose JSON type differs from the
type the same key had before (nulls fit any type; integers and floats are both numbers).
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from linksage.errors import InputError

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open}


def json_kind(value: Any) -> str | None:
    """The JSON type of a parsed value: "boolean", "number", "string", "array", "object"; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _lines(path: Path) -> Iterator[str]:
    opener = _OPENERS.get(path.suffix.lower())
    stream: IO[str]
    if opener is not None:
        stream = opener(path, "rt", encoding="utf-8", errors="replace")  # type: ignore[operator]
    else:
        stream = path.open(encoding="utf-8", errors="replace")
    with stream:
        yield from stream


def locate_jsonl_error(path: Path | str) -> InputError | None:
    """The first problem in a JSONL file as an InputError (0-based row among its non-blank lines), or None
    when every line is a JSON object and every key keeps one JSON type."""
    path = Path(path)
    if path.suffix.lower() == ".zst":
        return None  # no reader in the standard library; the caller keeps pyarrow's message
    first: dict[str, tuple[str, int]] = {}  # key -> (its JSON type, the row it was first seen with it)
    row = -1
    for lineno, line in enumerate(_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        row += 1
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            return InputError(
                f"line {lineno} is not valid JSON: {exc.msg} at character {exc.pos + 1}", file=path, row=row, value=text
            )
        if not isinstance(record, dict):
            return InputError(
                f"line {lineno} is a JSON {json_kind(record) or 'null'}, not an object (one object per line)",
                file=path,
                row=row,
                value=text,
            )
        for key, value in record.items():
            kind = json_kind(value)
            if kind is None:
                continue
            seen = first.setdefault(key, (kind, row))
            if seen[0] != kind:
                return InputError(
                    f"line {lineno}: a {kind} where row {seen[1]} has a {seen[0]} (one type per key)",
                    file=path,
                    row=row,
                    column=key,
                    value=value,
                )
    return None
