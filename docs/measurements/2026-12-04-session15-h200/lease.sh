#!/usr/bin/env bash
# Tenth lease (H200, 2026-12-04): board negatives near in time (train.board_negative_window), each with its
# content-only counterpart, all on one upstream. Run as `bash docs/measurements/.../lease.sh` from the
# call's working tree (it is not in /tmp/code) after the seven staging calls (scripts/device_stage_in.sh
# done); it starts the A/Bs in the background from /tmp/code and returns.
set -euo pipefail
cd /tmp/code
G='train.board_negatives=4'
C='train.neighbours=0; train.board_tokens=0'
start() { (setsid nohup bash scripts/device_ab.sh run "$1" --variant "$2" >/dev/null 2>&1 &); }
start bn4 "bn4: $G"
start bn4c "bn4_cont: $G; $C"
start bnw2 "bnw2: $G; train.board_negative_window=2"
start bnw2c "bnw2_cont: $G; train.board_negative_window=2; $C"
start bnw8 "bnw8: $G; train.board_negative_window=8"
start bnw8c "bnw8_cont: $G; train.board_negative_window=8; $C"
