"""The input contract in motion: chunks of contract tables, and the generic files adapter.

``ContractInput`` is what every adapter hands to ``canonical.build_canonical``: one lazy stream of
chunks per contract table, each chunk already in the contract's column names and types and
carrying where its rows came from (for error messages). The ``tables`` adapter reads Parquet, CSV
or JSONL files (or folders of them) with a per-table column mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from linksage.config.ingest import TablesSource
from linksage.errors import InputError
from linksage.ingest.validate import Loc, coerce
from linksage.schema import INPUT_TABLES, DataFile, data_files


@dataclass(frozen=True)
class Chunk:
    """Rows of one contract table (contract names and types) and where they came from."""

    table: pa.Table
    loc: Loc


@dataclass
class ContractInput:
    """Lazy streams of chunks, one per contract table; each stream is consumed once."""

    pins: Iterable[Chunk]
    links: Iterable[Chunk]
    boards: Iterable[Chunk] = ()
    board_meta: Iterable[Chunk] = ()
    pages: Iterable[Chunk] = ()
    sources: dict[str, str] = field(default_factory=dict)  # table -> where it is read from (for messages)
    sizes: dict[str, int] = field(default_factory=dict)  # table -> row count, where known (progress ETA)
    urls_canonical: bool = False  # links' URLs are already canonical (the adapter canonicalised them)


def tables_input(src: TablesSource, batch_rows: int) -> ContractInput:
    """The ``tables`` adapter: contract tables from files, renamed by ``src.columns``."""
    paths = {name: getattr(src, name) for name in INPUT_TABLES}
    for name in ("pins", "links"):
        if not paths[name]:
            raise InputError(f"ingest.tables.{name} is not set: the {name} table is required")
    streams = {
        name: file_chunks(name, path, src.columns.get(name, {}), batch_rows) if path else iter(())
        for name, path in paths.items()
    }
    return ContractInput(
        pins=streams["pins"],
        links=streams["links"],
        boards=streams["boards"],
        board_meta=streams["board_meta"],
        pages=streams["pages"],
        sources={name: path for name, path in paths.items() if path},
        sizes={name: n for name, path in paths.items() if path and (n := _parquet_rows(path)) is not None},
    )


def tables_files(src: TablesSource) -> list[Path]:
    """Every file the ``tables`` adapter reads."""
    return [f for name in INPUT_TABLES if (path := getattr(src, name)) for f in data_files(path)]


def file_chunks(table: str, path: str | Path, mapping: Mapping[str, str], batch_rows: int) -> Iterator[Chunk]:
    """Chunks of one contract table from a file or folder; ``mapping`` is contract name -> file column.

    Every file must have the required columns and the same optional ones as the first file, and
    the table must not be empty.
    """
    first_present: list[str] | None = None
    first_file = ""
    total = 0
    for file in data_files(path):
        data = DataFile(file)
        present = []
        for col in INPUT_TABLES[table]:
            source = mapping.get(col.name, col.name)
            if source in data.columns:
                present.append(col.name)
            elif col.required or col.name in mapping:
                via = f" (mapped to {col.name!r} by ingest.tables.columns.{table})" if col.name in mapping else ""
                raise InputError(
                    f"missing column {source!r}{via} in the {table} table; the file has: {', '.join(data.columns)}",
                    file=file,
                    column=source,
                )
        if first_present is None:
            first_present, first_file = present, str(file)
        elif present != first_present:
            raise InputError(
                f"the {table} files disagree on columns: this file has {', '.join(present)}; "
                f"{first_file} has {', '.join(first_present)}",
                file=file,
            )
        sources = [mapping.get(name, name) for name in present]
        renamed = tuple((name, source) for name, source in zip(present, sources, strict=True) if name != source)
        row0 = 0
        for batch in data.batches(sources, batch_rows):
            loc = Loc(str(file), row0, renamed=renamed)
            yield Chunk(coerce(table, batch.rename_columns(present), loc), loc)
            row0 += batch.num_rows
        total += row0
    if total == 0:  # a table you point at should hold something, optional or not
        raise InputError(f"empty input: the {table} table has no rows", file=path)


def _parquet_rows(path: str) -> int | None:
    import pyarrow.parquet as pq

    total = 0
    try:
        for file in data_files(path):
            if file.suffix.lower() not in (".parquet", ".pq"):
                return None
            total += pq.ParquetFile(file).metadata.num_rows
    except (InputError, OSError, pa.ArrowInvalid):
        return None
    return total
