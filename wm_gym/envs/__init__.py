"""Gymnasium envs backed by a learned world model."""

from .core import CheckpointError, TensorStep, WorldModel, WorldModelSimulator
from .vector import WMPushTVectorEnv
from .wm_pusht import WMPushTEnv

__all__ = ["CheckpointError", "TensorStep", "WorldModel", "WorldModelSimulator", "WMPushTEnv", "WMPushTVectorEnv"]
