"""``ppo-train``: SB3 PPO on WM-PushT-v0, or on the real gym-pusht with ``--env gym-pusht`` (see ``ppo-train --help``)."""

import sys

from wm_gym.cliargs import parse_args

from .ppo import PPOArgs, train_ppo


def main(argv=None) -> int:
    args = parse_args(PPOArgs, argv, description=__doc__, prog="ppo-train")
    _, rows, out = train_ppo(args)
    last = rows[-1] if rows else None
    print(f"saved {out}/model.zip; last (env_steps, ep_rew_mean, ep_len_mean, seconds) = {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
