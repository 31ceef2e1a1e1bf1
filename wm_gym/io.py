"""Atomic writes: a reader (or a resumed run) never sees a half-written file or directory."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield the path of a new, empty temp file beside ``path``; on success it is renamed over ``path``.

    Unlike ``tempfile.mkstemp`` the file gets the permissions an ordinary ``open`` gives (0o666 less the umask),
    not owner-only 0o600, so the result is as readable as any other file the user writes. On an exception the
    temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".tmp_{secrets.token_hex(6)}{suffix}"
        with contextlib.suppress(FileExistsError):
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str, suffix: str = "") -> Iterator:
    """:func:`atomic_path`, opened in ``mode``; the file is flushed and fsynced before the rename."""
    with atomic_path(path, suffix) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_save_npz(path: Path, **arrays) -> None:
    """``np.savez_compressed`` to a temp file beside ``path`` (fsynced), then rename over it."""
    with _atomic_file(path, "wb", suffix=".npz") as f:
        np.savez_compressed(f, **arrays)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` (fsynced), then rename over it."""
    with _atomic_file(path, "w") as f:
        f.write(text)


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path`` (fsynced), then rename over it."""
    with _atomic_file(path, "wb") as f:
        torch.save(obj, f)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``final``; on success it replaces ``final`` as a whole.

    On an exception the temp directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_save_pretrained(model, final: Path) -> None:
    """``model.save_pretrained`` into a temp directory beside ``final``, then swap the directories."""
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp)
