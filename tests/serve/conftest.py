"""Fixtures of the serving tests: one small run directory per session (``serve_world``), and clients."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_world import build_world

from linksage.config import Config
from linksage.config.serve import ServeConfig
from linksage.serve.app import create_app


@pytest.fixture(scope="session")
def world_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    root = tmp_path_factory.mktemp("serve") / "run"
    cfg = build_world(root)
    return root, cfg


@pytest.fixture(scope="session")
def world(world_config: tuple[Path, Config]) -> Path:
    """The shared run directory: read-only for tests (copy it with ``world_copy`` to write)."""
    return world_config[0]


@pytest.fixture
def world_copy(world: Path, tmp_path: Path) -> Path:
    """A private copy of the run directory, for tests that write to its store."""
    dest = tmp_path / "run"
    shutil.copytree(world, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


@pytest.fixture(scope="module")
def client(world: Path) -> Iterator[TestClient]:
    """The app over the shared world, loaded once, no background reloads, store writes refused."""
    app = create_app(world, serve_cfg=ServeConfig(allow_store_writes=False), reload=False)
    with TestClient(app) as c:
        yield c
