"""``linksage update`` with board-aware pin targets: new pins get them against the run's boards' means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from update_world import DAY, config

from linksage.content import board_targets as bt
from linksage.errors import LinksageError
from linksage.pipeline import run_stages
from linksage.update.run import update

AWARE = ("content.pin_target_boards=0.8",)


@pytest.mark.parametrize("centred", [False, True])
def test_new_pins_get_board_aware_targets_and_old_rows_stay(tmp_path: Path, day: Path, centred: bool) -> None:
    """A day's new pins against the run's stored means (centred ones too: the day does not centre again)."""
    aware = (*AWARE, f"content.pin_target_boards_centred={str(centred).lower()}")
    run = tmp_path / "run"
    run_stages(config(aware), run, ["embed"])
    before = np.load(run / "content" / "pin_target.npy")
    means = np.load(run / "content" / bt.MEANS_FILE).astype(np.float32)
    summary = update(config(aware), run, day, DAY)
    after = np.load(run / "content" / "pin_target.npy")
    n_old = len(before)
    assert len(after) > n_old and np.array_equal(after[:n_old], before)  # bit for bit
    grown = np.load(run / "content" / bt.MEANS_FILE).astype(np.float32)
    assert np.array_equal(grown[: len(means)], means) and not grown[len(means) :].any()  # new boards: no mean
    given = pq.read_table(run / "ingest" / "pins.parquet", columns=["pin_idx", "embedding"]).sort_by("pin_idx")
    own = np.stack(given["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)  # the synthetic targets
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    edges = pq.read_table(run / "ingest" / "board_pins.parquet")
    boards: list[list[int]] = [[] for _ in range(len(after))]
    for pin, board in zip(edges["pin_idx"].to_pylist(), edges["board_idx"].to_pylist(), strict=True):
        boards[pin].append(board)
    expect = []
    for p in range(n_old, len(after)):
        s = sum((means[b] for b in boards[p] if b < len(means)), np.zeros(own.shape[1], np.float32))
        v = own[p] + 0.8 * s / np.linalg.norm(s) if np.linalg.norm(s) > 0 else own[p]
        expect.append(v / max(np.linalg.norm(v), 1e-12))
    np.testing.assert_allclose(after[n_old:].astype(np.float32), np.stack(expect), atol=4e-3)
    assert summary["counts"]["content_pin_targets_with_boards"] > 0


def test_a_day_with_other_board_targets_is_refused(run: Path, day: Path) -> None:
    with pytest.raises(LinksageError, match="its config sections content differ"):
        update(config(AWARE), run, day, DAY)
