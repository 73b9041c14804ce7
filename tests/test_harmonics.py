"""Spherical-harmonic (Funk-Hecke) kernel sums against the dense sums they replace."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import eval_legendre, sph_legendre_p, spherical_in

from vlasov_tf import harmonics
from vlasov_tf.harmonics import (
    HarmonicPlan,
    harmonic_cost,
    harmonic_degree,
    harmonic_sums,
    scaled_orthogonal,
    truncation_bound,
)
from vlasov_tf.kernels import exp_kernel_sums

ROW_RTOL = 1e-10  # the contract: every row, normaliser included, relative to the dense sum


def _sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, 3))
    return x / np.linalg.norm(x, axis=1)[:, None]


def _rotation(rng: np.random.Generator, proper: bool = True) -> np.ndarray:
    r = Rotation.random(random_state=rng).as_matrix()
    return r if proper else r @ np.diag([1.0, 1.0, -1.0])


def _row_errors(B, queries, points, weights, values, shift, sums) -> np.ndarray:
    """Per row ``max_c |S_ic - D_ic| / max_c |D_ic|`` against the dense sums, at the dense shift."""
    d_shift, d_sums = exp_kernel_sums(queries @ B.T, points, weights, values)
    assert np.isfinite(shift).all() and np.isfinite(sums).all()
    ours = sums * np.exp(shift - d_shift)[:, None]
    return np.abs(ours - d_sums).max(axis=1) / np.abs(d_sums).max(axis=1)


@pytest.mark.parametrize("scale", [0.5, 1.0, 10.0, 50.0])
@pytest.mark.parametrize("proper", [True, False])
def test_matches_dense_sums(rng, scale, proper):
    points, queries = _sphere(rng, 600), _sphere(rng, 400)
    weights = rng.random(600)
    B = scale * _rotation(rng, proper)
    shift, sums = harmonic_sums(B, queries, points, weights, points)
    assert shift.shape == (400,) and sums.shape == (400, 4)
    assert _row_errors(B, queries, points, weights, points, shift, sums).max() <= ROW_RTOL
    # Spread mass: the normalisers are large, so no row needs the dense fix-up.
    np.testing.assert_allclose(shift, scale + np.log(weights.sum()))


def test_point_mass_at_large_scale_uses_the_fix_up(rng):
    """s = 1000, all keys within 1e-3 of one point: normalisers span e^{-2000}..1, still 1e-10 per row."""
    centre = np.array([0.2, -0.4, 0.9]) / np.linalg.norm([0.2, -0.4, 0.9])
    points = centre + 1e-3 * rng.normal(size=(300, 3))
    points /= np.linalg.norm(points, axis=1)[:, None]
    weights = rng.random(300)
    R = _rotation(rng, proper=False)
    B = 1000.0 * R  # exp(1000 <R x, y>): x = R^T y meets the key y, x = -R^T centre is opposite
    queries = np.r_[_sphere(rng, 150), points[:50] @ R, -(centre @ R)[None]]
    shift, sums = harmonic_sums(B, queries, points, weights, points)
    assert np.isfinite(shift).all() and np.isfinite(sums).all()
    assert _row_errors(B, queries, points, weights, points, shift, sums).max() <= ROW_RTOL
    harmonic_rows = np.isclose(shift, 1000.0 + np.log(weights.sum()), rtol=0, atol=1e-12)
    assert harmonic_rows[150:200].all()  # the aligned rows stay spectral
    assert not harmonic_rows.all()  # the opposite ones went dense


def test_raw_truncation_error_within_bound(rng):
    """Without the fix-up the error of degree L is at most tau_L sum w |v| (+ round-off)."""
    points, queries = _sphere(rng, 300), _sphere(rng, 200)
    weights = rng.random(300)
    scale = 20.0
    plan = HarmonicPlan(scale * np.eye(3), queries, points, tol=1e-6)
    wv = weights[:, None] * np.c_[points, np.ones(300)]
    coef = harmonics._coefficients(plan._p, wv)
    approx = harmonics._evaluate(plan._q, coef * plan._spectral)
    d_shift, d_sums = exp_kernel_sums(scale * queries, points, weights, points)
    exact = d_sums * np.exp(d_shift - scale)[:, None]
    bound = truncation_bound(scale, plan.degree) * np.abs(wv).sum(axis=0)
    err = np.abs(approx - exact).max(axis=0)
    assert (err <= bound + 1e-13).all()
    assert err.max() > 1e-3 * bound.max()  # the bound is not vacuous at this tol


def test_plan_agrees_with_function_and_is_reusable(rng):
    points, queries = _sphere(rng, 500), _sphere(rng, 300)
    B = 5.0 * _rotation(rng)
    held = HarmonicPlan(B, queries, points)
    streamed = HarmonicPlan(B, queries, points, memory=0)
    assert held.cached_bytes > 0 and streamed.cached_bytes == 0
    for _ in range(2):  # new weights every stage, same geometry: nothing weight-dependent is kept
        weights = rng.random(500)
        for plan in (held, streamed):  # held tables and tables rebuilt block by block
            shift, sums = plan(weights, points)
            assert _row_errors(B, queries, points, weights, points, shift, sums).max() <= ROW_RTOL
    shift, sums = held(weights)  # values None: the normaliser only
    assert sums.shape == (300, 1)
    assert _row_errors(B, queries, points, weights, None, shift, sums).max() <= ROW_RTOL


def test_empty_queries(rng):
    points = _sphere(rng, 10)
    shift, sums = harmonic_sums(2.0 * np.eye(3), np.zeros((0, 3)), points, np.ones(10), points)
    assert shift.shape == (0,) and sums.shape == (0, 4)


def test_scaled_orthogonal(rng):
    R = _rotation(rng, proper=False)
    s, R2 = scaled_orthogonal(3.5 * R)
    assert s == pytest.approx(3.5, rel=1e-14)
    np.testing.assert_allclose(R2, R, atol=1e-14)
    assert scaled_orthogonal(rng.normal(size=(3, 3))) is None
    assert scaled_orthogonal(np.diag([1.0, 1.0, 1.001])) is None
    assert scaled_orthogonal(np.zeros((3, 3))) is None
    assert scaled_orthogonal(np.ones((3, 2))) is None
    assert scaled_orthogonal(2.0 * np.eye(2)) is not None  # any dimension


def test_harmonic_degree_grows_with_scale_and_meets_the_bound():
    scales = [0.1, 1.0, 10.0, 100.0, 1000.0]
    degrees = [harmonic_degree(s, 1e-12) for s in scales]
    assert degrees == sorted(degrees) and degrees[0] < degrees[-1]
    for s, deg in zip(scales, degrees, strict=True):
        assert truncation_bound(s, deg) <= 1e-12 < truncation_bound(s, deg - 1)
        # ~ sqrt(2 s log(1 / tol)) at large s
        if s >= 100:
            assert 0.8 < deg / np.sqrt(2 * s * np.log(1e12)) < 1.3
    assert harmonic_degree(10.0, 1e-15) > harmonic_degree(10.0, 1e-6)
    with pytest.raises(ValueError, match="dense"):
        harmonic_degree(1e6, 1e-15)
    with pytest.raises(ValueError, match="tol"):
        harmonic_degree(1.0, 0.0)
    with pytest.raises(ValueError, match="scale"):
        harmonic_degree(-1.0, 1e-12)


def test_truncation_bound_against_the_expansion():
    """tau_L(s) from scipy's unscaled i_l, and the truncated series of exp(s (t - 1)) within it."""
    s, deg = 3.0, 8
    ell = np.arange(60)
    direct = ((2 * ell + 1) * spherical_in(ell, s) * np.exp(-s))[deg + 1 :].sum()
    assert truncation_bound(s, deg) == pytest.approx(direct, rel=1e-12)
    t = np.linspace(-1, 1, 201)
    series = sum((2 * n + 1) * spherical_in(n, s) * np.exp(-s) * eval_legendre(n, t) for n in range(deg + 1))
    err = np.abs(series - np.exp(s * (t - 1)))
    assert err.max() <= truncation_bound(s, deg) * (1 + 1e-9)
    assert err[-1] == pytest.approx(truncation_bound(s, deg), rel=1e-9)  # equality at t = 1


def test_legendre_table_matches_scipy():
    theta = np.linspace(0.01, np.pi - 0.01, 9)
    deg = 20
    p = harmonics._legendre(np.cos(theta), np.sin(theta), deg)
    for ell in range(deg + 1):
        for m in range(ell + 1):
            # scipy's carries the Condon-Shortley phase (-1)^m; the products Y(q) Y(y) do not see it.
            ref = sph_legendre_p(ell, m, theta)[0]
            np.testing.assert_allclose(np.abs(p[ell, m]), np.abs(ref), atol=1e-13)


def test_harmonic_cost():
    n, m = 150_000, 100_000
    costs = [harmonic_cost(s, n, m) for s in (1.0, 10.0, 100.0)]
    assert costs == sorted(costs)
    assert costs[1] < 0.1 * n * m  # harmonics pay at moderate s ...
    assert harmonic_cost(100.0, 15_000, 10_000) > 15_000 * 10_000  # ... not for few points at large s
    assert harmonic_cost(1e7, n, m) == np.inf


def test_bad_inputs(rng):
    points, queries, w = _sphere(rng, 20), _sphere(rng, 10), np.ones(20)
    B = 2.0 * np.eye(3)
    with pytest.raises(ValueError, match="orthogonal"):
        harmonic_sums(rng.normal(size=(3, 3)), queries, points, w)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        harmonic_sums(np.eye(2), queries, points, w)
    with pytest.raises(ValueError, match="points must lie on the unit sphere"):
        harmonic_sums(B, queries, 1.01 * points, w)
    with pytest.raises(ValueError, match="queries must lie on the unit sphere"):
        harmonic_sums(B, queries * (1 + 1e-9), points, w)
    with pytest.raises(ValueError, match="queries must have shape"):
        harmonic_sums(B, queries[:, :2], points, w)
    with pytest.raises(ValueError, match="points must have shape"):
        harmonic_sums(B, queries, points.ravel(), w)
    with pytest.raises(ValueError, match="weights must have shape"):
        harmonic_sums(B, queries, points, w[:5])
    with pytest.raises(ValueError, match="non-negative"):
        harmonic_sums(B, queries, points, -w)
    with pytest.raises(ValueError, match="zero total"):
        harmonic_sums(B, queries, points, 0 * w)
    with pytest.raises(ValueError, match="values must have shape"):
        harmonic_sums(B, queries, points, w, points[:5])
    with pytest.raises(ValueError, match="non-finite"):
        harmonic_sums(B, np.full((2, 3), np.nan), points, w)
