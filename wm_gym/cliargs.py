"""Dataclass-driven command lines (CleanRL style): every field is a typed flag with a one-line help.

    @dataclasses.dataclass
    class Args:
        seed: int = arg(0, "seeds random, numpy, torch and the env")

    args = parse_args(Args, argv)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any


def arg(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line help shown by ``--help``."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {s!r}")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        origin_args = typing.get_args(tp)
        if origin_args and type(None) in origin_args:  # Optional[X]
            tp = next(a for a in origin_args if a is not type(None))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "") + f" (default: {default})"
        if tp is bool:
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, default=default, help=help_)
        else:
            parser.add_argument(flag, type=tp, default=default, help=help_)


def parse_args(cls, argv=None, description: str | None = None, prog: str | None = None):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_dataclass_arguments(parser, cls)
    ns = parser.parse_args(argv)
    return cls(**vars(ns))
