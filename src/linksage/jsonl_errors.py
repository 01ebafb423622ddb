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
import zlib
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


SCAN_LIMIT = 512 << 20  # characters read before giving up (pyarrow's message is kept); about 5-10 s of json
_WHITESPACE = " \t\r\n"  # JSON's own; other Unicode spaces are a bad row to pyarrow too
_SHOWN = 200  # characters of a bad line kept as the error's value


def _lines(path: Path) -> Iterator[str]:
    """The file's lines split on \n only (as pyarrow splits them); a leading BOM is dropped, as pyarrow does."""
    opener = _OPENERS.get(path.suffix.lower())
    stream: IO[str]
    if opener is not None:
        stream = opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="\n")  # type: ignore[operator]
    else:
        stream = path.open(encoding="utf-8-sig", errors="replace", newline="\n")
    with stream:
        yield from stream


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def locate_jsonl_error(path: Path | str) -> InputError | None:
    """The first problem in a JSONL file as an InputError (0-based row among its non-blank lines), or None
    when every line is a JSON object and every key keeps one JSON type, or when the scan cannot tell
    (a compressed stream it cannot read, a line nested too deeply for Python, more than SCAN_LIMIT read)."""
    path = Path(path)
    if path.suffix.lower() == ".zst":
        return None  # no reader in the standard library; the caller keeps pyarrow's message
    try:
        return _scan(path)
    except (OSError, EOFError, zlib.error, RecursionError, MemoryError):  # OSError: bad gzip / bz2 streams too
        return None


def _scan(path: Path) -> InputError | None:
    first: dict[str, tuple[str, int]] = {}  # key -> (its JSON type, the row it was first seen with it)
    row, read = -1, 0
    for lineno, line in enumerate(_lines(path), start=1):
        read += len(line)
        if read > SCAN_LIMIT:
            return None
        text = line.strip(_WHITESPACE)
        if not text:
            continue
        row += 1
        if not text.startswith("{"):  # not parsed: a whole-file array on one line can be gigabytes
            return InputError(
                f"line {lineno} is not a JSON object (one object per line)", file=path, row=row, value=text[:_SHOWN]
            )
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            return InputError(
                f"line {lineno} is not valid JSON: {exc.msg} (character {exc.pos + 1})",
                file=path,
                row=row,
                value=text[:_SHOWN],
            )
        for key, value in record.items():
            kind = json_kind(value)
            if kind is None:
                continue
            seen = first.setdefault(key, (kind, row))
            if seen[0] != kind:
                return InputError(
                    f"line {lineno}: {_a(kind)} where row {seen[1]} has {_a(seen[0])} (one type per key)",
                    file=path,
                    row=row,
                    column=key,
                    value=value if kind not in ("array", "object") else text[:_SHOWN],
                )
    return None
