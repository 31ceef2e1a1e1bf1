#!/usr/bin/env bash
# Regenerate every number of the README's results section, then the README section itself.
#   DATA=data/pusht64 PROBE=runs/probe bash benchmarks/run_all.sh [STAGE ...]
# Stages: machine collection speed gradients fidelity fog efficiency readme (default: all, in that order).
# DATA is a collection made with `wm-gym collect` (the shipped model used --episodes 600 --seed 0);
# PROBE a state probe made with `wm-gym train-probe --data $DATA --out $PROBE`; FRESH another collection (made if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
DATA=${DATA:-data/pusht64}
PROBE=${PROBE:-runs/probe}
FRESH=${FRESH:-data/pusht64_s3}   # a second collection (another --seed) that no model trained on
CKPT=wm_gym/assets/pusht
mkdir -p $R
stages=${*:-machine collection speed gradients fidelity fog efficiency readme}
for s in $stages; do
  echo "== $s ($(date +%H:%M:%S))"
  case $s in
    machine) python benchmarks/machine.py > $R/machine.json ;;
    collection) python benchmarks/collection.py --episodes 20 > $R/collection.json
                python benchmarks/collection.py --stats "$DATA" > $R/dataset_stats.json ;;
    speed) python benchmarks/jacobian_speed.py --repeats 10 > $R/jacobian_speed.md  # first: env_speed's gym-pusht
           python benchmarks/env_speed.py > $R/env_speed.json                          # workers slowed it when after
           python benchmarks/omp_wait.py --busy --timeout 240 > $R/omp_wait.md
           { echo '```'; for t in 1 2; do
               echo "# OMP_WAIT_POLICY=PASSIVE (wm-gym's default), python benchmarks/global_speed.py --train --model $CKPT/global_model --threads $t"
               python benchmarks/global_speed.py --train --model $CKPT/global_model --threads $t --repeats 10; done
             echo "# OMP_WAIT_POLICY=ACTIVE (a free machine), the same with --threads 2"
             OMP_WAIT_POLICY=ACTIVE python benchmarks/global_speed.py --train --model $CKPT/global_model --threads 2 --repeats 10
             echo '```'; } > $R/training_speed.md
           ;;
    gradients) python benchmarks/gradient_cost.py --json-out $R/gradient_cost.json
               python benchmarks/gradient_cost.py --precision bfloat16 --json-out $R/gradient_cost_bfloat16.json
               python benchmarks/gradient_fidelity.py --global-model $CKPT/global_model --surrogate $CKPT/surrogate --truth --starts 64 --noise-seeds 4 \
                 --data "$DATA" --json $R/gradient_fidelity.json > $R/gradient_fidelity.md
               python benchmarks/fog_ascent.py --json-out $R/fog_ascent.json ;;
    fidelity) wm-gym eval-fidelity --model $CKPT --probe "$PROBE" --data "$DATA" --out $R/fidelity --progress false
              wm-gym eval-fidelity --model $CKPT --probe "$PROBE" --data "$DATA" --out runs/fidelity_bfloat16 --progress false \
                --precision bfloat16 --video-rollouts 0 && cp runs/fidelity_bfloat16/fidelity.{md,json} $R/fidelity_bfloat16/
              python benchmarks/sampler_noise.py --global-model $CKPT/global_model --data "$DATA" --json $R/sampler_noise.json
              # the reward model on real frames: the training split's held-out episodes, and a collection it never saw
              [ -d "$FRESH" ] || wm-gym collect --episodes 600 --out "$FRESH" --seed 3 --workers 2 --quiet
              python benchmarks/reward_real.py --data "$DATA" --out $R/reward_model_data/shipped_pusht64.json > /dev/null
              python benchmarks/reward_real.py --data "$FRESH" --heldout all --out $R/reward_model_data/shipped_fresh_s3.json > /dev/null ;;
    fog) python examples/fog_pusht.py --out runs/fog_example && cp runs/fog_example/summary.json $R/fog_example.json
         cp runs/fog_example/learning_curve.png $R/fog_learning_curve.png
         python benchmarks/ground_truth_eval.py --policy runs/fog_example/policy --seeds 50 --json $R/fog_ground_truth_50.json
         python benchmarks/fog_before_after.py --checkpoint runs/fog_example/checkpoint.pt > $R/fog_before_after.json
         python benchmarks/reward_terms.py --policy runs/fog_example/policy --seeds 10 > $R/fog_reward_terms.json
         # the world model's fidelity where the trained policy acts (its own episodes in the truth)
         rm -rf runs/fog_example_data
         wm-gym collect --episodes 120 --out runs/fog_example_data --seed 1 --workers 2 --policy runs/fog_example/policy --quiet
         wm-gym eval-fidelity --model $CKPT --probe "$PROBE" --data runs/fog_example_data --out $R/fidelity_fog_policy \
           --starts-per-episode 8 --video-rollouts 0 --progress false ;;
    efficiency) python benchmarks/sample_efficiency.py --quick --seeds 0,1,2,3,4,5    # the README's 6 seeds
                python benchmarks/compare_fog_runs.py --reference $R/sample_efficiency_quick \
                  --fog "N = 16=$R/sample_efficiency_reward_scale" --fog "N = 8=$R/sample_efficiency_fog_n8" \
                  --fog "N = 16=$R/fog_envs_per_update/heldout_n16" --fog "N = 8=$R/fog_envs_per_update/heldout_n8" \
                  --json $R/sample_efficiency_quick/compare.json   # FoG runs of the studies, against these PPO runs
                # PPO-latent with settings for the budget (benchmarks/results/ppo_tuning/README.md), against the same FoG runs
                T=$R/ppo_tuning; P="--ppo n_steps=8 --ppo batch_size=128"
                for c in T1 T2 T3 T4 T4_heldout T4_seeds0-5; do
                  case $c in T2) P="$P --ppo log_std_init=-1" ;; T3) P="$P --ppo normalize_reward=true" ;; T4) P="$P --ppo learning_rate=1e-3" ;; esac
                  seeds=$(case $c in T4_heldout) echo 2,3,4,5 ;; T4_seeds0-5) echo 0,1,2,3,4,5 ;; *) echo 0,1 ;; esac)
                  mkdir -p $T/$c/runs && for s in ${seeds//,/ }; do cp $R/sample_efficiency_quick/runs/fog_$s.json $T/$c/runs/; done
                  [ $c = T4_seeds0-5 ] && cp -n $T/T4/runs/ppo_latent_*.json $T/T4_heldout/runs/ppo_latent_*.json $T/$c/runs/  # made above
                  python benchmarks/sample_efficiency.py --quick --algos fog,ppo_latent --seeds $seeds $P --out $T/$c
                done
                python benchmarks/sample_efficiency.py --quick --steps 200000 --algos ppo_latent --seeds 0,1 $P --out $T/T4_200k
                # T4_epyc, T5, T6, T4_epyc_seeds0-5, default_epyc and $R/fog_crossing are not made here: they were
                # made on a second host (AMD EPYC), FoG and PPO alike, by their study READMEs' commands; T4_16points
                # on a third (AMD EPYC (AVX2), $R/fog_crossing/README.md). Each run file records its host ("host"),
                # each summary.json lists them ("hosts"), and sample_efficiency.py refuses a summary that would
                # combine runs of several hosts (--mixed-hosts allows it).
                # FoG with other settings, against T4's PPO runs of seeds 0, 1 (benchmarks/results/fog_tuning/README.md)
                F=$R/fog_tuning
                for c in F1 F2; do
                  mkdir -p $F/$c/runs && cp $T/T4/runs/ppo_latent_{0,1}.json $F/$c/runs/
                  python benchmarks/sample_efficiency.py --quick --algos fog,ppo_latent --seeds 0,1 $P \
                    --fog $(case $c in F1) echo actor_lr=2e-3 ;; F2) echo init_log_std=-1.5 ;; esac) --out $F/$c
                done
                python benchmarks/compare_fog_runs.py --reference $T/T4 \
                  --fog "benchmark's FoG (actor lr 1e-3, initial log std -0.5)=$T/T4" \
                  --fog "F1: actor lr 2e-3=$F/F1" --fog "F2: initial log std -1.5=$F/F2" --json $F/compare.json
                python benchmarks/ppo_ground_truth.py --quick    # reads FoG's gym-pusht returns
                python benchmarks/reference_policies.py --json $R/reference_policies.json ;;
    readme) python benchmarks/make_readme.py ;;
    *) echo "unknown stage $s"; exit 2 ;;
  esac
done
