"""Shared fixtures of the embed tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from embed_world import write_run


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embed world with 24-d mean-image vectors (70% of pages) and a model that reads them."""
    return write_run(tmp_path_factory.mktemp("images") / "run", image_dim=24)
