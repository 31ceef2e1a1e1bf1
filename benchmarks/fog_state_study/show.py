import json, sys
for l in open('results.jsonl'):
    r = json.loads(l); c = [v for s, v in r['curve'] if v is not None]
    if not r['name'].startswith(tuple(sys.argv[1:]) or ("",)): continue
    print(r['name'], f"{r['minutes']:.1f}min", 'ep_rew first/last', round(c[0]), round(r['ep_rew_last']), 'curve', [round(v) for v in c[::max(1, len(c)//6)]],
          'evalcov', round(r['eval_max_cov'], 3), 'succ', r['eval_success'], 'traincov', r['train_cov'] and round(r['train_cov'], 3),
          'grad p50/p99/max', round(r['grad_p50'], 2), round(r['grad_p99'], 1), round(r['grad_max'], 1),
          'critic p50/p99', round(r['critic_term_p50'], 2), round(r['critic_term_p99'], 1),
          'reward p50/p99', round(r['reward_term_p50'], 2), round(r['reward_term_p99'], 1), 'EV', r.get('ev_last') and round(r['ev_last'], 3))
