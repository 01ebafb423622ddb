"""The [train] config: every bad value is refused with a message naming the key and the value."""

from __future__ import annotations

import pytest

from linksage.config import ConfigError, load_config
from linksage.config.train import check_dims


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.dims=[64, 32]", "train.dims: must be strictly increasing (each a prefix of the next), got 32 after 64"),
        ("train.dims=[0, 32]", "train.dims: every dim must be positive, got 0 in [0, 32]"),
        ("train.dims=[]", "train.dims: needs at least one dim"),
        ("train.dim_weights=[1.0]", "train.dim_weights: needs one weight per dim in train.dims"),
        ("train.heads=3", "train.heads: must divide train.d_model=256, got 3"),
        ("train.neighbours=-1", "train.neighbours: must be >= 0, got -1"),
        ("train.batch_size=0", "train.batch_size: must be positive, got 0"),
        ("train.val_fraction=1.5", "train.val_fraction: must be in (0, 1), got 1.5"),
        ('train.split="time"', 'train.split_date: required when train.split = "time"'),
        ('train.val_split="latest"', 'train.val_split = "latest" needs train.split = "time"'),
        ('train.val_split="last"', "train.val_split: 'last' is not one of 'random', 'latest'"),
        ('train.image_tokens="all"', "train.image_tokens: 'all' is not one of 'each', 'mean'"),
        ("train.device=tpu", "train.device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("train.temperature_init=0.001", "train.temperature_init: must satisfy 0 < train.temperature_min"),
        ("train.ema_decay=1.0", "train.ema_decay: must be in [0, 1), got 1.0"),
        ("train.content_dropout=1.0", "train.content_dropout: must be in [0, 1), got 1.0"),
        ("train.prefix_distillation=-0.5", "train.prefix_distillation: must be finite and >= 0, got -0.5"),
        ("train.prefix_distillation=inf", "train.prefix_distillation: must be finite and >= 0, got inf"),
        ("train.reverse_loss=-1", "train.reverse_loss: must be finite and >= 0, got -1"),
        ("train.ema_decay=-0.1", "train.ema_decay: must be in [0, 1), got -0.1"),
    ],
)
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_time_split_dates_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"train\.split_date: expected an ISO date like 2013-04-01, got 'April'"):
        load_config(None, ['train.split="time"', 'train.split_date="April"'])
    with pytest.raises(ConfigError, match=r"train\.split_end: must be after train\.split_date='2013-04-01'"):
        load_config(None, ['train.split="time"', "train.split_date=2013-04-01", "train.split_end=2013-03-01"])
    cfg = load_config(None, ['train.split="time"', "train.split_date=2013-04-01"]).train
    assert cfg.split_date == "2013-04-01"


def test_dims_against_model_and_targets() -> None:
    check_dims((16, 32), output_dim=32, target_dim=64)
    with pytest.raises(ConfigError, match="the largest dim must equal the model's output size 64, got 32"):
        check_dims((16, 32), output_dim=64)
    with pytest.raises(
        ConfigError, match=r"exceeds the pins' target embedding dim 64; use dims up to 64, e\.g\. \[16, 64\]"
    ):
        check_dims((16, 128), target_dim=64)


def test_baseline_switches() -> None:
    cfg = load_config(None, ["train.neighbours=0", "train.dims=[64]"]).train
    assert cfg.neighbours == 0 and cfg.dims == (64,) and cfg.output_dim == 64 and cfg.weights == (1.0,)
