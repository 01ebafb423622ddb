"""Fixtures of the update tests: one template run per session, copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from update_world import build_template, copy_run, day_input


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tmp_path_factory.mktemp("update-template"))


@pytest.fixture
def run(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template run directory (beside the template's content cache)."""
    return copy_run(template, template.parent / f"run-{tmp_path.name}")


@pytest.fixture(scope="session")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return day_input(tmp_path_factory.mktemp("update-day") / "2013-07-01")
