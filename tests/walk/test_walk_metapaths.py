"""Metapath strings and the walk config: parsing, validation, and errors that name key and value."""

from __future__ import annotations

import pytest

from linksage.config import ConfigError, load_config
from linksage.config.walk import WalkConfig
from linksage.walk.metapaths import MetapathError, parse_metapath


def test_parse_metapath() -> None:
    path = parse_metapath("page-pin-board-pin-page")
    assert path.nodes == ("page", "pin", "board", "pin", "page")
    assert path.hops == (("page", "pin"), ("pin", "board"), ("board", "pin"), ("pin", "page"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("page-pin-pag", "unknown node type 'pag'"),
        ("page--page", "expected node types joined by '-'"),
        ("pin-page", "must start and end at 'page'"),
        ("page-board-page", "page-board is not an edge type"),
        ("page", "expected node types joined by '-'"),
    ],
)
def test_bad_metapaths(text: str, message: str) -> None:
    with pytest.raises(MetapathError, match=message):
        parse_metapath(text)


def test_config_names_the_bad_metapath() -> None:
    with pytest.raises(ConfigError, match=r"walk.metapaths\[1\]: metapath 'page-pin-pin-page': pin-pin is not"):
        load_config(None, ['walk.metapaths=["page-pin-page", "page-pin-pin-page"]'])


def test_shares_default_to_equal_and_are_normalised() -> None:
    assert WalkConfig(metapaths=("page-pin-page", "page-domain-page")).shares() == (0.5, 0.5)
    cfg = load_config(None, ['walk.metapaths=["page-pin-page", "page-domain-page"]', "walk.metapath_shares=[3, 1]"])
    assert cfg.walk.shares() == (0.75, 0.25)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("walk.metapath_shares=[1.0, 2.0]", r"walk.metapath_shares: 2 shares for 3 metapaths, got \[1.0, 2.0\]"),
        ("walk.metapath_shares=[1.0, 0.0, 1.0]", r"walk.metapath_shares\[1\]: must be > 0, got 0.0"),
        ("walk.mean_walk_length=0.5", r"walk.mean_walk_length: must be >= 1 \(traversals per walk\), got 0.5"),
        ("walk.walkers=0", r"walk.walkers: must be >= 1, got 0"),
        ("walk.n_p=-1", r"walk.n_p: must be >= 0 \(0 = no early stopping\), got -1"),
        ("walk.budget_degree_c=1.0", r"walk.budget_degree_c: must be > 1, got 1.0"),
        ("walk.metapaths=[]", r"walk.metapaths: at least one metapath is needed"),
    ],
)
def test_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
