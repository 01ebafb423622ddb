"""The ANN build key: what it hashes, and what it leaves out."""

from __future__ import annotations

import dataclasses

from linksage.config._load import added_later
from linksage.config.store import IndexConfig
from linksage.search.indices import build_key


def test_build_key_is_pinned() -> None:
    # Stores built since the key was introduced carry these; a change rebuilds every user's indices, so
    # change them only on purpose (and say so in the release notes).
    assert build_key(IndexConfig(), 1_000) == "bc4e600f"
    assert build_key(IndexConfig(), 2_000_000) == "a5ca4403"


def test_search_time_params_do_not_change_the_key() -> None:
    base = build_key(IndexConfig(), 1_000)
    assert build_key(dataclasses.replace(IndexConfig(), nprobe=3, rerank=7, hnsw_ef_search=9), 1_000) == base


def test_build_params_change_the_key() -> None:
    base = build_key(IndexConfig(), 1_000)
    for change in ({"exact_below": 10}, {"nlist": 64}, {"pq_m": 8}, {"hnsw_m": 16}, {"seed": 1}, {"kind": "hnsw"}):
        assert build_key(dataclasses.replace(IndexConfig(), **change), 1_000) != base, change


@dataclasses.dataclass(frozen=True)
class _LaterIndexConfig(IndexConfig):
    new_knob: int = added_later(0)


def test_a_field_added_later_keeps_old_keys_at_its_default() -> None:
    assert build_key(_LaterIndexConfig(), 1_000) == build_key(IndexConfig(), 1_000)
    assert build_key(_LaterIndexConfig(new_knob=1), 1_000) != build_key(IndexConfig(), 1_000)
