"""The reversing deformational flow of the sphere-transport literature, a prescribed velocity.

Nair and Lauritzen (J. Comput. Phys. 229, 2010), case 4, the first test of Lauritzen et al.
(Geosci. Model Dev. 5, 2012): on the unit sphere, longitude ``lam``, latitude ``th``,
``lam' = lam - 2 pi t / T``,

    u = k sin^2(lam') sin(2 th) cos(pi t / T) + 2 pi cos(th) / T,
    v = k sin(2 lam') cos(th) cos(pi t / T),            k = 2.4, T = 5,

(``u`` eastward, ``v`` northward). It is divergence-free; the deformation reverses at ``T / 2``
and the rotation makes one turn, so the exact solution at ``T`` is the start. Two Gaussian hills
``0.95 exp(-5 |x - c_i|^2)`` centred on the equator at longitudes 5 pi / 6 and 7 pi / 6 are drawn
into filaments a few degrees wide at ``T / 2``: a test of the schemes' dissipation at the grid
scale (docs/numerics.md §2.10). Use it as a velocity ``v(t, x)`` in any solver.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PERIOD", "deformational_flow", "gaussian_hills"]

#: The flow's period T: the density at T is the initial one.
PERIOD = 5.0
#: The strength k of the deformation.
STRENGTH = 2.4
#: The hills' centres: longitudes on the equator.
CENTRES = (5 * np.pi / 6, 7 * np.pi / 6)


def deformational_flow(t: float, x: np.ndarray) -> np.ndarray:
    """(N, 3) velocity at time ``t`` of the points ``x`` (N, 3) on the unit sphere (tangent)."""
    x = np.asarray(x, dtype=float)
    lam = np.arctan2(x[:, 1], x[:, 0])
    th = np.arcsin(np.clip(x[:, 2], -1.0, 1.0))
    turn = lam - 2 * np.pi * t / PERIOD
    swing = np.cos(np.pi * t / PERIOD)
    u = STRENGTH * np.sin(turn) ** 2 * np.sin(2 * th) * swing + 2 * np.pi * np.cos(th) / PERIOD
    v = STRENGTH * np.sin(2 * turn) * np.cos(th) * swing
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)], axis=1)
    north = np.stack([-np.sin(th) * np.cos(lam), -np.sin(th) * np.sin(lam), np.cos(th)], axis=1)
    return u[:, None] * east + v[:, None] * north


def _equator(lam: float) -> np.ndarray:
    return np.array([np.cos(lam), np.sin(lam), 0.0])


def gaussian_hills(x: np.ndarray) -> np.ndarray:
    """(N,) the two Gaussian hills ``0.95 exp(-5 |x - c_i|^2)`` at the points ``x`` (N, 3)."""
    x = np.asarray(x, dtype=float)
    hills = [0.95 * np.exp(-5.0 * ((x - _equator(lam)) ** 2).sum(axis=1)) for lam in CENTRES]
    return hills[0] + hills[1]
