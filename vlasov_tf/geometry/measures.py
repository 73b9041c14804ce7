"""Measures on the sphere S^{d-1} (and in R^d) as weighted point clouds.

A measure is a pair ``(points, weights)``: ``points`` of shape (N, d),
``weights`` of shape (N,), non-negative with a positive total. This module
validates such pairs (with errors that name the problem) and samples the
initial measures the cases use.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from vlasov_tf.memory import BYTES_PER_CIRCLE_POINT, BYTES_PER_SAMPLE_DIM, check_memory

__all__ = [
    "SPHERE_ATOL",
    "angles_to_circle",
    "check_points",
    "check_weights",
    "circle_to_angles",
    "equally_spaced_circle",
    "normalize",
    "uniform_sphere",
    "von_mises_fisher_mixture",
]

#: Largest accepted ``| |x| - 1 |`` for points said to lie on the unit sphere.
SPHERE_ATOL = 1e-6


def check_points(
    points: np.ndarray,
    *,
    name: str = "points",
    dim: int | None = None,
    sphere: bool = True,
    atol: float = SPHERE_ATOL,
) -> np.ndarray:
    """Return ``points`` as a float64 (N, d) array after checking it.

    Raises ``ValueError`` naming ``name`` when the array is not 2-D, has fewer
    than two columns (or not ``dim`` columns), holds NaN/inf, or, with
    ``sphere=True``, has a row whose norm differs from 1 by more than ``atol``.
    """
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, d); got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} must have d >= 2 columns; got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have d = {dim} columns to match the model; got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one point is needed")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has non-finite values ({bad.sum()} rows; first row {i}: {arr[i]})")
    if sphere:
        dev = np.abs(np.linalg.norm(arr, axis=1) - 1.0)
        i = int(np.argmax(dev))
        if dev[i] > atol:
            raise ValueError(
                f"{name} are not on the unit sphere: row {i} has norm {1 + dev[i]:.3g} "
                f"(| |x| - 1 | = {dev[i]:.2e} > tolerance {atol:.1e}); normalise them first"
            )
    return arr


def check_weights(
    weights: np.ndarray | None, n: int, *, name: str = "weights", allow_zero: bool = False
) -> np.ndarray:
    """Return ``weights`` as a float64 (n,) array; ``None`` gives uniform weights 1/n.

    Raises ``ValueError`` naming ``name`` for a wrong shape, NaN/inf, a negative
    entry, or a total that is not positive (``allow_zero``: one rank's block of a
    measure split over MPI ranks may carry no mass).
    """
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the points; got {w.shape}")
    if not np.isfinite(w).all():
        i = int(np.flatnonzero(~np.isfinite(w))[0])
        raise ValueError(f"{name} has non-finite values ({name}[{i}] = {w[i]})")
    if (w < 0).any():
        i = int(np.argmin(w))
        raise ValueError(f"{name} must be non-negative; {name}[{i}] = {w[i]:.3g}")
    if not (allow_zero or w.sum() > 0):
        raise ValueError(f"{name} have zero total: a measure needs positive mass")
    return w


def normalize(points: np.ndarray) -> np.ndarray:
    """Project (N, d) points radially onto the unit sphere."""
    if isinstance(points, np.ndarray) and points.dtype == np.float64:
        # np.linalg.norm's arithmetic for real floats without its argument handling (~1 us of a
        # ~30 us layer of 64 tokens).
        return points / np.sqrt(np.add.reduce(points * points, axis=-1, keepdims=True))
    return points / np.linalg.norm(points, axis=-1, keepdims=True)


def angles_to_circle(theta: np.ndarray) -> np.ndarray:
    """Angles (N,) -> points (N, 2) ``(cos t, sin t)``."""
    theta = np.asarray(theta, dtype=float)
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def circle_to_angles(points: np.ndarray) -> np.ndarray:
    """Points (..., 2) on the circle -> angles in [0, 2 pi)."""
    return np.mod(np.arctan2(points[..., 1], points[..., 0]), 2 * np.pi)


def equally_spaced_circle(n: int, phase: float = 0.0) -> np.ndarray:
    """(n, 2) points at angles ``phase + 2 pi k / n``."""
    check_memory(BYTES_PER_CIRCLE_POINT * n, f"equally_spaced_circle: {n} points")
    return angles_to_circle(phase + 2 * np.pi * np.arange(n) / n)


def uniform_sphere(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) independent points uniform on S^{d-1}."""
    check_memory(24.0 * n * d, f"uniform_sphere: {n} points in d = {d}")  # the draw and its norms
    return normalize(rng.standard_normal((n, d)))


def von_mises_fisher_mixture(
    n: int,
    means: np.ndarray,
    kappas: np.ndarray,
    proportions: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, d) samples of a mixture of von Mises-Fisher laws on S^{d-1}.

    ``means`` (k, d) unit vectors, ``kappas`` (k,) concentrations > 0,
    ``proportions`` (k,) non-negative with positive sum.
    """
    means = check_points(means, name="vMF means")
    check_memory(BYTES_PER_SAMPLE_DIM * n * means.shape[1],
                 f"von_mises_fisher_mixture: {n} samples in d = {means.shape[1]}")  # fmt: skip
    kappas = np.asarray(kappas, dtype=float)
    p = check_weights(proportions, len(means), name="vMF proportions")
    if kappas.shape != (len(means),) or not (np.isfinite(kappas) & (kappas > 0)).all():
        raise ValueError(f"vMF kappas must be {len(means)} finite positive numbers; got {kappas}")
    counts = rng.multinomial(n, p / p.sum())
    parts = [
        stats.vonmises_fisher(mu, kappa).rvs(c, random_state=rng).reshape(c, means.shape[1])
        for mu, kappa, c in zip(means, kappas, counts, strict=True)
        if c > 0
    ]
    return normalize(rng.permutation(np.concatenate(parts)))
