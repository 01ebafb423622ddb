"""Feature tables and the batched device gather, against a one-page-at-a-time reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from train_reference import loop_gather, loop_page_boards

from linksage.config import ConfigError
from linksage.errors import InputError
from linksage.train.features import degree_buckets, page_boards, page_features_from_arrays


def _arrays(n: int = 20, k: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    nbr = rng.integers(0, n, (n, k)).astype(np.int32)
    nbr[rng.random((n, k)) < 0.3] = -1
    return {
        "text": rng.normal(size=(n, 6)).astype(np.float16),
        "degree": rng.integers(0, 40, n),
        "neighbours": nbr,
        "visits": np.where(nbr >= 0, rng.integers(1, 9, (n, k)), 0).astype(np.float32),
        "image": rng.normal(size=(n, 5)).astype(np.float16),
        "has_image": rng.random(n) < 0.6,
        "image_tokens": rng.normal(size=(n, 3, 5)).astype(np.float16),
        "image_token_mask": rng.random((n, 3)) < 0.5,
    }


@pytest.mark.parametrize("tokens", [True, False])
def test_gather_equals_per_page_reference(tokens: bool) -> None:
    a = _arrays()
    if not tokens:
        a.pop("image_tokens"), a.pop("image_token_mask")
    f = page_features_from_arrays(
        a.pop("text"),
        a.pop("degree"),
        a.pop("neighbours"),
        a.pop("visits"),
        **a,  # type: ignore[arg-type]
    )
    pages = [3, 0, 19, 3, 7]
    got = f.gather(torch.tensor(pages))
    want = loop_gather(f, pages)
    for name, g, w in zip(got._fields, got, want, strict=True):
        if g is None or w is None:  # no board or domain tables: both leave those fields out
            assert g is None and w is None and name.startswith(("board", "domain", "nbr_mean")), name
            continue
        assert g.dtype == (w.dtype if w.dtype != torch.float16 else torch.float32), name
        torch.testing.assert_close(g, w.to(g.dtype), msg=name)
    assert got.self_images.shape == (5, 3 if tokens else 1, 5)


def test_neighbour_columns_and_visits() -> None:
    a = _arrays(k=6)
    f = page_features_from_arrays(a["text"], a["degree"], a["neighbours"], a["visits"], k=2)
    assert f.k == 2 and f.image_dim == 0
    np.testing.assert_array_equal(f.neighbours.numpy(), a["neighbours"][:, :2])
    np.testing.assert_allclose(f.log_visits.numpy(), np.log1p(a["visits"][:, :2]))


def test_degree_buckets() -> None:
    np.testing.assert_array_equal(degree_buckets(np.array([0, 1, 2, 3, 7, 10**9]), 8), [0, 1, 1, 2, 3, 7])


def test_bad_inputs_name_file_row_and_value() -> None:
    a = _arrays()
    nbr = a["neighbours"].copy()
    nbr[5, 1] = 99
    with pytest.raises(InputError) as err:
        page_features_from_arrays(a["text"], a["degree"], nbr, a["visits"], names={"neighbours": "walk/neighbours.npy"})
    assert "walk/neighbours.npy, row 5" in str(err.value) and "99" in str(err.value)
    with pytest.raises(ConfigError, match=r"train\.neighbours: 9 exceeds the 4 neighbours per page"):
        page_features_from_arrays(a["text"], a["degree"], a["neighbours"], a["visits"], k=9)
    with pytest.raises(InputError, match="has 19 rows, expected one per page"):
        page_features_from_arrays(a["text"], a["degree"][:19], a["neighbours"], a["visits"])


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([x for r in rows for x in r], dtype=np.int32)
    return indptr, indices


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_page_boards_equal_loop_reference(slots: int) -> None:
    rng = np.random.default_rng(3)
    page_pins = [sorted(rng.choice(30, rng.integers(0, 5), replace=False).tolist()) for _ in range(25)]
    pin_boards = [sorted(rng.choice(7, rng.integers(0, 3), replace=False).tolist()) for _ in range(30)]
    got = page_boards(*_csr(page_pins), *_csr(pin_boards), slots)
    assert got.dtype == np.int32 and got.shape == (25, slots)
    assert got.tolist() == loop_page_boards(page_pins, pin_boards, slots)
    assert (got[:, 0] >= 0).sum() > 10  # most pages do have a board: the check is not vacuous


def test_gather_with_board_tokens_equals_reference() -> None:
    a = _arrays()
    f = page_features_from_arrays(a["text"], a["degree"], a["neighbours"], a["visits"])
    rng = np.random.default_rng(1)
    boards = rng.integers(-1, 4, (20, 3)).astype(np.int32)
    f = dataclasses.replace(
        f,
        boards=torch.from_numpy(boards),
        board_text=torch.from_numpy(rng.normal(size=(4, 6)).astype(np.float16)),
        board_mean=torch.from_numpy(np.vstack([rng.normal(size=(4, 5)), np.zeros((1, 5))]).astype(np.float16)),
        board_mean_fixed=torch.from_numpy(rng.normal(size=(6, 5)).astype(np.float16)),
        board_mean_at=torch.from_numpy(
            np.where(rng.random((20, 3)) < 0.3, rng.integers(0, 6, (20, 3)), -1).astype(np.int32)
        ),
        page_mean=torch.from_numpy(rng.normal(size=(20, 7)).astype(np.float16)),
        nbr_mean_ok=torch.from_numpy(rng.random((20, 4)) < 0.6),
    )
    pages = [5, 1, 5, 19]
    got, want = f.gather(torch.tensor(pages)), loop_gather(f, pages)
    assert got.board_text is not None and got.board_text.shape == (4, 3, 6)
    assert got.board_mean is not None and got.board_mean.shape == (4, 3, 5)
    assert got.nbr_mean is not None and got.nbr_mean.shape == (4, 4, 7) and (got.nbr_mean == 0).all(-1).any()
    for name, g, w in zip(got._fields, got, want, strict=True):
        if name == "domain_ids":
            assert g is None and w is None
            continue
        torch.testing.assert_close(g, w.to(g.dtype), msg=name)
    with pytest.raises(ValueError, match="come together"):
        dataclasses.replace(f, board_text=None)
    with pytest.raises(ValueError, match=r"'board_mean_at' has shape \(20, 2\), expected the boards' \(20, 3\)"):
        dataclasses.replace(f, board_mean_at=torch.zeros(20, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="'board_mean', 'board_mean_fixed' and 'board_mean_at' come together"):
        dataclasses.replace(f, board_mean_fixed=None)
    with pytest.raises(ValueError, match="'page_mean' and 'nbr_mean_ok' come together"):
        dataclasses.replace(f, nbr_mean_ok=None)


def test_page_domains_from_the_page_domain_csr() -> None:
    from linksage.train.features import page_domains

    indptr, indices = _csr([[2], [], [0], [2], [1]])
    domain, n_domains = page_domains(indptr, indices, 5)
    assert domain.tolist() == [2, -1, 0, 2, 1] and n_domains == 3
    with pytest.raises(InputError, match="expected n_pages"):
        page_domains(indptr, indices, 4)
