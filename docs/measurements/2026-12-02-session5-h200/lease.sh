#!/usr/bin/env bash
# This session's GPU work, started in the background after staging: the upstream, then two A/B runs side by side.
export PYTHONPATH=/tmp/site:/tmp/code/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
cd /tmp/code
D=(--set ingest.reddit.posts=/tmp/data/link_posts --set ingest.reddit.subreddits=/tmp/data/subreddits.parquet)
date -u +"START %T"
python3 -m linksage run walk --config configs/reddit.toml --run-dir /tmp/runs/reddit "${D[@]}" > /tmp/walk.log 2>&1 || { echo WALK_FAILED; exit 1; }
date -u +"WALK_DONE %T"
python3 benchmarks/train_ab.py --config configs/reddit.toml --run-dir /tmp/runs/reddit "${D[@]}" --baselines \
  --variant 'noids: train.board_ids=false' > /tmp/abA.log 2>&1 &
sleep 45
python3 benchmarks/train_ab.py --config configs/reddit.toml --run-dir /tmp/runs/reddit "${D[@]}" \
  --variant 'nonbr: train.neighbours=0' \
  --variant 'noids_rot: train.board_ids=false; train.target_rotation="learned"' > /tmp/abB.log 2>&1 &
wait
date -u +"ALL_DONE %T"
