"""Atomic writes: results appear whole or not at all, with ordinary file permissions."""

import os
import stat

import numpy as np
import pytest

from wm_gym.io import atomic_save_npz, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o644
    os.umask(old)


def test_atomic_files_get_ordinary_permissions(tmp_path, umask_022):
    # tempfile.mkstemp would leave results owner-only (0o600); an ordinary open gives 0o666 less the umask
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_save_npz(tmp_path / "b.npz", x=np.arange(3))
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == umask_022
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.npz"]  # no temp files left
    assert (tmp_path / "a.json").read_text() == "{}"
    np.testing.assert_array_equal(np.load(tmp_path / "b.npz")["x"], np.arange(3))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ep.npz"
    atomic_save_npz(path, x=np.arange(3))

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(Exception):
        atomic_save_npz(path, x=np.array([Unsaveable()], dtype=object))
    np.testing.assert_array_equal(np.load(path)["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ep.npz"]
