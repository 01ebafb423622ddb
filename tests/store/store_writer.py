"""Subprocess of the crash tests: one upsert of ``ids`` with content ``seed``, optionally slowed per batch.

    python store_writer.py STORE FIRST_ID LAST_ID SEED DAY [SECONDS_PER_BATCH [WRITE_PARALLELISM]]

Prints "start" before the upsert and "done <version>" after it. LINKSAGE_STORE_PAUSE (see lance_store)
makes the store itself stop at a labelled point.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from store_rows import DIM, batches

from linksage.store.lance_store import EmbeddingStore


def slowed(source: Iterator[pa.RecordBatch], seconds: float) -> Iterator[pa.RecordBatch]:
    for batch in source:
        time.sleep(seconds)
        yield batch


def main(argv: list[str]) -> None:
    path, first, last, seed, day = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    delay = float(argv[5]) if len(argv) > 5 else 0.0
    writers = int(argv[6]) if len(argv) > 6 else 0
    store = EmbeddingStore.open_or_create(path, DIM)
    print("start", flush=True)
    result = store.upsert(slowed(batches(np.arange(first, last), seed, day, size=20), delay), day, writers)
    print(f"done {result.version}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
