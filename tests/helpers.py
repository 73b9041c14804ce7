"""Helpers the tests share (import as ``from helpers import ...``: pytest puts tests/ on the path)."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
#: What every rank runs with (launch), and a serial run compared bit for bit with them.
ONE_THREAD = {"VLASOV_TF_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: A small circle case whose [grid] table comes last: tests of a grid key append it.
GRID_CASE = """
[case]
name = "q"
geometry = "circle"
T = 0.1
outputs = 2
[initial]
family = "uniform_perturbed"
amplitude = 0.1
k = 2
[model]
beta = 2.0
[particles]
tokens = [10]
layers = [4]
[grid]
resolutions = [16]
"""


def launch(n: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``mpiexec -n n args`` from the repository root, every rank on one thread."""
    env = {**os.environ, **ONE_THREAD}
    return subprocess.run(
        [MPIEXEC, "-n", str(n), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def row_errors(
    shift: np.ndarray, sums: np.ndarray, ref_shift: np.ndarray, ref_sums: np.ndarray
) -> np.ndarray:
    """Per row ``max_c |S_ic - D_ic| / D_i,normaliser`` of scaled kernel sums ``(shift, sums)``
    against a reference ``(ref_shift, ref_sums)``, at the reference's shift."""
    assert np.isfinite(shift).all() and np.isfinite(sums).all()
    scaled = sums * np.exp(shift - ref_shift)[:, None]
    return np.abs(scaled - ref_sums).max(axis=1) / ref_sums[:, -1]


def max_row_error(
    shift: np.ndarray, sums: np.ndarray, ref_shift: np.ndarray, ref_sums: np.ndarray
) -> float:
    """The largest of :func:`row_errors`."""
    return float(row_errors(shift, sums, ref_shift, ref_sums).max())


def assert_same_diagnostics(a, b) -> set[str]:
    """Every diagnostic of run files ``a`` and ``b`` (open ``RunFile``s) equal bit for bit, the
    timings (``wall_s``, ``diagnostics_s``) apart; returns the names compared."""
    assert b.diagnostic_names() == a.diagnostic_names()
    names = set(a.diagnostic_names()) - {"wall_s", "diagnostics_s"}
    for name in names:
        da, db = a.diagnostics(name), b.diagnostics(name)
        assert sorted(da) == sorted(db), name
        for key in da:
            np.testing.assert_array_equal(db[key], da[key], err_msg=f"{name} {key}")
    return names


@contextmanager
def killed_at_call(
    monkeypatch, owner: Any, name: str, k: int, counts: Callable[..., bool] = lambda *args: True
) -> Iterator[None]:
    """A kill inside the block: ``owner.name`` raises ``KeyboardInterrupt`` at its ``k``-th call
    (of those ``counts(*args)`` accepts), which the block must raise; restored after it."""
    original, calls = getattr(owner, name), [0]

    def dying(*args):
        calls[0] += counts(*args)
        if calls[0] == k:
            raise KeyboardInterrupt("simulated kill")
        return original(*args)

    monkeypatch.setattr(owner, name, dying)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(owner, name, original)


def icosphere(level: int):
    """The icosahedron's 20 triangles split ``level`` times (20 4^level cells): sphere meshes smaller
    than the ladder's level 0 (1080 cells), for phase-space tests that must run in seconds."""
    import numpy as np

    from vlasov_tf.geometry.meshes import refine_sphere, sphere_geometry

    g = (1 + 5**0.5) / 2
    vertices = np.array(
        [[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g],
         [0, -1, -g], [0, 1, -g], [g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]], dtype=float,
    )  # fmt: skip
    faces = [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
        [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
        [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ]
    mesh = sphere_geometry(vertices, np.array(faces), level=0, source="icosahedron")
    for _ in range(level):
        mesh = refine_sphere(mesh, source="icosahedron")
    return mesh
