#!/usr/bin/env bash
# after runs/ft_cw$CW finishes (run from anywhere; CW=30 by default, CW=100 for the second round): export, judge,
# probe-free block pixels, agent sharpness, beside r2 (the same recipe with change weight 10) and the cw 30 candidate
set -euo pipefail
CW=${CW:-30}
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
cp runs/ft_cw$CW/metrics.json runs/global_training_cw$CW.json
wm-gym export --global-model runs/ft_cw$CW/global_model --surrogate wm_gym/assets/pusht/surrogate --data data/pusht64 \
  --out runs/cand_cw$CW --metrics runs/global_training_cw$CW.json,runs/surrogate_training.json
wm-gym eval-fidelity --model runs/cand_cw$CW --probe runs/probe --data data/pusht64 --out runs/fid_cw$CW --progress false --video-rollouts 0 --threads 2
models=runs/cand_r2/global_model,runs/cand_cw30/global_model
[ "$CW" = 30 ] || models=$models,runs/cand_cw$CW/global_model
python benchmarks/block_iou.py --models $models --data data/pusht64 --json runs/block_iou_cw$CW.json --threads 2
cd benchmarks && python agent_sharpness.py --models ${models//runs\//..\/runs\/} --data ../data/pusht64 --threads 2 --json ../runs/agent_sharpness_cw$CW.json
