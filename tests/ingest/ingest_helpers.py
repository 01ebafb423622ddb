"""Helpers of the ingest tests: a small valid input in the contract's shape that tests break and run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from linksage.cli import main


@dataclass
class Tables:
    """CSV files of a small valid input; tests break one thing and run ingest through the CLI."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more [ingest.tables] keys

    def write(self, name: str, text: str, suffix: str = ".csv") -> Path:
        path = self.root / f"{name}{suffix}"
        path.write_text(text)
        self.files[name] = path
        return path

    def config(self) -> Path:
        lines = ["[ingest]", 'source = "tables"', "[ingest.tables]"]
        lines += [f"{name} = {json.dumps(str(path))}" for name, path in self.files.items()]
        lines += [f"{k} = {json.dumps(v)}" for k, v in self.extra.items() if not isinstance(v, dict)]
        for key, value in self.extra.items():
            if isinstance(value, dict):
                for table, mapping in value.items():
                    items = ", ".join(f"{c} = {json.dumps(s)}" for c, s in mapping.items())
                    lines += [f"[ingest.tables.{key}.{table}]", items.replace(", ", "\n")]
        path = self.root / "ingest.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
        """(exit code, stderr, run dir) of ``linksage run ingest`` on these files."""
        run_dir = self.root / "run"
        code = main(["--quiet", "run", "ingest", "--config", str(self.config()), "--run-dir", str(run_dir)])
        return code, capsys.readouterr().err, run_dir
