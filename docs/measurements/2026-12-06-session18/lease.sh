#!/usr/bin/env bash
# Twelfth lease (written in session 18, run in session 19 on an H100, 2026-12-06 08:03-08:17 UTC): content-mined hard negatives (train.content_negatives), each
# variant with its content-only counterpart, and the config itself, all on one upstream. Run as
# `bash docs/measurements/2026-12-06-session18/lease.sh ab` from the call's working tree (this folder is
# not in /tmp/code) after the seven staging calls (scripts/device_stage_in.sh done); it starts the A/Bs
# in the background from /tmp/code and returns. Then `bash scripts/device_ab.sh wait S $OUT` (from
# /tmp/code) until they end: one archive, ab.tgz.
# On the H100 (80 GB) six at once ran out of GPU memory: cn4, cn16 and cn16_cont died at their first training step, so
# `rerun` started those three again once the first three had ended (ab.tgz here is after the rerun).
set -euo pipefail
cd /tmp/code
C='train.neighbours=0; train.board_tokens=0'
start() { (setsid nohup bash scripts/device_ab.sh run "$1" --variant "$2" >/dev/null 2>&1 &); }
case ${1:?step} in
  ab)
    start base "base:"
    start basec "base_cont: $C"
    start cn4 "cn4: train.content_negatives=4"
    start cn4c "cn4_cont: train.content_negatives=4; $C"
    start cn16 "cn16: train.content_negatives=16"
    start cn16c "cn16_cont: train.content_negatives=16; $C"
    ;;
  rerun)
    start cn4 "cn4: train.content_negatives=4"
    start cn16 "cn16: train.content_negatives=16"
    start cn16c "cn16_cont: train.content_negatives=16; $C"
    ;;
esac
