"""The worked example of docs/ingest.md runs exactly as written and gives the counts the doc states."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from linksage.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def test_worked_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 6
    for name, text in blocks:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", "run", "ingest", "--config", "byod/ingest.toml", "--run-dir", "runs/byod"]) == 0
    counts = json.loads(Path("runs/byod/ingest/manifest.json").read_text())["counts"]
    assert (counts["pins"], counts["pages"], counts["links"], counts["boards"], counts["domains"]) == (4, 4, 4, 2, 2)
    assert counts["duplicate_links_merged"] == 1 and counts["pages_with_text"] == 2
    urls = pq.read_table("runs/byod/ingest/pages.parquet")["url"].to_pylist()
    assert urls[0] == "https://shoes.example/trail-runner"
