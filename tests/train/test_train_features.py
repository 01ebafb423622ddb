"""Feature tables and the batched device gather, against a one-page-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_reference import loop_gather

from linksage.config import ConfigError
from linksage.errors import InputError
from linksage.train.features import degree_buckets, page_features_from_arrays


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
