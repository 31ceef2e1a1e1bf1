"""World-model networks: the global diffusion model, its reward model, the local surrogate, the state probe."""

from .denoiser import Denoiser
from .global_model import CheckpointError, GlobalModel, GlobalStep
from .reward_model import RewardModel, RewardOutput
from .sampler import EulerSampler, karras_sigmas
from .state_probe import StateProbe
from .surrogate import Linearization, Surrogate

__all__ = ["CheckpointError", "Denoiser", "EulerSampler", "GlobalModel", "GlobalStep", "Linearization",
           "RewardModel", "RewardOutput", "StateProbe", "Surrogate", "karras_sigmas"]
