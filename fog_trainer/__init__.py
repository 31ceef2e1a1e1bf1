"""Decoupled first-order gradient (FoG) actor-critic for differentiable world-model envs.

>>> from fog_trainer import FoGConfig, FoGTrainer, FoGPolicy
>>> FoGConfig().horizon
16
"""

from .agent import Actor, Critic, FoGPolicy, RunningMeanStd
from .config import FoGConfig
from .evaluate import RandomPolicy, SampledPolicy, ScriptedPusher, WorldModelEvaluator, evaluate_in_ground_truth
from .fog import FoGStep, fog_step, swap, swap_step
from .trainer import FoGTrainer, td_lambda_targets

__all__ = [
    "Actor", "Critic", "FoGConfig", "FoGPolicy", "FoGStep", "FoGTrainer", "RandomPolicy", "RunningMeanStd",
    "SampledPolicy", "ScriptedPusher", "WorldModelEvaluator", "evaluate_in_ground_truth", "fog_step", "swap", "swap_step", "td_lambda_targets",
]
