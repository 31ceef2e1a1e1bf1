#!/usr/bin/env bash
# Regenerate every number of the README's results section (CPU: about 2 hours; pass --device cuda where supported).
# Each benchmark writes JSON into benchmarks/results/; then make_readme.py rebuilds the README section.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
mkdir -p $R
python -c "import json,os,platform; print(json.dumps({'description': f'{os.cpu_count()} CPU cores ({platform.machine()}), no GPU, torch threads 2'}))" > $R/machine.json
python benchmarks/collection.py > $R/collection.json
python benchmarks/env_speed.py > $R/env_speed.json
python benchmarks/jacobian_speed.py --json > $R/jacobian_speed.json
python benchmarks/gradient_cost.py --json-out $R/gradient_cost.json
python benchmarks/gradient_fidelity.py --json-out $R/gradient_fidelity.json
wm-gym eval-fidelity --model wm_gym/assets/pusht/global_model --probe runs/probe --data data/pusht64 --out $R/fidelity
cp $R/fidelity/fidelity.json $R/fidelity.json
python examples/fog_pusht.py --out runs/fog_example && cp runs/fog_example/summary.json $R/fog_example.json
python benchmarks/sample_efficiency.py --quick
python benchmarks/make_readme.py
