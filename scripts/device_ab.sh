#!/usr/bin/env bash
# Training A/B on the full Reddit data, on a lent GPU machine, after scripts/device_stage_in.sh (run from /tmp/code).
#   bash scripts/device_ab.sh run NAME [train_ab.py options] --variant 'a: train.x=1' ...
#       the upstream (ingest .. walk, once: a second caller waits for the first, then finds it up to date),
#       then benchmarks/train_ab.py with the given options; log in /tmp/ab-NAME.log. Start it in the
#       background so that it outlives the call: (setsid nohup bash scripts/device_ab.sh run A ... &)
#   bash scripts/device_ab.sh status         the last lines of every A/B log: variants done, errors
#   bash scripts/device_ab.sh collect DIR    logs, each variant's metrics.json, train manifest and validation
#                                            curve, as one DIR/ab.tgz (what a call's $OUT brings back)
#   bash scripts/device_ab.sh wait SECONDS DIR   until every A/B started here has ended or SECONDS have
#                                            passed, collects into DIR every 15 s (so that a call cut short
#                                            still brings back what had finished), then once more and status
# AB_CONFIG, AB_RUN, AB_DATA, AB_PYTHON and AB_EVAL_SLOTS (3) override the defaults (e.g. to try it on the CPU with
# configs/demo-reddit.toml, AB_DATA="" and AB_PYTHON=.venv/bin/python). AB_SET adds `--set` overrides to the
# upstream and to every variant (an upstream of its own, e.g. AB_RUN=/tmp/runs/bw AB_SET="--set content.x=1"; no
# spaces inside one override).
set -euo pipefail
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
CONFIG=${AB_CONFIG:-configs/reddit.toml}
RUN=${AB_RUN:-/tmp/runs/reddit}
PY=${AB_PYTHON:-python3}
read -r -a DATA <<<"${AB_DATA-"--set ingest.reddit.posts=/tmp/data/link_posts --set ingest.reddit.subreddits=/tmp/data/subreddits.parquet"} ${AB_SET-}"

case ${1:-} in
  run)
    name=${2:?usage: $0 run NAME [options] --variant ...}
    shift 2
    log=/tmp/ab-$name.log
    touch "/tmp/ab-$name.running"  # what `wait` waits on
    trap 'rm -f "/tmp/ab-$name.running"' EXIT
    {
      date -u +"upstream wait %T"
      flock /tmp/upstream.lock "$PY" -m linksage run walk --config "$CONFIG" --run-dir "$RUN" "${DATA[@]}"
      date -u +"A/B start %T"
      # at most 3 evaluations at once (per $RUN-ab): with six variants on one H200, one ran out of its
      # memory while evaluating (docs/results.md, tenth lease)
      "$PY" benchmarks/train_ab.py --config "$CONFIG" --run-dir "$RUN" "${DATA[@]}" --eval-slots "${AB_EVAL_SLOTS:-3}" "$@"
      date -u +"A/B done %T"
    } >"$log" 2>&1
    ;;
  status)
    for log in /tmp/ab-*.log; do
      echo "== $log"
      # progress bars end in carriage returns: keep the log's own lines
      tr '\r' '\n' <"$log" | grep -E '^[0-9:]{8} \[(ab|train|evaluate)\] (.*done|step [0-9]+:|[a-z_]+ overrides)|^\| [a-z]|Error|A/B' | tail -n 12 || true  # a log with no such line yet (still building the upstream) is not an error
    done
    ;;
  collect)
    out=${2:?usage: $0 collect DIR}
    shopt -s nullglob
    ab=("${RUN%/*}"/*-ab)  # where train_ab.py puts the variants: of $RUN and of the run dirs beside it (AB_SET)
    files=(/tmp/ab-*.log)
    for d in "${ab[@]}"; do files+=("$d"/*/evaluate/metrics.json "$d"/*/train/manifest.json "$d"/*/train/metrics.csv); done
    tar czf "$out/.ab.tgz.part" "${files[@]}" && mv "$out/.ab.tgz.part" "$out/ab.tgz"  # never half an archive
    ls -la "$out"
    ;;
  wait)
    seconds=${2:?usage: $0 wait SECONDS DIR}
    out=${3:?usage: $0 wait SECONDS DIR}
    end=$((SECONDS + seconds))
    # an A/B started in the background just before this call may not have made its marker yet
    for _ in {1..10}; do
      if compgen -G "/tmp/ab-*.running" >/dev/null; then break; fi
      sleep 1
    done
    while compgen -G "/tmp/ab-*.running" >/dev/null && ((SECONDS < end)); do
      sleep 15
      "$0" collect "$out" >/dev/null 2>&1 || true
    done
    "$0" collect "$out"
    "$0" status
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
