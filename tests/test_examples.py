"""The examples run end to end (``--smoke``: tiny runs on a tiny world model) and print what they promise."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args, timeout=300) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_fog_example_smoke(tiny_checkpoint, tmp_path):
    stdout = _run(["examples/fog_pusht.py", "--smoke", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)])
    assert "world-model mean reward per step" in stdout


@pytest.mark.parametrize("env,obs_type", [("WM-PushT-v0", "latent"), ("gym-pusht", "state")])
def test_ppo_example_smoke_trains_then_evaluates_in_gym_pusht(env, obs_type, tiny_checkpoint, tmp_path):
    stdout = _run(["examples/ppo_pusht.py", "--smoke", "--env", env, "--obs-type", obs_type, "--checkpoint",
                   str(tiny_checkpoint), "--out", str(tmp_path)])
    summary = json.loads(stdout.split("ground-truth gym-pusht:", 1)[1].strip().splitlines()[0])
    assert "mean_return_dense" in summary
    assert list(tmp_path.glob("*/ground_truth_eval.json"))
