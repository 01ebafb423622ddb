"""Text encoders: hashing invariants, our MiniLM path against SentenceTransformer.encode, int8 agreement."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from linksage.config.content import ContentConfig
from linksage.content.text import (
    HashingTextEncoder,
    SentenceTransformerEncoder,
    create_text_encoder,
    minilm_path,
    page_text,
    quantize_int8,
)
from linksage.errors import LinksageError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TEXTS = [
    "My rig (Rhodes, RD-700, Persephone)",
    "Scientists discover a new species of frog in the Amazon",
    "nytimes world asia north korea nuclear plant",
    "Preheat the oven to 200 degrees and mix the flour with the butter until smooth. " * 3,
    "a",
    "Der Bundestag hat das Gesetz beschlossen",
    "東京で大雨",
    "Why does my cat knock things off the table?",
]


@pytest.fixture(scope="module")
def st_model():  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def minilm_fp32() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(minilm_path(), model_id="all-MiniLM-L6-v2", precision="fp32", batch_size=3)


# --- page text -------------------------------------------------------------------------------------------------


def test_page_text_joins_parts_and_drops_a_description_the_body_repeats() -> None:
    assert page_text("Title", "Lead paragraph.", "Lead paragraph. More text.") == "Title\nLead paragraph. More text."
    assert page_text("Title", "Other summary", "Body") == "Title\nOther summary\nBody"
    assert page_text(None, "  ", None) == ""
    assert len(page_text("t", "d", "x" * 2_000_000, max_chars=1000)) == 1000


# --- hashing ---------------------------------------------------------------------------------------------------


def test_hashing_rows_are_unit_deterministic_and_empty_is_zero() -> None:
    enc = HashingTextEncoder(dim=97)
    a = enc.encode([*TEXTS, "", "   ", "!!!"])
    assert a.shape == (len(TEXTS) + 3, 97) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[: len(TEXTS)], axis=1), 1.0, rtol=1e-5)
    assert not a[len(TEXTS) :].any()
    np.testing.assert_array_equal(a, HashingTextEncoder(dim=97).encode([*TEXTS, "", "   ", "!!!"]))
    assert enc.name != HashingTextEncoder(dim=96).name


def test_hashing_counts_unigrams_and_bigrams_with_signs() -> None:
    enc = HashingTextEncoder(dim=1 << 16)
    v = enc.encode(["red apple red"])[0]
    # 3 unigrams (red twice) + 2 bigrams -> squared norm before scaling: 2^2 + 1 + 1 + 1 = 7 (no collisions)
    assert sorted(np.round(np.abs(v[v != 0]) * np.sqrt(7), 5)) == [1.0, 1.0, 1.0, 2.0]
    similar = enc.encode(["best pizza recipes for kids", "best pizza recipes for adults", "stock market crash"])
    assert similar[0] @ similar[1] > 0.5 > abs(similar[0] @ similar[2])


def test_hashing_truncates_to_max_tokens() -> None:
    enc = HashingTextEncoder(dim=256, max_tokens=5)
    np.testing.assert_array_equal(enc.encode(["a b c d e f g h"]), enc.encode(["a b c d e"]))


# --- transformers ----------------------------------------------------------------------------------------------


def test_our_minilm_path_matches_sentence_transformers(st_model, minilm_fp32: SentenceTransformerEncoder) -> None:  # type: ignore[no-untyped-def]
    ref = st_model.encode(TEXTS, convert_to_numpy=True)
    ours = minilm_fp32.encode(TEXTS)  # batch_size 3: several length buckets, rows unsorted back
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9999, cos
    assert minilm_fp32.max_tokens == 256 and minilm_fp32.dim == 384


def test_minilm_truncates_by_tokens_and_never_tokenises_a_huge_body(
    st_model,  # type: ignore[no-untyped-def]
    minilm_fp32: SentenceTransformerEncoder,
) -> None:
    words = " ".join(f"word{i}" for i in range(200_000))  # ~1.3 MB
    tok = st_model.tokenizer
    first_256 = tok.convert_tokens_to_string(tok.tokenize(words[:20_000])[:254])  # + [CLS] and [SEP]
    t0 = time.perf_counter()
    long_vec, short_vec = minilm_fp32.encode([words, first_256])
    assert time.perf_counter() - t0 < 10  # tokenising 1.3 MB alone takes longer on this machine
    assert long_vec @ short_vec > 0.999


def test_minilm_empty_text_is_a_zero_row(minilm_fp32: SentenceTransformerEncoder) -> None:
    out = minilm_fp32.encode(["", "hello world", "  "])
    assert not out[0].any() and not out[2].any() and abs(np.linalg.norm(out[1]) - 1) < 1e-5
    assert minilm_fp32.encode([]).shape == (0, 384)


def test_factory_names_variants_and_rejects_bad_settings(tmp_path: Path) -> None:
    cpu = create_text_encoder(ContentConfig(text_precision="auto", device="cpu"))
    int8 = create_text_encoder(ContentConfig(text_precision="int8", device="cpu"))
    assert cpu.name == "all-MiniLM-L6-v2-float" and int8.name == "all-MiniLM-L6-v2-int8sq-v1"
    assert isinstance(create_text_encoder(ContentConfig(text_encoder="hashing", hashing_dim=64)), HashingTextEncoder)
    with pytest.raises(LinksageError, match="not a sentence-transformers model folder"):
        create_text_encoder(ContentConfig(text_encoder="path", text_model_path=str(tmp_path), device="cpu"))
    with pytest.raises(LinksageError, match="int8 runs on the CPU only"):
        SentenceTransformerEncoder(minilm_path(), precision="int8", device="cuda")


def test_path_encoder_names_the_folder_by_content(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "my-model"
    shutil.copytree(minilm_path(), copy)
    enc = create_text_encoder(ContentConfig(text_encoder="path", text_model_path=str(copy), text_precision="fp32"))
    name = enc.name
    assert name.startswith("my-model-") and name.endswith("-float")
    with open(copy / "config.json", "a") as fh:
        fh.write(" ")  # any change to the folder is a new encoder for the cache
    assert create_text_encoder(ContentConfig(text_encoder="path", text_model_path=str(copy))).name != name


def test_int8_linear_layers_track_fp32_on_a_real_network() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    x = torch.randn(32, 10, 64)
    x[..., 3] *= 40  # an outlier channel, as BERT has: what the smoothing is for
    with torch.inference_mode():
        ref = net(x)
    quantized = copy.deepcopy(net)
    n = quantize_int8(quantized, [(np.arange(32), x)])  # type: ignore[list-item]
    assert n == 2 and not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    with torch.inference_mode():
        got = quantized(x)
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.05, float(rel)


@pytest.mark.slow
@pytest.mark.shared
def test_int8_minilm_agrees_with_fp32_on_reddit_titles(minilm_fp32: SentenceTransformerEncoder) -> None:
    parquet = SHARED / "reddit-top-2.5m" / "link_posts" / "part-1.parquet"
    if not parquet.exists():
        pytest.skip(f"{parquet} is missing: the shared data lives beside the repository")
    import pyarrow.parquet as pq

    titles = pq.read_table(parquet, columns=["title"]).column("title").to_pylist()[:500]
    int8 = SentenceTransformerEncoder(minilm_path(), precision="int8")
    cos = (int8.encode(titles) * minilm_fp32.encode(titles)).sum(1)
    assert cos.mean() > 0.99 and cos.min() > 0.95, (cos.mean(), cos.min())


# --- tokenising and batching (_tokens.py) ----------------------------------------------------------------------


def test_direct_tokenizer_gives_the_transformers_call_ids(st_model) -> None:  # type: ignore[no-untyped-def]
    from linksage.content._tokens import TokenIds

    tokens = TokenIds(st_model.tokenizer, 256, probe=TEXTS)
    texts = [*TEXTS, "", "  ", " ".join(f"word{i}" for i in range(5_000))]
    assert tokens.backend == "tokenizers"
    ids = tokens(texts)
    assert ids == tokens.hf_ids(texts)
    assert len(ids[-1]) == 256 and ids[-2] == ids[-3] == [101, 102]  # truncated with [SEP]; [CLS][SEP] when empty


def test_direct_tokenizer_falls_back_when_the_transformers_call_differs(st_model) -> None:  # type: ignore[no-untyped-def]
    from linksage.content._tokens import TokenIds

    real = st_model.tokenizer

    class ExtraStep:
        """A tokenizer whose call does something its Rust backend does not (here: drops the last word piece)."""

        backend_tokenizer = real.backend_tokenizer
        pad_token_id = real.pad_token_id

        def __call__(self, texts, **kwargs):  # type: ignore[no-untyped-def]
            enc = real(texts, **kwargs)
            return {"input_ids": [ids[:-2] + ids[-1:] if len(ids) > 2 else ids for ids in enc["input_ids"]]}

    tokens = TokenIds(ExtraStep(), 256, probe=TEXTS)
    assert tokens.backend == "transformers"
    assert tokens(TEXTS[:2]) == ExtraStep()(TEXTS[:2], truncation=True, max_length=256)["input_ids"]


def test_plan_batches_covers_every_text_once_longest_first_within_budgets() -> None:
    from linksage.content._tokens import plan_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 300, size=1000)
    batches = plan_batches(lengths, batch_size=64, batch_tokens=64 * 40)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(1000))
    assert (np.diff(lengths[order]) <= 0).all()  # longest first, so each batch pads to its first text
    for b in batches:
        assert len(b) <= 64 and (len(b) == 1 or len(b) * lengths[b].max() <= 64 * 40)
    assert [len(b) for b in plan_batches(np.array([5000, 3]), 8, 100)] == [1, 1]  # over budget alone: still encoded
    filled = plan_batches(lengths, batch_size=64, batch_tokens=64 * 40, min_fill=0.5)
    assert sorted(np.concatenate(filled).tolist()) == list(range(1000))
    assert all(lengths[b].min() >= 0.5 * lengths[b].max() for b in filled)  # padding at most doubles a batch
    assert len(filled) > len(batches)


def test_pad_batch_right_pads_and_masks() -> None:
    from linksage.content._tokens import pad_batch

    ids = [[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]]
    input_ids, mask = pad_batch(ids, np.array([2, 0, 1]), pad_id=0)
    assert input_ids.tolist() == [[101, 5, 6, 7, 102], [101, 7, 102, 0, 0], [101, 102, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert input_ids.dtype == mask.dtype == np.int64


def test_overlapped_path_gives_the_same_vectors_in_input_order(minilm_fp32: SentenceTransformerEncoder) -> None:
    # the CUDA path's threads, char-length groups and device-side scatter, run on the CPU
    texts = [*TEXTS, "", "short", "x " * 3000, *reversed(TEXTS)]
    overlapped = SentenceTransformerEncoder(
        minilm_path(), model_id="all-MiniLM-L6-v2", batch_size=3, overlap=True, tokenizer_threads=2
    )
    got, ref = overlapped.encode(texts), minilm_fp32.encode(texts)
    assert overlapped.name == minilm_fp32.name
    assert not got[len(TEXTS)].any()
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_an_fp16_folder_runs_in_fp32_on_the_cpu(tmp_path: Path, minilm_fp32: SentenceTransformerEncoder) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pack_minilm", BENCHMARKS / "pack_minilm.py")
    assert spec is not None and spec.loader is not None
    pack_minilm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_minilm)
    size = pack_minilm.pack(minilm_path(), tmp_path / "minilm")
    assert size < 50 * 2**20  # it travels to the GPU machine with the repository
    enc = SentenceTransformerEncoder(tmp_path / "minilm", precision="fp32")
    got = enc.encode(TEXTS)
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}  # cast back: saved as fp16
    cos = (got * minilm_fp32.encode(TEXTS)).sum(1)
    assert cos.min() > 0.9999, cos
