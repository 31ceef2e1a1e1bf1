"""Describe this machine for the README's results section (``benchmarks/run_all.sh machine``).

    python benchmarks/machine.py > benchmarks/results/machine.json

The CPU model and its bfloat16 hardware are part of the description because the numbers depend on them: the
speed tables do, and so does anything run with ``precision="auto"`` (bfloat16 where the CPU has AMX or
AVX512-BF16, whose kernels round differently), e.g. the FoG example's training run
(``benchmarks/results/host_intel_amx/README.md`` has the same scripts on a second host).
"""

from __future__ import annotations

import json
import os
import platform

import torch

from wm_gym.models.global_model import cpu_bf16_hardware


def host_name(device: str = "cpu") -> str:
    """What runs work on ``device``: the GPU's name on CUDA, else the CPU's model name with the vector instructions
    torch's kernels dispatch to and the CPU's bfloat16 flags, e.g. ``"AMD EPYC (AVX2)"``. Benchmarks that save runs
    record it, because the same command gives other numbers on a CPU whose kernels round differently
    (``benchmarks/results/ppo_tuning/README.md``); the model name alone is not enough: two "AMD EPYC" hosts gave
    other runs of the same command (``benchmarks/results/fog_crossing/README.md``). Two hosts with the same name
    may still round differently; ``benchmarks/same_runs.py`` tells."""
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model, bf16 = cpu_bf16_hardware()
    return f"{model} ({', '.join((torch.backends.cpu.get_cpu_capability(), *bf16))})"


SOFTWARE = ("torch", "diffusers", "stable-baselines3", "gymnasium", "numpy", "gym-pusht")


def software() -> dict[str, str]:
    """The versions of the packages a run's numbers depend on (``"not installed"`` for a missing one); saved runs
    record them beside the host, so that ``benchmarks/same_runs.py`` can say what else differs between two runs."""
    from importlib.metadata import PackageNotFoundError, version

    def _version(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {name: _version(name) for name in SOFTWARE}


def describe() -> dict:
    model, bf16 = cpu_bf16_hardware()
    gpu = host_name("cuda") if torch.cuda.is_available() else "no GPU"
    hardware = ", ".join(bf16) if bf16 else "no native bfloat16"
    return {"description": f"{os.cpu_count()} CPU cores ({model}, {platform.machine()}; {hardware}), {gpu}, "
                           f"torch {torch.__version__}",
            "cpu_model": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_flags": list(bf16),
            "cpu_count": os.cpu_count(), "torch": torch.__version__}


if __name__ == "__main__":
    print(json.dumps(describe()))
