"""A run directory remembers its config: commands given --run-dir and no --config read run_dir/config.toml."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from linksage.cli import main

SMALL = ["--set", "ingest.synthetic.n_links=3000"]


def _ingest_started(run: Path) -> str:
    started: str = json.loads((run / "ingest" / "manifest.json").read_text())["started_at"]
    return started


def _recorded_links(run: Path) -> int:
    links: int = tomllib.loads((run / "config.toml").read_text())["ingest"]["synthetic"]["n_links"]
    return links


def test_a_later_command_without_config_reuses_the_recorded_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "run", "ingest", "--run-dir", str(run), *SMALL]) == 0
    assert _recorded_links(run) == 3000
    first = _ingest_started(run)
    # no --config, no --set: the recorded config, so ingest is up to date (the defaults would rebuild it)
    assert main(["--quiet", "run", "ingest", "--run-dir", str(run)]) == 0
    assert _ingest_started(run) == first
    # --set goes on top of the recorded config, and the new value is recorded in turn
    assert main(["--quiet", "run", "ingest", "--run-dir", str(run), "--set", "ingest.synthetic.n_links=2000"]) == 0
    assert _recorded_links(run) == 2000
    assert json.loads((run / "ingest" / "manifest.json").read_text())["counts"]["links"] <= 2000


def test_a_run_directory_without_a_recorded_config_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "run", "ingest", "--run-dir", str(run), *SMALL]) == 0
    assert "no --config" not in capsys.readouterr().err
    (run / "config.toml").unlink()  # a run directory from before configs were recorded
    assert main(["--quiet", "run", "ingest", "--run-dir", str(run), *SMALL]) == 0
    assert f"no --config and no {run / 'config.toml'}: the built-in defaults" in capsys.readouterr().err
