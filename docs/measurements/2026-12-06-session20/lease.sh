#!/usr/bin/env bash
# Thirteenth lease (session 20, 2026-12-06): board-aware pin targets (content.pin_target_boards, each pin's
# target plus W times its boards' mean over pins from before 2013-04-01), each weight with its content-only
# counterpart, every pair on an upstream of its own (the targets are a content-stage output). Run as
# `bash docs/measurements/2026-12-06-session20/lease.sh ab W1 W2` from the call's working tree (this folder is
# not in /tmp/code) after the seven staging calls (scripts/device_stage_in.sh done); it starts the A/Bs in
# the background from /tmp/code and returns. Then `bash scripts/device_ab.sh wait S $OUT` (from /tmp/code)
# until they end: one archive, ab.tgz. Run on an H100 80GB, 2026-12-06: `ab 1.0 0.5` (22:11-22:19 UTC, four
# jobs at once fitted), then `extra` and `extra2` in turn on the weight-1 upstream (22:20-22:23: the single-dim 64
# model and seed 1; 22:23-22:26: the single-dim 256 model and content-only at seed 1). ab.tgz is the last
# collect, which holds all eight. (The two extra steps were typed into the calls by hand; these replay
# exactly those commands.)
set -euo pipefail
cd /tmp/code
C='train.neighbours=0; train.board_tokens=0'
start() {  # NAME WEIGHT VARIANT [RUN-SUFFIX EXTRA-SET]
  local set="--set content.pin_target_boards=$2 --set content.pin_target_boards_before=\"2013-04-01\" ${5:-}"
  (AB_RUN="/tmp/runs/bw$2${4:-}" AB_SET="$set" setsid nohup bash scripts/device_ab.sh run "$1" --variant "$3" >/dev/null 2>&1 &)
}
case ${1:?step} in
  ab)
    for w in "${@:2}"; do
      tag=${w//./}
      start "bw$tag" "$w" "bw$tag:"
      start "bw${tag}c" "$w" "bw${tag}_cont: $C"
    done
    ;;
  extra)  # after `ab`: what was run on the weight-1 upstream, two at a time
    start bw10d64 1.0 "bw10_d64: train.dims=[64]"
    start bw10s1 1.0 "bw10_s1: train.seed=1"
    ;;
  centred)  # not run yet (written for the next lease): the boards' means centred, both models, at w 1
    start bw10ctr 1.0 "bw10_ctr:" -ctr "--set content.pin_target_boards_centred=true"
    start bw10ctrc 1.0 "bw10_ctr_cont: $C" -ctr "--set content.pin_target_boards_centred=true"
    ;;
  extra2)
    start bw10d256 1.0 "bw10_d256: train.dims=[256]"
    start bw10cs1 1.0 "bw10_cont_s1: train.seed=1; $C"
    ;;
esac
