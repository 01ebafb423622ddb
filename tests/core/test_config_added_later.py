"""Config fields added later leave stage fingerprints alone at their default (linksage.config added_later)."""

from __future__ import annotations

from dataclasses import dataclass

from linksage.config import TrainConfig, config_to_dict, fingerprint
from linksage.config._load import added_later


@dataclass(frozen=True)
class Before:
    a: int = 1


@dataclass(frozen=True)
class After:
    a: int = 1
    b: float = added_later(0.0)


@dataclass(frozen=True)
class Outer:
    inner: After = After()
    c: str = "x"


@dataclass(frozen=True)
class OuterBefore:
    inner: Before = Before()
    c: str = "x"


def test_a_field_added_later_at_its_default_keeps_the_fingerprint() -> None:
    assert fingerprint(After()) == fingerprint(Before())
    assert fingerprint(Outer()) == fingerprint(OuterBefore())  # nested sections too


def test_any_other_value_changes_it() -> None:
    assert fingerprint(After(b=0.5)) != fingerprint(Before())
    assert fingerprint(Outer(inner=After(b=0.5))) != fingerprint(OuterBefore())


def test_the_field_is_still_shown_and_written() -> None:
    assert config_to_dict(After()) == {"a": 1, "b": 0.0}  # manifests and config.toml show every field


def test_the_default_train_fingerprint_is_the_one_runs_recorded() -> None:
    # The default [train] section's fingerprint since commit ceab8c9 (train.ema_decay); train.content_dropout came
    # later, as an added_later field. If this fails, a change would make every trained run stale: mark a
    # new field added_later when its default does what the code did before, or update this value on purpose.
    assert fingerprint(TrainConfig()) == "bbc0d57046a3bbe9"
    assert fingerprint(TrainConfig(content_dropout=0.3)) != "bbc0d57046a3bbe9"
