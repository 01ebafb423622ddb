"""The training loop: exact resume after a crash, early stopping, logs, and the graph's measurable gain."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from train_world import encoder_for, planted_world, tiny_config, train_data

from linksage.config import ConfigError
from linksage.config.train import TrainConfig
from linksage.train.logs import read_tensorboard_scalars
from linksage.train.loop import ROTATION_LR_SCALE, BoardPins, TrainData, Trainer
from linksage.train.target_space import LearnedRotation, identity_rotation, to_target_space

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # the shared 2-core machine: one thread is faster for these tiny models, and results depend on it
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        steps=30,
        lr=3e-3,
        warmup_steps=5,
        eval_every=10,
        eval_pages=200,
        eval_pool=0,
        patience=0,
        checkpoint_every=10,
        log_every=4,
        dropout=0.1,  # exercises the saved global RNG
    )
    base.update(kw)
    return tiny_config(**base)


class Crash(Exception):
    pass


# 0.6: the configured decay takes over from update 13 on, before the crash at 17
@pytest.mark.parametrize("ema_decay", [0.0, 0.6], ids=["live weights", "weight average"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path, ema_decay: float) -> None:
    world = planted_world(n_pages=300, k=6)
    cfg = _cfg(logq_correction=True, ema_decay=ema_decay)
    data, _ = train_data(world, cfg)

    whole = Trainer(cfg, data, encoder_for(data, cfg), device=CPU, work_dir=tmp_path / "a", checkpoint_key="k")
    ref = whole.fit()

    def crash_at_17(done: int) -> None:
        if done == 17:
            raise Crash

    first = Trainer(cfg, data, encoder_for(data, cfg), device=CPU, work_dir=tmp_path / "b", checkpoint_key="k")
    with pytest.raises(Crash):
        first.fit(on_step=crash_at_17)
    model = encoder_for(data, cfg)
    resumed = Trainer(cfg, data, model, device=CPU, work_dir=tmp_path / "b", checkpoint_key="k").fit()

    assert resumed.resumed_from == 10 and resumed.steps == ref.steps == 30
    assert resumed.best_step == ref.best_step and resumed.best_recall == ref.best_recall
    for (name, a), b in zip(whole.model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    columns = ["step", "lr", "loss", "grad_norm", "val_recall@100_d32"]
    rows_a = [[r[c] for c in columns] for r in csv.DictReader((tmp_path / "a" / "metrics.csv").open())]
    rows_b = [[r[c] for c in columns] for r in csv.DictReader((tmp_path / "b" / "metrics.csv").open())]
    assert rows_a == rows_b and len(rows_a) == 30
    tb_b = read_tensorboard_scalars(next((tmp_path / "b" / "tensorboard").iterdir()))
    assert [s for s, t, _ in tb_b if t == "train/loss"] == list(range(1, 31))


def _rotation_data(cfg: TrainConfig) -> tuple[TrainData, int]:
    """A planted world whose targets (48-dim) are wider than the model's output (32), as in real configs."""
    world = planted_world(n_pages=300, k=6, target_dim=48)
    data, _ = train_data(world, cfg)
    full = to_target_space(world.pin_target, identity_rotation(48))
    data.targets = torch.from_numpy(full)  # the stage hands a learned rotation the full-size targets
    return data, 48


def test_a_learned_rotation_resumes_exactly_and_is_orthogonal(tmp_path: Path) -> None:
    cfg = _cfg(steps=20, target_rotation="learned")
    data, dim = _rotation_data(cfg)

    def trainer(work: Path) -> Trainer:
        model = encoder_for(data, cfg)
        return Trainer(
            cfg, data, model, device=CPU, work_dir=work, checkpoint_key="k", rotation=LearnedRotation(dim, 32)
        )

    whole = trainer(tmp_path / "a")
    ref = whole.fit()

    def crash_at_13(done: int) -> None:
        if done == 13:
            raise Crash

    with pytest.raises(Crash):
        trainer(tmp_path / "b").fit(on_step=crash_at_13)
    resumed = trainer(tmp_path / "b")
    fit = resumed.fit()
    assert fit.resumed_from == 10 and fit.best_recall == ref.best_recall
    assert whole.rotation is not None and resumed.rotation is not None
    q = whole.rotation.numpy()
    assert not np.allclose(q, np.eye(dim), atol=1e-3)  # trained, not left at its start
    np.testing.assert_allclose(q.T @ q, np.eye(dim), atol=1e-5)
    np.testing.assert_array_equal(q, resumed.rotation.numpy())
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # candidates and the validation pool are scored through the rotation, cut to the model's 32 dims
    pins = torch.arange(5)
    torch.testing.assert_close(
        whole.targets(pins), data.targets[:5] @ torch.from_numpy(q[:, :32]), atol=1e-5, rtol=1e-5
    )
    # its optimiser group: no weight decay, a tenth of the encoder's step size
    group = whole.opt.param_groups[-1]
    assert group["params"] == [whole.rotation.skew] and group["weight_decay"] == 0.0
    assert group["initial_lr"] == pytest.approx(cfg.lr * ROTATION_LR_SCALE)
    assert all(whole.rotation.skew is not p for g in whole.opt.param_groups[:-1] for p in g["params"])


def test_early_stopping_restores_the_rotation_of_the_best_step(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(steps=30, eval_every=10, patience=0, checkpoint_every=0, target_rotation="learned")
    data, dim = _rotation_data(cfg)
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU, rotation=LearnedRotation(dim, 32))
    assert trainer.rotation is not None
    scores = iter([0.5, 0.9, 0.1])  # validation peaks at step 20, the middle evaluation
    monkeypatch.setattr(trainer, "evaluate", lambda: {d: next(scores) if d == 32 else 0.0 for d in cfg.dims})
    at: dict[int, Tensor] = {}

    def keep(done: int) -> None:
        at[done] = trainer.rotation.skew.detach().clone()  # type: ignore[union-attr]

    fit = trainer.fit(on_step=keep)
    assert fit.best_step == 20 and fit.steps == 30
    assert torch.equal(trainer.rotation.skew, at[20]) and not torch.equal(at[20], at[30])


def test_the_mask_drops_a_candidate_linking_to_the_rows_own_page() -> None:
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(random_negatives=0)
    data, _ = train_data(world, cfg)
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    pages, pins, cand = trainer.batch(0)
    in_batch = set(pins.tolist())
    row, other = next(  # a row whose page has another pin that is not in the batch
        (i, p)
        for i, page in enumerate(pages.tolist())
        for p in world.indices[world.indptr[page] : world.indptr[page + 1]].tolist()
        if p not in in_batch
    )
    cand = torch.cat([cand, torch.tensor([other])])
    assert not trainer.mask(pages, pins, cand)[row, -1]  # unseen without the pins' pages
    pin_page = np.repeat(np.arange(200), np.diff(world.indptr))[np.argsort(world.indices)]
    data.pin_page = torch.from_numpy(pin_page.astype(np.int64))
    mask = trainer.mask(pages, pins, cand)
    assert mask[row, -1] and (mask[:, -1].nonzero().flatten() == (pages == pages[row]).nonzero().flatten()).all()


def _board_pins(pin_board: np.ndarray) -> BoardPins:
    order = np.argsort(pin_board, kind="stable")
    order = order[pin_board[order] >= 0]
    counts = np.bincount(pin_board[order], minlength=int(pin_board.max()) + 1)
    return BoardPins(
        pin_board=torch.from_numpy(pin_board.astype(np.int64)),
        indptr=torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)),
        pins=torch.from_numpy(order.astype(np.int64)),
    )


def test_board_negatives_come_from_the_positives_boards() -> None:
    rng = np.random.default_rng(0)
    pin_board = rng.integers(0, 7, 500)
    pin_board[:20] = -1  # pins without a board: their negative is drawn from all pins
    tables = _board_pins(pin_board)
    gen = torch.Generator().manual_seed(0)
    pins = torch.arange(500).repeat(4)
    drawn = tables.draw(pins, 500, gen).numpy()
    boarded = pin_board[pins.numpy()] >= 0
    assert (pin_board[drawn[boarded]] == pin_board[pins.numpy()[boarded]]).all()
    assert len(np.unique(drawn[~boarded])) > 40  # 80 draws over all 500 pins, not one board
    # uniform over the board's other pins: never the pin itself, each of the others about equally often
    board3 = np.flatnonzero(pin_board == 3)
    for me in (board3[0], board3[len(board3) // 2], board3[-1]):  # the last slot is the swap target
        hits = np.bincount(tables.draw(torch.full((20_000,), int(me)), 500, gen).numpy(), minlength=500)
        others = board3[board3 != me]
        assert set(np.flatnonzero(hits)) == set(others.tolist())
        expected = 20_000 / len(others)
        assert np.abs(hits[others] - expected).max() < 5 * np.sqrt(expected)
    # a pin alone in its board, and tables without any board, fall back to all pins
    alone = pin_board.copy()
    alone[0] = 7  # board 7 holds pin 0 only
    lonely = _board_pins(alone).draw(torch.zeros(200, dtype=torch.int64), 500, gen).numpy()
    assert len(np.unique(lonely)) > 100
    empty = BoardPins(torch.full((500,), -1), torch.zeros(1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    assert len(np.unique(empty.draw(torch.arange(200), 500, gen).numpy())) > 100


def _near_in_time_reference(pin_board: np.ndarray, created: np.ndarray, me: int, window: int) -> set[int]:
    """The pins a windowed draw for ``me`` may return, by a plain loop: its board's pins ordered by
    (created, pin index), those at most ``window`` places from it, itself left out."""
    board = sorted((int(created[p]), p) for p in range(len(pin_board)) if pin_board[p] == pin_board[me])
    mine = board.index((int(created[me]), me))
    return {p for i, (_, p) in enumerate(board) if i != mine and abs(i - mine) <= window}


@pytest.mark.parametrize("window", [1, 3, 1000])
def test_board_negatives_near_in_time_equal_the_loop_reference(window: int) -> None:
    rng = np.random.default_rng(window)
    pin_board = rng.integers(0, 5, 300)
    pin_board[:10] = -1
    created = rng.integers(0, 50, 300)  # ties, broken by pin index
    created[10:15] = np.iinfo(np.int64).min  # unknown times sort first
    tables = _board_pins(pin_board).in_time_order(created, window)
    gen = torch.Generator().manual_seed(0)
    board2 = np.flatnonzero(pin_board == 2)
    by_time = board2[np.lexsort((board2, created[board2]))]
    for me in (by_time[0], by_time[1], by_time[len(by_time) // 2], by_time[-1], 12):
        allowed = _near_in_time_reference(pin_board, created, int(me), window)
        hits = np.bincount(tables.draw(torch.full((20_000,), int(me)), 300, gen).numpy(), minlength=300)
        assert set(np.flatnonzero(hits)) == allowed
        expected = 20_000 / len(allowed)
        assert np.abs(hits[list(allowed)] - expected).max() < 5 * np.sqrt(expected)
    # pins without a board, or alone in one, fall back to all pins
    drawn = tables.draw(torch.zeros(200, dtype=torch.int64), 300, gen).numpy()
    assert len(np.unique(drawn)) > 100
    alone = pin_board.copy()
    alone[20] = 9
    lonely = _board_pins(alone).in_time_order(created, window).draw(torch.full((200,), 20), 300, gen).numpy()
    assert len(np.unique(lonely)) > 100


def test_board_negatives_near_in_time_read_each_pins_first_board() -> None:
    """Pins in several boards: a pin's window lies in its first board (``pin_board``), whatever rows it
    also sits in; a loop over that board's members in time order is the reference."""
    rng = np.random.default_rng(7)
    n_pins, n_boards, window = 200, 4, 2
    member = [rng.choice(n_boards, rng.integers(1, 4), replace=False) for _ in range(n_pins)]
    created = rng.integers(0, 30, n_pins)
    pin_board = np.array([m[0] for m in member], dtype=np.int64)  # the first board, not the lowest
    rows = [np.array([p for p in range(n_pins) if b in member[p]], dtype=np.int64) for b in range(n_boards)]
    tables = BoardPins(
        pin_board=torch.from_numpy(pin_board),
        indptr=torch.from_numpy(np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)),
        pins=torch.from_numpy(np.concatenate(rows)),
    ).in_time_order(created, window)
    gen = torch.Generator().manual_seed(0)
    for me in rng.choice(np.flatnonzero([len(m) > 1 for m in member]), 12, replace=False):
        ordered = sorted((int(created[p]), p) for p in range(n_pins) if pin_board[me] in member[p])
        mine = ordered.index((int(created[me]), int(me)))
        allowed = {p for i, (_, p) in enumerate(ordered) if i != mine and abs(i - mine) <= window}
        hits = np.bincount(tables.draw(torch.full((4_000,), int(me)), n_pins, gen).numpy(), minlength=n_pins)
        assert set(np.flatnonzero(hits).tolist()) == allowed


def test_board_negatives_join_the_candidates_deterministically() -> None:
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(board_negatives=2, random_negatives=16, steps=4, eval_every=0, checkpoint_every=0)
    data, _ = train_data(world, cfg)
    data.board_pins = _board_pins(world.pin_topic.astype(np.int64))  # boards = the planted topics
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    _, pins, cand = trainer.batch(3)
    B = cfg.batch_size
    assert len(cand) == B + 16 + 2 * B and torch.equal(cand[:B], pins)
    board_negs = cand[B + 16 :].numpy()
    assert (world.pin_topic[board_negs] == world.pin_topic[pins.repeat(2).numpy()]).all()
    assert torch.equal(trainer.batch(3)[2], cand)  # a function of (seed, step): resumable
    assert trainer.fit().steps == 4
    with pytest.raises(ConfigError, match="logq_correction"):
        _cfg(board_negatives=1, logq_correction=True)


def test_a_checkpoint_of_another_config_is_ignored(tmp_path: Path) -> None:
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(steps=10, eval_every=0)
    data, _ = train_data(world, cfg)
    Trainer(cfg, data, encoder_for(data, cfg), device=CPU, work_dir=tmp_path, checkpoint_key="old").fit()
    fit = Trainer(cfg, data, encoder_for(data, cfg), device=CPU, work_dir=tmp_path, checkpoint_key="new").fit()
    assert fit.resumed_from == 0 and fit.steps == 10


def test_early_stopping_keeps_the_best_weights() -> None:
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(steps=50, lr=1e-9, warmup_steps=0, eval_every=5, patience=2, dropout=0.0)
    data, _ = train_data(world, cfg)
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    fit = trainer.fit()
    # with a negligible learning rate recall never improves: evaluations at 5, 10, 15, then stop
    assert fit.early_stopped and fit.steps == 15 and fit.best_step == 5
    assert [h["step"] for h in fit.history] == [5, 10, 15]
    assert trainer.evaluate() == fit.best_recall


def test_graph_model_beats_content_only_on_a_planted_world() -> None:
    """Page text is a weak topic signal; most neighbours share the page's topic. Short CPU runs (~20 s)."""
    world = planted_world(n_pages=3000, n_topics=24, k=8, text_signal=0.4)
    recall = {}
    for k in (8, 0):
        cfg = _cfg(
            neighbours=k,
            steps=250,
            batch_size=128,
            random_negatives=128,
            lr=1e-2,
            warmup_steps=20,
            eval_every=0,
            eval_pages=600,
            eval_pool=1000,
            checkpoint_every=0,
            log_every=50,
            dropout=0.0,
            test_fraction=0.0,
        )
        data, _ = train_data(world, cfg)
        fit = Trainer(cfg, data, encoder_for(data, cfg), device=CPU).fit()
        recall[k] = fit.best_recall[32]
    graph, content = recall[8], recall[0]
    # measured: graph 0.62, content-only 0.40 (Recall@100 among ~1,000 pins; a perfect topic guess gives ~1)
    assert graph > 1.3 * content and graph - content > 0.15, recall


@pytest.mark.slow
def test_compiled_steps_match_eager_steps() -> None:
    """torch.compile of forward + loss (the GPU path) traces on CPU and computes the same steps."""
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(dropout=0.0, steps=3)
    data, _ = train_data(world, cfg)
    rows = []
    for compile in (False, True):
        trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU, compile=compile)
        rows.append(torch.stack([trainer.train_step(s) for s in range(3)]))
    torch.testing.assert_close(rows[1], rows[0], rtol=1e-4, atol=1e-4)
