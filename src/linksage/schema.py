"""The data contract: the input tables every adapter produces and the canonical tables ingest writes.

Input tables (column -> kind; ``?`` marks an optional column)::

    pins        pin_id id, text str?, image_url str?, embedding vector?, created_at time?
    links       pin_id id, url str, cohesion float?
    boards      board_id id, pin_id id                      (optional table: memberships)
    board_meta  board_id id, text str?                      (optional table)
    pages       url str, title str?, description str?, body str?, images images?, fetched_at time?

Kinds: ``id`` is a string (integers are accepted and written as decimal strings); ``time`` is unix
seconds, an Arrow timestamp or date, or an ISO 8601 string; ``vector`` is a list of numbers (or, in
CSV, a string like ``"[0.1, 0.2]"``); ``images`` is a list of {url, width, height, alt}.

The canonical tables (docs/artifacts.md, section ``ingest/``) are the ``*_SCHEMA`` objects below.
``read_table`` reads a Parquet, CSV or JSONL file, or a folder of them, as one Arrow table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from linksage.errors import InputError
from linksage.jsonl_errors import locate_jsonl_error

Kind = Literal["id", "str", "float", "time", "vector", "images"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False


INPUT_TABLES: dict[str, tuple[Column, ...]] = {
    "pins": (
        Column("pin_id", "id", required=True),
        Column("text", "str"),
        Column("image_url", "str"),
        Column("embedding", "vector"),
        Column("created_at", "time"),
    ),
    "links": (Column("pin_id", "id", required=True), Column("url", "str", required=True), Column("cohesion", "float")),
    "boards": (Column("board_id", "id", required=True), Column("pin_id", "id", required=True)),
    "board_meta": (Column("board_id", "id", required=True), Column("text", "str")),
    "pages": (
        Column("url", "str", required=True),
        Column("title", "str"),
        Column("description", "str"),
        Column("body", "str"),
        Column("images", "images"),
        Column("fetched_at", "time"),
    ),
}
REQUIRED_TABLES = ("pins", "links")

IMAGE_TYPE = pa.struct([("url", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("alt", pa.string())])
IMAGES_TYPE = pa.list_(IMAGE_TYPE)


def pins_schema(embedding_dim: int | None) -> pa.Schema:
    """``pins.parquet``; the ``embedding`` column exists only when the input gave target embeddings."""
    fields = [
        pa.field("pin_idx", pa.int32(), nullable=False),
        pa.field("pin_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("image_url", pa.string()),
        pa.field("created_at", pa.int64()),
    ]
    if embedding_dim is not None:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
    return pa.schema(fields)


PAGES_SCHEMA = pa.schema(
    [
        pa.field("page_idx", pa.int32(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("domain_idx", pa.int32(), nullable=False),
        pa.field("first_seen", pa.int64()),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("body", pa.string()),
        pa.field("images", IMAGES_TYPE),
        pa.field("fetched_at", pa.int64()),
    ]
)
LINKS_SCHEMA = pa.schema(
    [
        pa.field("pin_idx", pa.int32(), nullable=False),
        pa.field("page_idx", pa.int32(), nullable=False),
        pa.field("cohesion", pa.float32(), nullable=False),
    ]
)
BOARDS_SCHEMA = pa.schema(
    [
        pa.field("board_idx", pa.int32(), nullable=False),
        pa.field("board_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)
BOARD_PINS_SCHEMA = pa.schema(
    [pa.field("board_idx", pa.int32(), nullable=False), pa.field("pin_idx", pa.int32(), nullable=False)]
)
DOMAINS_SCHEMA = pa.schema(
    [pa.field("domain_idx", pa.int32(), nullable=False), pa.field("domain", pa.string(), nullable=False)]
)
TRUTH_SCHEMA = pa.schema(
    [pa.field("page_idx", pa.int32(), nullable=False), pa.field("topic", pa.int32(), nullable=False)]
)

CANONICAL_FILES = {
    "pins": "pins.parquet",
    "pages": "pages.parquet",
    "links": "links.parquet",
    "boards": "boards.parquet",
    "board_pins": "board_pins.parquet",
    "domains": "domains.parquet",
    "truth": "truth.parquet",
}

Format = Literal["parquet", "csv", "jsonl"]
_SUFFIXES: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def file_format(path: Path) -> Format | None:
    """The format of a data file from its name (``.csv.gz`` counts as CSV), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst") and path.suffix.lower() != ".parquet":
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def data_files(path: Path | str) -> list[Path]:
    """The data files at ``path``: the file itself, or a folder's data files (recursively, sorted).

    Names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc``) are skipped.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", file=path)
    if path.is_file():
        if file_format(path) is None:
            raise InputError(f"unknown file type (expected {', '.join(sorted(_SUFFIXES))})", file=path)
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and file_format(p) is not None
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise InputError(f"folder holds no Parquet, CSV or JSONL files ({', '.join(sorted(_SUFFIXES))})", file=path)
    return files


class DataFile:
    """One Parquet, CSV or JSONL file: its column names, and its rows in batches.

    CSV values are read as strings (identifiers like ``007`` keep their zeros; ``ingest`` converts
    and checks every column itself). JSONL files are read whole (split very large ones).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        fmt = file_format(self.path)
        if fmt is None:
            raise InputError("unknown file type", file=self.path)
        self.format: Format = fmt
        self._json: pa.Table | None = None
        try:
            self.columns = self._columns()
        except (pa.ArrowInvalid, OSError) as exc:
            located = locate_jsonl_error(self.path) if fmt == "jsonl" and isinstance(exc, pa.ArrowInvalid) else None
            if located is not None:
                raise located from exc  # the row, line and value that pyarrow's message lacks
            raise InputError(f"cannot read {fmt} file: {exc}", file=self.path) from exc

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(self.path).names)
        if self.format == "csv":
            return list(self._csv_reader(None).schema.names)
        import pyarrow.json as pj

        self._json = pj.read_json(self.path)
        return list(self._json.schema.names)

    def _csv_reader(self, columns: list[str] | None) -> pa.RecordBatchReader:
        import pyarrow.csv as pc_csv

        convert = pc_csv.ConvertOptions(
            include_columns=columns,
            column_types=None if columns is None else {c: pa.string() for c in columns},
            strings_can_be_null=False,
        )
        return pc_csv.open_csv(self.path, read_options=pc_csv.ReadOptions(block_size=8 << 20), convert_options=convert)

    def batches(self, columns: list[str], batch_rows: int = 262_144) -> Iterator[pa.Table]:
        """The rows in order, as tables holding ``columns`` (which must exist) in that order."""
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                # One row group at a time, without pre-buffering the whole file: memory stays near one
                # row group (pre-buffering doubled the peak when reading embeddings).
                data = pq.ParquetFile(self.path, pre_buffer=False)
                for group in range(data.num_row_groups):
                    for batch in data.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[group]):
                        yield pa.Table.from_batches([batch], schema=batch.schema).select(columns)
            elif self.format == "csv":
                for batch in self._csv_reader(columns):
                    yield pa.Table.from_batches([batch]).select(columns)
            else:
                assert self._json is not None
                table = self._json.select(columns)
                for start in range(0, max(table.num_rows, 1), batch_rows):
                    yield table.slice(start, batch_rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read {self.format} file: {exc}", file=self.path) from exc


def read_table(path: Path | str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet, CSV or JSONL file, or a folder of them, as one table.

    ``columns`` (default: the first file's) must exist in every file. CSV values come back as strings.
    """
    tables: list[pa.Table] = []
    for file in data_files(path):
        data = DataFile(file)
        wanted = (
            list(columns) if columns is not None else (list(data.columns) if not tables else tables[0].column_names)
        )
        missing = [c for c in wanted if c not in data.columns]
        if missing:
            raise InputError(
                f"missing column {missing[0]!r} (the file has: {', '.join(data.columns)})", file=file, column=missing[0]
            )
        tables.extend(data.batches(wanted))
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
