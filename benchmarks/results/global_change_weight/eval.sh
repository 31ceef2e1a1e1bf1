#!/usr/bin/env bash
# after runs/ft_cw30 finishes (run from anywhere): export, judge, probe-free block pixels, agent sharpness (r2 = same recipe, change weight 10)
set -euo pipefail
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
cp runs/ft_cw30/metrics.json runs/global_training_cw30.json
wm-gym export --global-model runs/ft_cw30/global_model --surrogate wm_gym/assets/pusht/surrogate --data data/pusht64 \
  --out runs/cand_cw30 --metrics runs/global_training_cw30.json,runs/surrogate_training.json
wm-gym eval-fidelity --model runs/cand_cw30 --probe runs/probe --data data/pusht64 --out runs/fid_cw30 --progress false --video-rollouts 0 --threads 2
python benchmarks/block_iou.py --models runs/cand_r2/global_model,runs/cand_cw30/global_model --data data/pusht64 --json runs/block_iou_cw30.json --threads 2
cd benchmarks && python agent_sharpness.py --models ../runs/cand_r2/global_model,../runs/cand_cw30/global_model --data ../data/pusht64 --threads 2 --json ../runs/agent_sharpness_cw30.json
