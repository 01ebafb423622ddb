"""The run directory: one folder per stage, each sealed by a ``manifest.json`` written last.

A stage writes into a private staging folder (``.staging/<stage>-<token>/``); when it has written
everything, the manifest goes in last and the folder is renamed into place. A stage folder without a
manifest never exists, so a run killed at any moment loses at most the stage in flight. Long stages
keep resumable scratch state (checkpoints) under ``.work/<stage>/``, which survives a crash.

Layout::

    runs/demo/
      ingest/manifest.json   pins.parquet  pages.parquet  links.parquet ...
      content/manifest.json  ...
      .work/train/           checkpoints of the stage in flight
      .staging/              stage folders being written (removed on success)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# the resolved config of the run directory's latest `linksage run`: what a command given --run-dir and no
# --config reads
RUN_CONFIG = "config.toml"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write (e.g. with pyarrow); renamed to ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of an input file: path, size and modification time (as make does)."""
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def files_fingerprint(paths: Iterable[Path]) -> str:
    items = sorted(json.dumps(file_fingerprint(p), sort_keys=True) for p in paths)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


class RunDir:
    """Paths and manifests of one run directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def manifest_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / MANIFEST

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The stage's manifest, or None when the stage has not completed."""
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        with open(path) as fh:
            result: dict[str, Any] = json.load(fh)
        return result

    def require(self, stage: str) -> Path:
        """The folder of a completed stage; a clear error when it is missing."""
        if self.manifest(stage) is None:
            raise FileNotFoundError(
                f"stage {stage!r} has not completed in {self.root} (no {self.manifest_path(stage)}); "
                f"run `linksage run {stage} --run-dir {self.root}` first"
            )
        return self.stage_dir(stage)

    def work_dir(self, stage: str) -> Path:
        """Scratch space of a stage that survives crashes (checkpoints, partial parts)."""
        path = self.root / ".work" / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear_work(self, stage: str) -> None:
        shutil.rmtree(self.root / ".work" / stage, ignore_errors=True)

    def new_staging(self, stage: str) -> Path:
        path = self.root / ".staging" / f"{stage}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def seal(self, stage: str, staging: Path, manifest: dict[str, Any]) -> Path:
        """Write the manifest last into ``staging`` and move the folder into place."""
        atomic_write_json(staging / MANIFEST, manifest)
        target = self.stage_dir(stage)
        trash = None
        if target.exists():
            trash = self.root / ".staging" / f"old-{stage}-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
        os.replace(staging, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        _fsync_dir(self.root)
        return target

    def clean_staging(self) -> None:
        """Remove leftovers of stages that died in flight."""
        shutil.rmtree(self.root / ".staging", ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
