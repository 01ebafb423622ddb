"""The tables adapter end to end: CSV / JSONL / Parquet in, the canonical tables of docs/artifacts.md out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import Tables

from linksage import schema
from linksage.config import load_config
from linksage.pipeline import run_stages


def _read(run_dir: Path, name: str) -> list[dict]:
    return pq.read_table(run_dir / "ingest" / f"{name}.parquet").to_pylist()


def test_csv_tables_become_canonical_tables(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run_dir = tables.run(capsys)
    assert code == 0, err
    pins = _read(run_dir, "pins")
    assert [p["pin_id"] for p in pins] == ["p1", "p2", "p3", "007"]  # CSV ids stay strings
    assert [p["pin_idx"] for p in pins] == [0, 1, 2, 3]
    assert pins[2]["created_at"] == 1364947200  # ISO time with a zone, in unix seconds
    assert pins[3]["created_at"] is None
    assert pins[3]["embedding"] == [0.5, 0.5]

    pages = _read(run_dir, "pages")
    urls = [p["url"] for p in pages]
    # keyed by canonical URL, first appearance in links; then pages known only from the pages table
    assert urls == [
        "https://shoes.example/red",
        "https://shoes.example/blue",
        "https://hats.example/green",
        "https://news.example/story",
    ]
    assert pages[0]["title"] == "Red shoes" and pages[0]["images"][0]["width"] == 640
    assert pages[0]["images"][0]["height"] is None
    assert pages[1]["title"] is None
    assert pages[0]["first_seen"] == 1364774400  # earliest created_at of a linking pin
    assert pages[1]["first_seen"] == 1364860800  # p2 (007 has no created_at)
    assert pages[3]["first_seen"] is None  # no pin links to it

    domains = {d["domain_idx"]: d["domain"] for d in _read(run_dir, "domains")}
    assert [domains[p["domain_idx"]] for p in pages] == [
        "shoes.example",
        "shoes.example",
        "hats.example",
        "news.example",
    ]

    links = _read(run_dir, "links")
    pairs = [(row["pin_idx"], row["page_idx"]) for row in links]
    assert pairs == [(0, 0), (1, 1), (2, 2), (3, 1)]  # p1 -> red twice is one link
    assert links[0]["cohesion"] == pytest.approx(0.9)  # merged: the larger cohesion
    assert math.isnan(links[1]["cohesion"])  # not given

    boards = _read(run_dir, "boards")
    assert [(b["board_id"], b["text"]) for b in boards] == [("b1", "Shoes"), ("b3", "Empty board"), ("b2", "")]
    assert [(r["board_idx"], r["pin_idx"]) for r in _read(run_dir, "board_pins")] == [(0, 0), (0, 1), (2, 2)]

    manifest = json.loads((run_dir / "ingest" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["pins"] == 4 and counts["pages"] == 4 and counts["links"] == 4 and counts["domains"] == 3
    assert counts["duplicate_links_merged"] == 1 and counts["board_memberships_merged"] == 1
    assert counts["pages_content_only"] == 1 and counts["boards_without_pins"] == 1


def test_canonical_tables_match_the_documented_schemas(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run_dir = tables.run(capsys)
    assert code == 0, err
    expected = {
        "pins": schema.pins_schema(2),
        "pages": schema.PAGES_SCHEMA,
        "links": schema.LINKS_SCHEMA,
        "boards": schema.BOARDS_SCHEMA,
        "board_pins": schema.BOARD_PINS_SCHEMA,
        "domains": schema.DOMAINS_SCHEMA,
    }
    for name, want in expected.items():
        got = pq.read_schema(run_dir / "ingest" / schema.CANONICAL_FILES[name])
        assert got.remove_metadata().equals(want), name
        rows = pq.read_table(run_dir / "ingest" / f"{name}.parquet")
        idx = next(c for c in rows.column_names if c.endswith("_idx"))
        if name in ("pins", "pages", "boards", "domains"):  # row i holds index i
            assert rows[idx].to_pylist() == list(range(rows.num_rows))


def test_column_mapping_and_other_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = Tables(tmp_path)
    folder = tmp_path / "pins"
    folder.mkdir()
    pq.write_table(
        pa.table({"item": pa.array([10, 11]), "title": ["a", "b"], "vec": [[1.0, 2.0], [3.0, 4.0]]}),
        folder / "part-0.parquet",
    )
    pq.write_table(pa.table({"item": pa.array([12]), "title": ["c"], "vec": [[5.0, 6.0]]}), folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")
    t.files["pins"] = folder
    t.write(
        "links",
        '{"item": 10, "target": "http://a.example/x"}\n{"item": 12, "target": "http://b.example/y"}\n',
        ".jsonl",
    )
    t.extra["columns"] = {
        "pins": {"pin_id": "item", "text": "title", "embedding": "vec"},
        "links": {"pin_id": "item", "url": "target"},
    }
    code, err, run_dir = t.run(capsys)
    assert code == 0, err
    pins = _read(run_dir, "pins")
    assert [p["pin_id"] for p in pins] == ["10", "11", "12"]
    assert pins[2]["embedding"] == [5.0, 6.0]
    assert [(r["pin_idx"], r["page_idx"]) for r in _read(run_dir, "links")] == [(0, 0), (2, 1)]
    assert _read(run_dir, "boards") == [] and _read(run_dir, "board_pins") == []


def test_bad_urls_can_be_skipped_and_are_counted(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    tables.write("links", "pin_id,url\np1,http://[stone](http://i.imgur.com/x.jpg)\np2,http://ok.example/\n")
    tables.extra["bad_urls"] = "skip"
    code, err, run_dir = tables.run(capsys)
    assert code == 0, err
    manifest = json.loads((run_dir / "ingest" / "manifest.json").read_text())
    assert manifest["counts"]["bad_urls_skipped"] == 1
    assert manifest["counts"]["link_rows"] == 2 and manifest["counts"]["links"] == 1
    assert list(manifest["metrics"]["bad_url_reasons"].values()) == [1]
    assert manifest["counts"]["pins_without_links"] == 3


def test_unchanged_inputs_skip_the_stage_and_changed_ones_rerun(tables: Tables) -> None:
    cfg = load_config(tables.config())
    run_dir = tables.root / "run"
    first = run_stages(cfg, run_dir, ["ingest"])["ingest"]
    again = run_stages(cfg, run_dir, ["ingest"])["ingest"]
    assert again["started_at"] == first["started_at"]  # skipped
    with open(tables.files["pins"], "a") as fh:
        fh.write('p9,new pin,1364774400,"[1.0, 1.0]"\n')
    third = run_stages(cfg, run_dir, ["ingest"])["ingest"]
    assert third["key"] != first["key"] and third["counts"]["pins"] == 5


def test_read_table_reads_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "d" / "b.csv").write_text("x,y\n3,4\n")
    table = schema.read_table(tmp_path / "d")
    assert table.to_pydict() == {"x": ["1", "3"], "y": ["2", "4"]}  # CSV values come back as strings
    assert schema.read_table(tmp_path / "d" / "b.csv", ["y"]).to_pydict() == {"y": ["4"]}


def test_large_input_streams_in_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Many batches (batch_rows=1000) give the same tables as one batch."""
    n = 5_000
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    pq.write_table(pa.table({"pin_id": ids, "text": ids}), tmp_path / "pins.parquet")
    targets = rng.integers(0, 700, n)
    urls = [f"http://site{t % 13}.example/page/{t}" for t in targets]
    pq.write_table(pa.table({"pin_id": ids, "url": urls}), tmp_path / "links.parquet")
    outputs = []
    for batch in (1000, 1_000_000):
        t = Tables(tmp_path / f"b{batch}")
        t.root.mkdir()
        t.files = {"pins": tmp_path / "pins.parquet", "links": tmp_path / "links.parquet"}
        t.config()
        cfg = load_config(t.config(), [f"ingest.batch_rows={batch}"])
        run_stages(cfg, t.root / "run", ["ingest"])
        outputs.append({n: pq.read_table(t.root / "run" / "ingest" / f"{n}.parquet") for n in ("pages", "links")})
    assert outputs[0]["pages"].equals(outputs[1]["pages"])
    assert outputs[0]["links"].drop(["cohesion"]).equals(outputs[1]["links"].drop(["cohesion"]))  # NaN != NaN
    assert outputs[0]["pages"].num_rows == len(set(targets))
