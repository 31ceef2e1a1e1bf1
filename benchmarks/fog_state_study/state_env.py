"""Push-T on the TRUE state, decoupled: forward = gym-pusht physics, backward = a learned MLP's Jacobians.

Implements fog_trainer's TensorVecEnv protocol so FoGTrainer runs on it unchanged (the DESIGN.md state study).
z (11) = agent xy, agent v, block xy, cos, sin, block v, block w (all scaled ~[-1,1]); reward = wm_gym dense reward
of the next state; surrogate = residual MLP f(z, a_norm) + the analytic dense reward of f's prediction.
"""
import dataclasses, math
import numpy as np, torch, torch.nn as nn
import gymnasium as gym
from gym_pusht.envs.pusht import PushTEnv
from wm_gym.models.surrogate import Linearization as Lin
from wm_gym.pusht import dense_reward, GOAL_POSE

D = 11

def features(e) -> np.ndarray:
    a, b = e.agent, e.block
    th = b.angle
    return np.array([a.position[0] / 256 - 1, a.position[1] / 256 - 1, a.velocity[0] / 256, a.velocity[1] / 256,
                     b.position[0] / 256 - 1, b.position[1] / 256 - 1, math.cos(th), math.sin(th),
                     b.velocity[0] / 256, b.velocity[1] / 256, b.angular_velocity / 4], dtype=np.float32)

def dense_torch(z):
    """wm_gym.pusht.dense_reward on features (differentiable)."""
    agent = (z[..., 0:2] + 1) * 256
    block = (z[..., 4:6] + 1) * 256
    pos_err = (block - torch.tensor(GOAL_POSE[:2], dtype=z.dtype)).norm(dim=-1) / 256
    ang = torch.atan2(z[..., 7], z[..., 6]) - GOAL_POSE[2]
    ang = torch.remainder(ang + math.pi, 2 * math.pi) - math.pi
    reach = 0.5 * torch.relu((agent - block).norm(dim=-1) - 60) / 256
    return -(pos_err + ang.abs() / math.pi + reach)

class Dyn(nn.Module):
    def __init__(self, h=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D + 2, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, D))
    def forward(self, z, a_norm):
        return z + self.net(torch.cat([z, a_norm], -1)) * 0.1
    def step(self, z, a_env):
        nz = self(z, a_env / 256 - 1)
        return nz, dense_torch(nz)


@dataclasses.dataclass
class Step:
    obs: object; latent: torch.Tensor; reward: torch.Tensor; terminated: torch.Tensor; truncated: torch.Tensor
    final_latent: torch.Tensor; lin: Lin

class StateVecEnv:
    def __init__(self, model, num_envs=16, max_steps=300):
        self.model, self.num_envs, self.max_steps = model, num_envs, max_steps
        self.envs = [PushTEnv(obs_type="state") for _ in range(num_envs)]
        self.single_action_space = gym.spaces.Box(0, 512, (2,), np.float32)
        self.jac = torch.func.vmap(torch.func.jacrev(lambda z, a: self.model.step(z[None], a[None]), argnums=(0, 1)))
        self.coverages = []
    def _z(self):
        return torch.from_numpy(np.stack([features(e) for e in self.envs]))
    def reset_tensor(self, seed=None):
        self.rng = np.random.default_rng(seed)
        for e in self.envs:
            e.reset(seed=int(self.rng.integers(2**31)))
        self.t = np.zeros(self.num_envs, int); self.latent = self._z(); return self.latent
    def step_tensor(self, action):
        a = action.detach().clamp(0, 512)
        (dfdz, dfda), (drdz, drda) = self.jac(self.latent, a)
        rew, term = np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, bool)
        for i, e in enumerate(self.envs):
            _, _, term[i], _, info = e.step(a[i].numpy().astype(np.float64))
            st = np.array([*e.agent.position, *e.block.position, e.block.angle % (2 * np.pi)])
            rew[i] = dense_reward(st)
        self.t += 1
        final = self._z()
        trunc = (self.t >= self.max_steps) & ~term
        done = term | trunc
        for i in np.flatnonzero(done):
            self.coverages.append(float(self.envs[i]._get_coverage()))
            self.envs[i].reset(seed=int(self.rng.integers(2**31))); self.t[i] = 0
        lin = Lin(self.latent, a, None, None, dfdz[:, 0], dfda[:, 0], drdz[:, 0], drda[:, 0])
        self.latent = self._z()
        return Step(None, self.latent, torch.from_numpy(rew), torch.from_numpy(term), torch.from_numpy(trunc), final, lin)
