"""One FoG run on the decoupled true-state Push-T: python run.py NAME STEPS key=value ..."""
import os
import sys, json, time, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from state_env import Dyn, StateVecEnv
from fog_trainer import FoGConfig, FoGTrainer
torch.set_num_threads(1)
name, steps = sys.argv[1], int(sys.argv[2])
kw = dict(num_envs=16, horizon=16, progress_bar=False, tensorboard=False, checkpoint_every=0, grad_split=True,
          run_dir=os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", name))
for s in sys.argv[3:]:
    k, v = s.split("="); kw[k] = type(getattr(FoGConfig, k))(eval(v))
model = Dyn(); model.load_state_dict(torch.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dyn.pt"))); model.requires_grad_(False)
env = StateVecEnv(model, num_envs=kw["num_envs"])
t0 = time.time()
tr = FoGTrainer(env, FoGConfig(**kw)).learn(steps)
H = tr.history
g = np.array([h["grad_norm"] for h in H]); gc = np.array([h["grad_norm_critic_term"] for h in H]); gr = np.array([h["grad_norm_reward_term"] for h in H])
# deterministic evaluation on 24 fresh gym-pusht starts: max coverage within the first episode
ev = StateVecEnv(model, num_envs=24); z = ev.reset_tensor(seed=12345); maxcov = np.zeros(24); alive = np.ones(24, bool)
with torch.no_grad():
    for t in range(300):
        a, _ = tr.actor(tr._norm(z), deterministic=True)
        cov = np.array([e._get_coverage() for e in ev.envs]); maxcov = np.where(alive, np.maximum(maxcov, cov), maxcov)
        s = ev.step_tensor(a); alive &= ~(s.terminated | s.truncated).numpy(); z = s.latent
q = lambda x, p: float(np.nanpercentile(x, p))
last = H[-20:]
res = dict(name=name, cfg={k: v for k, v in kw.items() if k not in ("run_dir",)}, steps=tr.num_timesteps, minutes=(time.time() - t0) / 60,
           ep_rew_last=float(np.mean([h.get("ep_rew_mean", np.nan) for h in last])),
           train_cov=float(np.mean(env.coverages[-50:])) if env.coverages else None,
           eval_max_cov=float(maxcov.mean()), eval_success=float((maxcov > 0.95).mean()),
           grad_p50=q(g, 50), grad_p99=q(g, 99), grad_max=float(g.max()),
           critic_term_p50=q(gc, 50), critic_term_p99=q(gc, 99), critic_term_max=float(gc.max()),
           reward_term_p50=q(gr, 50), reward_term_p99=q(gr, 99),
           critic_loss_last=float(np.mean([h["critic_loss"] for h in last])), ev_last=float(np.mean([h.get("explained_variance", np.nan) for h in last])), ev_first=float(np.mean([h.get("explained_variance", np.nan) for h in H[:20]])), skipped=tr.skipped_updates,
           curve=[(h["num_timesteps"], h.get("ep_rew_mean")) for h in H[::10]])
print(json.dumps(res))
with open("results.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
