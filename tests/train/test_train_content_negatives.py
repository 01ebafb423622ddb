"""Content-mined negatives: the nearest-pin lists against a loop reference, the draw, the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_world import encoder_for, planted_world, tiny_config, train_data

from linksage.config import ConfigError
from linksage.config.train import TrainConfig
from linksage.train.content_negatives import NO_PIN, build_content_negatives, nearest_pins
from linksage.train.loop import Trainer

CPU = torch.device("cpu")


def _reference(queries: np.ndarray, pins: np.ndarray, k: int, excluded: list[set[int]]) -> list[list[int]]:
    """Per query: the k pins of highest cosine, best first, its excluded pins skipped; [] for a zero query."""
    out = []
    for i, q in enumerate(queries):
        norm = np.linalg.norm(q)
        if norm == 0:
            out.append([])
            continue
        scores = [(float(q @ p / (norm * np.linalg.norm(p))), j) for j, p in enumerate(pins) if j not in excluded[i]]
        scores.sort(key=lambda s: -s[0])
        out.append([j for _, j in scores[:k]])
    return out


@pytest.mark.parametrize("query_chunk", [1024, 1, 5])  # one chunk; one query per chunk; several per chunk
def test_nearest_pins_equal_the_loop_reference(query_chunk: int) -> None:
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(23, 8)).astype(np.float32)
    queries[5] = 0.0  # a page without text
    pins = rng.normal(size=(19, 8)).astype(np.float32)
    excluded = [set(rng.choice(19, rng.integers(0, 4), replace=False).tolist()) for _ in range(23)]
    excluded[9] = set(range(3, 19))  # only 3 pins left for a pool of 5
    indptr = np.concatenate([[0], np.cumsum([len(e) for e in excluded])]).astype(np.int64)
    indices = np.array([j for e in excluded for j in sorted(e)], dtype=np.int64)
    got = nearest_pins(queries, pins, 5, indptr, indices, query_chunk=query_chunk)
    for i, want in enumerate(_reference(queries, pins, 5, excluded)):
        assert got[i, : len(want)].tolist() == want, i
        assert (got[i, len(want) :] == NO_PIN).all(), i
    assert (got[5] == NO_PIN).all() and (got[9, 3:] == NO_PIN).all()


def test_lists_leave_out_each_pages_own_pins_and_disallowed_pins() -> None:
    rng = np.random.default_rng(1)
    page_text = rng.normal(size=(10, 6)).astype(np.float32)
    pin_target = np.concatenate([page_text, rng.normal(size=(10, 6)).astype(np.float32)])  # pin i = page i's text
    own_page, own_pin = np.arange(10), np.arange(10)  # page i links to pin i, its own nearest pin
    allowed = np.ones(20, dtype=bool)
    allowed[[12, 13]] = False  # e.g. created after the split date
    train_pages = np.array([1, 4, 7])
    neg = build_content_negatives(page_text, pin_target, train_pages, own_page, own_pin, 4, CPU, allowed_pins=allowed)
    assert neg.page_row.tolist() == [-1, 0, -1, -1, 1, -1, -1, 2, -1, -1]
    excluded = [{j for j in range(20) if j == p or not allowed[j]} for p in train_pages]
    want = _reference(page_text[train_pages], pin_target, 4, excluded)
    assert neg.pins.tolist() == want
    assert not np.isin(neg.pins.numpy(), [12, 13]).any()


def test_the_draw_stays_in_each_pages_list_and_falls_back_to_any_pin() -> None:
    page_text = np.eye(4, 3, dtype=np.float32)  # page 3 has no text: no list
    pin_target = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    neg = build_content_negatives(page_text, pin_target, np.arange(4), np.zeros(0), np.zeros(0), 3, CPU)
    assert neg.page_row.tolist() == [0, 1, 2, -1]
    gen = torch.Generator().manual_seed(0)
    drawn = neg.draw(torch.full((3_000,), 1), 30, gen)
    assert set(drawn.tolist()) == set(neg.pins[1].tolist())  # uniform over the list: each of the 3 drawn
    loose = neg.draw(torch.full((3_000,), 3), 30, gen)
    assert len(set(loose.tolist())) > 20  # a page without a list: uniform over all pins


def _cfg(**kw: object) -> TrainConfig:
    return tiny_config(**{"random_negatives": 16, "steps": 4, "eval_every": 0, "checkpoint_every": 0, **kw})


def test_content_negatives_join_the_candidates_deterministically() -> None:
    torch.set_num_threads(1)
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(content_negatives=2, content_negative_pool=5)
    data, _ = train_data(world, cfg)
    own_page = np.repeat(np.arange(world.n_pages), np.diff(world.indptr))
    pages = np.unique(data.pair_page.numpy())
    data.content_negatives = build_content_negatives(
        world.page_text, world.pin_target, pages, own_page, world.indices, 5, CPU
    )
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    batch_pages, pins, cand = trainer.batch(3)
    B = cfg.batch_size
    assert len(cand) == B + 16 + 2 * B and torch.equal(cand[:B], pins)
    lists = data.content_negatives.pins[data.content_negatives.page_row[batch_pages.repeat(2)]]
    assert (lists == cand[B + 16 :, None]).any(dim=1).all()  # each from its own page's list
    own = set(zip(own_page.tolist(), world.indices.tolist(), strict=True))
    assert not any((int(p), int(q)) in own for p, q in zip(batch_pages.repeat(2), cand[B + 16 :], strict=True))
    assert torch.equal(trainer.batch(3)[2], cand)  # a function of (seed, step): resumable
    assert trainer.fit().steps == 4


def test_content_negatives_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="logq_correction"):
        _cfg(content_negatives=1, logq_correction=True)
    with pytest.raises(ConfigError, match="content_negative_pool: must be >= 1"):
        _cfg(content_negatives=1, content_negative_pool=0)
    with pytest.raises(ConfigError, match="content_negatives: must be"):
        _cfg(content_negatives=-1)
    trainer_cfg = _cfg(content_negatives=1)
    world = planted_world(n_pages=100, k=6)
    data, _ = train_data(world, trainer_cfg)
    trainer = Trainer(trainer_cfg, data, encoder_for(data, trainer_cfg), device=CPU)
    with pytest.raises(ValueError, match="needs the pages' nearest pins"):
        trainer.batch(0)
