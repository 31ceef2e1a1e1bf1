"""Collect state transitions with wm_gym's behaviour mix in gym-pusht; fit the residual MLP dynamics."""
import os
import sys, time, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from state_env import Dyn, features, D
from gym_pusht.envs.pusht import PushTEnv
from wm_gym.policies import make_behaviour_policy
torch.set_num_threads(2)
t0 = time.time()
env, pol = PushTEnv(obs_type="state"), make_behaviour_policy()
Z, A, Z1 = [], [], []
rng = np.random.default_rng(0)
for ep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 200):
    env.reset(seed=ep); pol.reset(rng)
    for t in range(300):
        st = np.array([*env.agent.position, *env.block.position, env.block.angle % (2 * np.pi)])
        a = pol(st) if rng.random() > 0.1 else rng.uniform(0, 512, 2)  # some random actions for coverage
        z = features(env); env.step(np.asarray(a, np.float64)); Z.append(z); A.append(a); Z1.append(features(env))
Z, A, Z1 = map(lambda x: torch.tensor(np.array(x), dtype=torch.float32), (Z, A, Z1))
print("collected", len(Z), "in", time.time() - t0, "s", flush=True)
n = len(Z); perm = torch.randperm(n); val, tr = perm[: n // 10], perm[n // 10:]
model = Dyn(); opt = torch.optim.Adam(model.parameters(), 1e-3)
for epoch in range(int(sys.argv[2]) if len(sys.argv) > 2 else 30):
    for idx in tr[torch.randperm(len(tr))].split(512):
        loss = ((model(Z[idx], A[idx] / 256 - 1) - Z1[idx]) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        vl = ((model(Z[val], A[val] / 256 - 1) - Z1[val]) ** 2).mean()
        copy = ((Z[val] - Z1[val]) ** 2).mean()
    torch.save(model.state_dict(), os.path.join(os.path.dirname(os.path.abspath(__file__)), "dyn.pt"))
    print(f"epoch {epoch} val mse {vl:.2e} (copy-last {copy:.2e}) t={time.time()-t0:.0f}s", flush=True)
torch.save(model.state_dict(), os.path.join(os.path.dirname(os.path.abspath(__file__)), "dyn.pt"))
