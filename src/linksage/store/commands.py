"""What ``linksage store history`` and ``linksage store restore`` do, as plain functions returning data."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from linksage.config.store import StoreConfig
from linksage.store.lance_store import EmbeddingStore


def _store(run_dir: Path | str, cfg: StoreConfig | None) -> EmbeddingStore:
    from linksage.search.indices import store_path

    return EmbeddingStore.open(store_path(run_dir, cfg or StoreConfig()))


def store_history(run_dir: Path | str, cfg: StoreConfig | None = None) -> list[dict[str, Any]]:
    """Every version of the run directory's store, oldest first: version, timestamp, rows, tags, days."""
    return [{**asdict(v), "days": list(v.days), "tags": list(v.tags)} for v in _store(run_dir, cfg).history()]


def store_restore(run_dir: Path | str, version: int, cfg: StoreConfig | None = None) -> dict[str, Any]:
    """Make ``version`` the newest state again (as a new version; nothing is deleted)."""
    store = _store(run_dir, cfg)
    before = store.version
    new = store.restore(version)
    return {"restored": version, "previous": before, "version": new, "rows": store.count()}


def format_history(rows: list[dict[str, Any]]) -> str:
    """A text table of ``store_history``'s rows."""
    lines = [f"{'version':>7}  {'timestamp':<26}  {'rows':>11}  tags"]
    for r in rows:
        note = ", ".join(r["tags"]) or ("(the store's creation, empty)" if r["version"] == 1 and not r["rows"] else "")
        lines.append(f"{r['version']:>7}  {r['timestamp']:<26}  {r['rows']:>11,}  {note}")
    return "\n".join(lines)
