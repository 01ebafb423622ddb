"""benchmarks/embed.py end to end on the CPU with a tiny model, as the GPU run calls it (sweep included)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_embed_benchmark_sweeps_and_ends_with_one_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # run as a script, it imports its sibling _machine.py
    bench = importlib.import_module("embed")
    args = ["--device", "cpu", "--pages", "500", "--text-dim", "16", "--image-dim", "8", "--k", "4"]
    args += ["--d-model", "16", "--layers", "1", "--repeats", "1", "--chunk", "128", "--workdir", str(tmp_path)]
    result = bench.main([*args, "--sweep", "--sweep-batches", "32,64", "--sweep-writers", "0,1"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(result))
    assert last["pages"] == 500 and last["device"] == "cpu" and last["compile"] == "off"
    assert [(r["compile"], r["batch"]) for r in last["sweep"][:2]] == [("off", 32), ("off", 64)]
    assert [r["write_parallelism"] for r in last["sweep"][2:]] == [0, 1] and last["write_parallelism"] in (0, 1)
    assert last["batch"] in (32, 64) and last["pages_per_s"] > 0 and last["model_pages_per_s"] > 0
    assert abs(last["ratio"] - last["pages_per_s"] / last["model_pages_per_s"]) < 0.01  # from unrounded rates
    assert set(last["breakdown_s"]) == {
        "load_s",
        "fingerprint_s",
        "upload_s",
        "embed_write_s",
        "infer_s",
        "write_wait_s",
        "keys_wait_s",
        "total_s",
    }
    assert "cpus" in last["machine"]
