"""Type checks and conversions of input columns, and the contract's integrity checks.

Every failure is one ``InputError`` naming the file, the row (0-based, in that file) and the value.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from linksage.errors import InputError
from linksage.schema import IMAGE_TYPE, IMAGES_TYPE, INPUT_TABLES


@dataclass(frozen=True)
class Loc:
    """Where the rows of a chunk come from: a file and each row's number in it."""

    file: str
    row0: int = 0
    rows: np.ndarray | None = None  # explicit row numbers when rows were filtered out upstream
    # (contract name, the file's name) of each column the config's mapping renamed: errors name the file's
    renamed: tuple[tuple[str, str], ...] = ()

    def row(self, i: int) -> int:
        return int(self.rows[i]) if self.rows is not None else self.row0 + i

    def subset(self, kept: np.ndarray) -> Loc:
        """The locations of rows ``kept`` (indices into this chunk), e.g. after filtering."""
        rows = self.rows[kept] if self.rows is not None else self.row0 + kept
        return Loc(self.file, rows=np.asarray(rows, dtype=np.int64), renamed=self.renamed)

    def error(self, message: str, i: int, column: str | None = None, value: Any = None) -> InputError:
        for contract, source in self.renamed:
            message = message.replace(f"column {contract!r}", f"column {source!r} ({contract})")
            column = source if column == contract else column
        return InputError(message, file=self.file, row=self.row(i), column=column, value=value)


class Locations:
    """Maps a row of a concatenation of chunks back to its file and row."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._locs: list[Loc] = []
        self.total = 0

    def add(self, loc: Loc, n: int) -> None:
        self._starts.append(self.total)
        self._locs.append(loc)
        self.total += n

    def find(self, index: int) -> tuple[Loc, int]:
        k = bisect.bisect_right(self._starts, index) - 1
        return self._locs[k], index - self._starts[k]

    def describe(self, index: int) -> str:
        loc, i = self.find(index)
        return f"{loc.file}, row {loc.row(i)}"


def coerce(table_name: str, table: pa.Table, loc: Loc) -> pa.Table:
    """Convert a chunk of an input table (contract column names) to the contract's types."""
    kinds = {c.name: c.kind for c in INPUT_TABLES[table_name]}
    required = {c.name for c in INPUT_TABLES[table_name] if c.required}
    columns = {}
    for name in table.column_names:
        arr = table.column(name).combine_chunks() if table.num_rows else pa.array([], table.schema.field(name).type)
        columns[name] = _CONVERT[kinds[name]](arr, name, loc)
        if name in required and columns[name].null_count:
            i = _first(columns[name].is_null())
            raise loc.error(f"missing value in required column {name!r}", i, value=arr[i].as_py())
    return pa.table(columns)


def _first(mask: pa.Array | np.ndarray) -> int:
    values = mask.to_numpy(zero_copy_only=False) if isinstance(mask, pa.Array) else mask
    return int(np.flatnonzero(values)[0])


def _wrong_type(arr: pa.Array, name: str, loc: Loc, expected: str) -> InputError:
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    i = int(np.flatnonzero(valid)[0]) if valid.any() else 0
    value = arr[i].as_py() if len(arr) else None
    return loc.error(f"wrong type: column {name!r} holds {arr.type}, expected {expected}", i, value=value)


def _unparsed(arr: pa.Array, parsed: pa.Array, name: str, loc: Loc, expected: str) -> None:
    """Raise for the first row whose non-empty text did not parse (it came back null)."""
    given = pc.and_(pc.is_valid(arr), pc.not_equal(pc.utf8_trim_whitespace(arr), ""))
    bad = pc.and_(given, pc.is_null(parsed)).to_numpy(zero_copy_only=False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise loc.error(f"wrong type: column {name!r} must hold {expected}", i, value=arr[i].as_py())


def to_id(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t):
        return arr.cast(pa.string())
    raise _wrong_type(arr, name, loc, "strings or integers (identifiers)")


def to_str(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return arr.cast(pa.string())
    raise _wrong_type(arr, name, loc, "strings")


def to_float(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return arr.cast(pa.float32(), safe=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        parsed = pl.Series(arr).str.strip_chars().cast(pl.Float32, strict=False).to_arrow()
        _unparsed(arr, parsed, name, loc, "numbers")
        return parsed.cast(pa.float32())
    raise _wrong_type(arr, name, loc, "numbers")


# unix seconds beyond this (the year 5138) are another unit: 1.7e12 is a millisecond time of 2024
MAX_UNIX_SECONDS = 10**11


def to_time(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    """Unix seconds (int64) from integers, timestamps, dates or ISO 8601 strings (UTC unless zoned); a value
    too large for seconds (milliseconds, microseconds) is refused, naming its row."""
    seconds = _to_seconds(arr, name, loc)
    wild = pc.fill_null(pc.greater_equal(pc.abs(seconds), MAX_UNIX_SECONDS), False)
    if pc.any(wild).as_py():
        i = _first(wild)
        raise loc.error(
            f"column {name!r} holds unix seconds, and this is past the year 5000: milliseconds? (divide by 1000)",
            i,
            value=arr[i].as_py(),
        )
    return seconds


def _to_seconds(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_null(t):
        return arr.cast(pa.int64())
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_date(t):
            arr = arr.cast(pa.timestamp("s"))
        return pc.cast(arr, pa.timestamp("s", tz=getattr(arr.type, "tz", None)), safe=False).cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        strings = pl.Series(arr).str.strip_chars()
        as_int = strings.cast(pl.Int64, strict=False)
        if as_int.null_count() == strings.str.len_bytes().fill_null(0).eq(0).sum():
            return as_int.to_arrow().cast(pa.int64())  # every non-empty value is a whole number
        return _iso_times(arr, name, loc)
    raise _wrong_type(arr, name, loc, "unix seconds, timestamps, dates or ISO 8601 strings")


def _iso_times(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    out: list[int | None] = []
    for i, value in enumerate(arr.to_pylist()):
        text = (value or "").strip()
        if not text:
            out.append(None)
            continue
        if text.lstrip("-").isdigit():
            out.append(int(text))
            continue
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise loc.error(
                f"wrong type: column {name!r} must hold unix seconds or ISO 8601 times", i, value=value
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        out.append(int(moment.timestamp()))
    return pa.array(out, pa.int64())


def to_vector(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    """Lists of float32 (fixed-size lists stay fixed-size: no copy) from lists of numbers, or from
    strings like ``"[0.1, 0.2]"`` / ``"0.1 0.2"``."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.list_(pa.float32()))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        vt = t.value_type
        if not (pa.types.is_integer(vt) or pa.types.is_floating(vt) or pa.types.is_null(vt)):
            raise _wrong_type(arr, name, loc, "lists of numbers")
        if pa.types.is_fixed_size_list(t):
            return arr.cast(pa.list_(pa.float32(), t.list_size), safe=False)
        return arr.cast(pa.list_(pa.float32()), safe=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pl.Series(arr).str.strip_chars().str.strip_chars("[]").str.strip_chars()
        s = pl.select(
            pl.when(s.str.len_bytes() == 0).then(None).otherwise(s.str.replace_all(r"[\s,;]+", ","))
        ).to_series()
        items = s.str.split(",")
        parsed = items.cast(pl.List(pl.Float32), strict=False)
        bad_item = pl.select(parsed.list.eval(pl.element().is_null()).list.any()).to_series().fill_null(False)
        bad = bad_item.to_numpy() | (s.is_not_null() & parsed.is_null()).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise loc.error(f"wrong type: column {name!r} must hold lists of numbers", i, value=arr[i].as_py())
        return parsed.to_arrow().cast(pa.list_(pa.float32()))
    raise _wrong_type(arr, name, loc, "lists of numbers")


def to_images(arr: pa.Array, name: str, loc: Loc) -> pa.Array:
    """``list<struct{url, width, height, alt}>`` from such lists (missing fields null) or JSON strings."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), IMAGES_TYPE)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        rows: list[Any] = []
        for i, text in enumerate(arr.to_pylist()):
            if text is None or not text.strip():
                rows.append(None)
                continue
            try:
                value = json.loads(text)
            except ValueError:
                raise loc.error(f"wrong type: column {name!r} must hold a JSON list of images", i, value=text) from None
            rows.append(value)
        try:
            arr = pa.array(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise loc.error(f"wrong type: column {name!r}: {exc}", 0, value=rows[0] if rows else None) from None
        t = arr.type
        if pa.types.is_null(t):
            return pa.nulls(len(arr), IMAGES_TYPE)
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        raise _wrong_type(arr, name, loc, "lists of {url, width, height, alt}")
    structs = arr.flatten()
    fields = []
    for field in IMAGE_TYPE:
        idx = structs.type.get_field_index(field.name)
        if idx == -1:
            fields.append(pa.nulls(len(structs), field.type))
            continue
        try:
            fields.append(structs.field(idx).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise loc.error(f"wrong type: column {name!r}, image field {field.name!r}: {exc}", 0) from None
    values = pa.StructArray.from_arrays(fields, fields=list(IMAGE_TYPE))
    offsets = arr.offsets.cast(pa.int32()) if pa.types.is_large_list(t) else arr.offsets
    return pa.ListArray.from_arrays(offsets, values, type=IMAGES_TYPE, mask=arr.is_null())


_CONVERT = {"id": to_id, "str": to_str, "float": to_float, "time": to_time, "vector": to_vector, "images": to_images}


def check_vectors(arr: pa.Array, dim: int, loc: Loc, name: str = "embedding") -> pa.FixedSizeListArray:
    """Every row a finite vector of length ``dim``; returned as ``fixed_size_list<float32>[dim]``."""
    if arr.null_count:
        i = _first(arr.is_null())
        raise loc.error(f"missing {name} (give every pin an {name}, or none)", i, column=name)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    wrong = lengths != dim
    if wrong.any():  # (a fixed-size list of another size lands here too)
        i = int(np.flatnonzero(wrong)[0])
        raise loc.error(
            f"{name} has length {int(lengths[i])}, expected {dim} (the first row's length)",
            i,
            column=name,
            value=_preview(arr[i].as_py()),
        )
    flat = arr.flatten().to_numpy(zero_copy_only=False)  # a view unless values are null (then NaN)
    finite = np.isfinite(flat)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0]) // dim
        raise loc.error(f"{name} holds NaN or infinity", i, column=name, value=_preview(arr[i].as_py()))
    if pa.types.is_fixed_size_list(arr.type):
        return arr.cast(pa.list_(pa.float32(), dim))  # same buffers, the contract's type
    return pa.FixedSizeListArray.from_arrays(arr.flatten(), dim)


def _preview(values: Sequence[Any] | None, n: int = 6) -> str:
    if values is None:
        return "None"
    shown = ", ".join("nan" if isinstance(v, float) and math.isnan(v) else f"{v:.4g}" for v in values[:n])
    return f"[{shown}{', ...' if len(values) > n else ''}] ({len(values)} values)"


def check_range(arr: pa.Array, lo: float, hi: float, name: str, loc: Loc) -> None:
    values = arr.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isnan(values) & ((values < lo) | (values > hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise loc.error(f"{name} must be in [{lo}, {hi}]", i, column=name, value=float(values[i]))


def check_unique(ids: pa.ChunkedArray | pa.Array, where: Locations, name: str) -> None:
    """Raise for the first repeated value, naming both rows."""
    series = pl.Series(ids)
    first = series.is_first_distinct()
    if first.all():
        return
    dup = int((~first).arg_true()[0])
    value = series[dup]
    original = int((series == value).arg_true()[0])
    loc, i = where.find(dup)
    raise loc.error(f"duplicate {name} (first seen at {where.describe(original)})", i, column=name, value=value)
