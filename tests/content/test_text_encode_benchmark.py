"""benchmarks/text_encode.py end to end on the CPU, as the GPU run calls it: an fp16 model folder, sweep, phases."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from linksage.content.text import minilm_path

ROOT = Path(__file__).resolve().parents[2]
POSTS = ROOT / ".." / "shared" / "data" / "reddit-top-2.5m" / "link_posts"


def _script(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their sibling _machine.py
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


@pytest.mark.shared
def test_text_encode_benchmark_runs_from_an_fp16_folder_and_ends_with_its_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (POSTS / "part-1.parquet").exists():
        pytest.skip(f"{POSTS}/part-1.parquet is missing: the shared data lives beside the repository")
    _script("pack_minilm").pack(minilm_path(), tmp_path / "minilm")
    bench = _script("text_encode")
    titles = tmp_path / "titles.parquet"
    assert bench.main(["--n", "24", "--save-titles", str(titles)]) == 0  # what travels with the model
    argv = ["--n", "24", "--blocks", "2", "--model-path", str(tmp_path / "minilm"), "--posts", str(titles)]
    argv += ["--overlap", "--phases", "--sweep", "--sweep-batch-sizes", "8", "--sweep-threads", "1,2", "--repeats", "1"]
    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 24 and result["device"] == "cpu" and result["precision"] == "fp32"
    assert result["cosine_agreement"] > 0.9999  # the baseline is cast back to fp32 too: same vectors
    assert [(r["batch_size"], r["tokenizer_threads"]) for r in result["sweep"]] == [(8, 1), (8, 2)]
    best = max(result["sweep"], key=lambda r: r["titles_per_s"])
    assert (result["batch_size"], result["tokenizer_threads"]) == (best["batch_size"], best["tokenizer_threads"])
    assert result["phases"]["tokens_per_title"] > 2 and result["phases"]["model_only_titles_per_s"] > 0
    assert result["tokenizer_backend"] == "tokenizers" and result["errors"] == {}
    for key in ("titles_per_s", "baseline_titles_per_s", "ratio", "machine"):
        assert result[key]
