#!/usr/bin/env bash
# Eleventh lease (session 17, 2026-12-05; doc on an H200, ab and gpu on an H100). Run as `bash docs/measurements/2026-12-05-session17/lease.sh
# STEP` from the call's working tree (this folder is not in /tmp/code) after the seven staging calls
# (scripts/device_stage_in.sh done). Steps:
#   doc            start the documented command (README, "The Reddit benchmark") alone in the background,
#                  under /usr/bin/time -v, into /tmp/runs/reddit (the A/Bs' upstream afterwards)
#   docwait S OUT  wait up to S seconds for it, then copy its log, time, manifests and metrics to OUT
#   ab             start the A/B batch in the background (four variants, three evaluation slots)
#   gpu OUT        the GPU-marked tests, output to OUT/gpu-tests.txt
set -euo pipefail
cd /tmp/code
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
DATA=(--set ingest.reddit.posts=/tmp/data/link_posts --set ingest.reddit.subreddits=/tmp/data/subreddits.parquet)
case ${1:?step} in
  doc)
    rm -f /tmp/doc.rc
    (setsid nohup bash -c "/usr/bin/time -v python3 -m linksage run --config configs/reddit.toml \
      --run-dir /tmp/runs/reddit ${DATA[*]} >/tmp/doc.log 2>&1; echo \$? >/tmp/doc.rc" >/dev/null 2>&1 &)
    ;;
  docwait)
    end=$((SECONDS + $2))
    while [ ! -f /tmp/doc.rc ] && ((SECONDS < end)); do sleep 5; done
    out=$3/linksage-run
    mkdir -p "$out"
    tr '\r' '\n' </tmp/doc.log | grep -v -E '^\s*$|it/s\]$|chunk/s\]$|[0-9]+%\|' >"$out/run.log" || true
    tail -n 30 /tmp/doc.log >"$out/time.txt"
    for s in ingest content graph walk train embed evaluate; do
      [ -f /tmp/runs/reddit/$s/manifest.json ] && cp /tmp/runs/reddit/$s/manifest.json "$out/$s.manifest.json"
    done
    cp /tmp/runs/reddit/evaluate/metrics.json "$out/" 2>/dev/null || true
    cp /tmp/runs/reddit/train/metrics.csv "$out/train-validation.csv" 2>/dev/null || true
    cat /tmp/doc.rc 2>/dev/null || echo "still running"
    tail -n 25 "$out/time.txt"
    ;;
  ab)
    C='train.neighbours=0; train.board_tokens=0'
    start() { (setsid nohup bash scripts/device_ab.sh run "$1" --variant "$2" >/dev/null 2>&1 &); }
    start seed3 "seed3: train.seed=3"
    start seed3c "seed3_cont: train.seed=3; $C"
    start bt2 "bt2: train.board_tokens=2"
    start bt8 "bt8: train.board_tokens=8"
    ;;
  gpu)
    python3 -m pytest -p no:cacheprovider -m gpu -o addopts="" tests/embed/test_embed_compile.py \
      tests/evaluate/test_evaluate_metrics.py >"$2/gpu-tests.txt" 2>&1 || true
    tail -n 15 "$2/gpu-tests.txt"
    ;;
esac
