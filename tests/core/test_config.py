"""The config loader: defaults, TOML files, --set overrides, and errors that name the key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from linksage.cli import main
from linksage.config import Config, ConfigError, config_to_toml, fingerprint, load_config


def test_defaults_only_in_dataclasses() -> None:
    assert load_config() == Config()


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[walk]\ntop_k = 7\nmetapaths = ["page-domain-page"]\n[ingest]\nsource = "reddit"\n')
    cfg = load_config(path, ["walk.top_k=9", "ingest.reddit.start=2013-04-01"])
    assert cfg.walk.top_k == 9
    assert cfg.walk.metapaths == ("page-domain-page",)
    assert cfg.ingest.source == "reddit"
    assert cfg.ingest.reddit.start == "2013-04-01"  # not TOML: kept as a string


def test_resolved_config_round_trips() -> None:
    cfg = load_config(None, ["walk.top_k=3", "train.dims=[8, 16]"])
    path_text = config_to_toml(cfg)
    assert "top_k = 3" in path_text
    import tomllib

    from linksage.config._load import build

    assert build(Config, tomllib.loads(path_text)) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("walk.top_k=many", "walk.top_k: expected an integer, got 'many'"),
        ("walk.nope=1", "unknown config key 'walk.nope'"),
        ("ingest.source=kafka", "ingest.source: 'kafka' is not one of 'synthetic', 'reddit', 'tables'"),
        ("walk.boost=1", "walk.boost: expected true or false, got 1"),
        ("train.dims=3", "train.dims: expected a list, got 3"),
        ("walk.top_k", "expected section.key=value"),
        ("ingest.synthetic.n_links=0", "ingest.synthetic.n_links: must be positive, got 0"),
    ],
)
def test_errors_name_key_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_bad_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[walk\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_config(bad)


def test_fingerprint_tracks_values() -> None:
    assert fingerprint(load_config().walk) == fingerprint(Config().walk)
    assert fingerprint(load_config(None, ["walk.top_k=3"]).walk) != fingerprint(Config().walk)


def test_cli_config_prints_and_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "walk.top_k=5"]) == 0
    assert "top_k = 5" in capsys.readouterr().out
    assert main(["config", "--set", "walk.top_k=x"]) == 2
    assert "walk.top_k: expected an integer, got 'x'" in capsys.readouterr().err
