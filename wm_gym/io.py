"""Atomic writes shared by the trainers: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename over it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_save_pretrained(model, final: Path) -> None:
    """``model.save_pretrained`` into a temp directory beside ``final``, then swap the directories."""
    final = Path(final)
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
