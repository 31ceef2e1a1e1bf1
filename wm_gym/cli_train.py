"""Training / evaluation subcommands of ``wm-gym``; each lives in the module it drives.

A module listed in ``_MODULES`` exposes ``add_cli(subparsers)`` that adds its subcommand(s).
"""

import importlib

_MODULES = ("wm_gym.train_global", "wm_gym.train_surrogate", "wm_gym.fidelity", "wm_gym.export")


def add_commands(sub) -> None:
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_cli(sub)
