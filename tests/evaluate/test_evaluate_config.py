"""EvaluateConfig: defaults, and errors that name the dotted key and the value."""

from __future__ import annotations

import pytest

from linksage.config import ConfigError
from linksage.config._load import build
from linksage.config.evaluate import EvaluateConfig, single_dim_of


def test_defaults() -> None:
    cfg = EvaluateConfig()
    assert cfg.ks == (10, 50, 100) and cfg.pool_size == 2_000_000
    assert cfg.baselines == ("zero_shot", "content_only", "single_dim_64", "single_dim_256")
    assert single_dim_of("single_dim_64") == 64 and single_dim_of("content_only") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ks": [100, 10]}, "evaluate.ks: must be positive, increasing and unique, got [100, 10]"),
        ({"baselines": ["magic"]}, "evaluate.baselines: unknown baseline 'magic'"),
        ({"baselines": ["single_dim_0"]}, "evaluate.baselines: unknown baseline 'single_dim_0'"),
        ({"slices": ["weekday"]}, "evaluate.slices: unknown slice 'weekday'"),
        ({"degree_buckets": [0, 2]}, "evaluate.degree_buckets: must start at >= 1 and increase, got [0, 2]"),
        ({"pool_size": 0}, "evaluate.pool_size: must be >= 1, got 0"),
        ({"device": "tpu"}, "evaluate.device: must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"split": "train"}, "evaluate.split: 'train' is not one of 'test', 'validation'"),
    ],
)
def test_errors_name_key_and_value(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(EvaluateConfig, data, prefix="evaluate.")
    assert message in str(err.value)
