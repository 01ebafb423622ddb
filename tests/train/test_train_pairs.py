"""Training pairs, random and time splits by page, and the leakage checks."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from linksage.config.train import TrainConfig
from linksage.errors import InputError
from linksage.train.pairs import (
    TEST,
    TRAIN,
    UNUSED,
    VAL,
    LeakageError,
    Pairs,
    assert_no_leakage,
    drop_future_pins,
    pairs_of,
    positive_pairs,
    split_pages,
)


def _ts(day: str) -> int:
    return int(datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC).timestamp())


def test_pairs_from_csr() -> None:
    pairs = positive_pairs(np.array([0, 2, 2, 3]), np.array([5, 6, 7]))
    assert pairs.page.tolist() == [0, 0, 2] and pairs.pin.tolist() == [5, 6, 7]


def test_random_split_is_by_page_seeded_and_sized() -> None:
    degree = np.r_[np.zeros(100, int), np.ones(900, int)]
    cfg = TrainConfig(val_fraction=0.1, test_fraction=0.2, seed=3)
    split = split_pages(degree, cfg)
    assert (split[:100] == UNUSED).all()  # pages without a positive pin are not used
    assert [(split == s).sum() for s in (TRAIN, VAL, TEST)] == [630, 90, 180]
    np.testing.assert_array_equal(split, split_pages(degree, cfg))
    assert not np.array_equal(split, split_pages(degree, TrainConfig(val_fraction=0.1, test_fraction=0.2, seed=4)))


def test_time_split_by_first_seen() -> None:
    n = 400
    rng = np.random.default_rng(0)
    first_seen = _ts("2013-01-01") + rng.integers(0, 150, n) * 86_400
    first_seen[:10] = np.iinfo(np.int64).min  # unknown: unused
    cfg = TrainConfig(split="time", split_date="2013-04-01", split_end="2013-05-01", val_fraction=0.25)
    split = split_pages(np.ones(n, int), cfg, first_seen)
    cut, end = _ts("2013-04-01"), _ts("2013-05-01")
    assert (split[:10] == UNUSED).all()
    known = first_seen[10:]
    s = split[10:]
    assert np.isin(s[known < cut], [TRAIN, VAL]).all()
    assert (s[(known >= cut) & (known < end)] == TEST).all()
    assert (s[known >= end] == UNUSED).all()
    assert abs((s == VAL).sum() / (known < cut).sum() - 0.25) < 0.02


def test_time_split_latest_validation_is_the_last_pages_before_the_cutoff() -> None:
    n = 1_000
    rng = np.random.default_rng(1)
    first_seen = _ts("2013-01-01") + rng.integers(0, 120 * 86_400, n)
    cfg = TrainConfig(split="time", split_date="2013-04-01", val_fraction=0.1, val_split="latest")
    split = split_pages(np.ones(n, int), cfg, first_seen)
    before = first_seen < _ts("2013-04-01")
    # reference: sort the pages before the cut-off by first_seen, the last 10% are validation
    expected = np.flatnonzero(before)[np.argsort(first_seen[before])][-round(before.sum() * 0.1) :]
    assert sorted(np.flatnonzero(split == VAL)) == sorted(expected)
    assert first_seen[split == VAL].min() >= first_seen[split == TRAIN].max()
    assert (split[~before] == TEST).all()
    random_cfg = TrainConfig(split="time", split_date="2013-04-01", val_fraction=0.1)
    random = split_pages(np.ones(n, int), random_cfg, first_seen)
    assert (random == VAL).sum() == (split == VAL).sum() and not np.array_equal(random, split)


def test_time_split_needs_dates() -> None:
    cfg = TrainConfig(split="time", split_date="2013-04-01")
    with pytest.raises(InputError, match="needs the first_seen column"):
        split_pages(np.ones(5, int), cfg, None)
    with pytest.raises(InputError, match="every linked page has none"):
        split_pages(np.ones(5, int), cfg, np.full(5, np.iinfo(np.int64).min))


def test_leakage_is_detected() -> None:
    split = np.array([TRAIN, TRAIN, VAL, TEST], dtype=np.int8)
    pairs = Pairs(np.array([0, 1, 2, 3, 3], np.int32), np.array([10, 11, 12, 13, 14], np.int32))
    by_split = {s: pairs_of(pairs, split, s) for s in (TRAIN, VAL, TEST)}
    assert_no_leakage(split, by_split)
    leaky = {**by_split, TRAIN: Pairs(np.array([0, 3], np.int32), np.array([10, 13], np.int32))}
    with pytest.raises(LeakageError, match=r"train pair 1 \(page 3, pin 13\) belongs to a page of split 2"):
        assert_no_leakage(split, leaky)


def test_time_split_drops_and_checks_future_pins() -> None:
    cut = _ts("2013-04-01")
    split = np.array([TRAIN, TRAIN, TEST], dtype=np.int8)
    first_seen = np.array([cut - 10, cut - 5, cut + 1])
    created = np.array([cut - 10, cut + 3, cut - 5, cut + 2])  # pin 1 is from the test period
    train = Pairs(np.array([0, 0, 1], np.int32), np.array([0, 1, 2], np.int32))
    with pytest.raises(LeakageError, match="training pin 1 was created at"):
        assert_no_leakage(split, {TRAIN: train}, first_seen=first_seen, pin_created_at=created, cutoff=cut)
    kept, dropped = drop_future_pins(train, created, cut)
    assert dropped == 1 and kept.pin.tolist() == [0, 2]
    assert_no_leakage(split, {TRAIN: kept}, first_seen=first_seen, pin_created_at=created, cutoff=cut)
    late = np.array([cut - 10, cut + 7, cut + 1])
    with pytest.raises(LeakageError, match="training page 1 was first seen"):
        assert_no_leakage(split, {TRAIN: kept}, first_seen=late, cutoff=cut)
