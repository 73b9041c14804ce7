"""Wasserstein distances on the circle against the exact linear program and closed forms."""

import numpy as np
import ot
import pytest

from vlasov_tf.analysis.wasserstein import geodesic_distance, wasserstein_circle
from vlasov_tf.geometry.measures import angles_to_circle, equally_spaced_circle, uniform_sphere


def exact_lp(ta, wa, tb, wb, p):
    """W_p by ot.emd2 on the full arc-length cost matrix."""
    gap = np.abs(ta[:, None] - tb[None, :]) % (2 * np.pi)
    cost = np.minimum(gap, 2 * np.pi - gap) ** p
    return ot.emd2(wa / wa.sum(), wb / wb.sum(), cost) ** (1 / p)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_matches_exact_linear_program(rng, p):
    for _ in range(20):
        n, m = rng.integers(1, 40, size=2)
        ta, tb = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, m)
        wa, wb = rng.random(n) + 0.01, rng.random(m) + 0.01
        got = wasserstein_circle(angles_to_circle(ta), wa, angles_to_circle(tb), wb, p=p)
        assert got == pytest.approx(exact_lp(ta, wa, tb, wb, p), rel=1e-6 if p > 1 else 1e-12, abs=1e-9)


def test_closed_forms():
    dirac = angles_to_circle
    assert wasserstein_circle(dirac([0.1]), None, dirac([0.4]), None) == pytest.approx(0.3, abs=1e-14)
    # wrap-around through angle 0 (POT 0.9.7 gives 0.20000018 here)
    assert wasserstein_circle(dirac([0.1]), None, dirac([2 * np.pi - 0.1]), None) == pytest.approx(
        0.2, abs=1e-14
    )
    # n equally spaced points against their rotation by s < pi / n: every atom moves s
    for n, s in [(5, 0.3), (64, 0.03)]:
        a, b = equally_spaced_circle(n), equally_spaced_circle(n, phase=s)
        assert wasserstein_circle(a, None, b, None) == pytest.approx(s, rel=1e-12)
        assert wasserstein_circle(a, None, b, None, p=2) == pytest.approx(s, rel=1e-6)


def test_distance_axioms(rng):
    a, b = angles_to_circle(rng.uniform(0, 7, 30)), angles_to_circle(rng.uniform(0, 7, 25))
    wa, wb = rng.random(30), rng.random(25)
    assert wasserstein_circle(a, wa, a, 3 * wa) == pytest.approx(0.0, abs=1e-14)  # scale-free
    assert wasserstein_circle(a, wa, b, wb) == pytest.approx(wasserstein_circle(b, wb, a, wa), rel=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="points_b are not on the unit sphere"):
        wasserstein_circle(angles_to_circle([0.0]), None, np.array([[2.0, 0.0]]), None)
    with pytest.raises(ValueError, match="d = 2"):
        wasserstein_circle(np.array([[0.0, 0.0, 1.0]]), None, angles_to_circle([0.0]), None)
    with pytest.raises(ValueError, match="order p"):
        wasserstein_circle(angles_to_circle([0.0]), None, angles_to_circle([1.0]), None, p=0.5)


def test_geodesic_distance_is_accurate_for_tiny_angles(rng):
    a = uniform_sphere(50, 3, rng)
    angles = 10.0 ** rng.uniform(-12, 0, 50)
    # rotate each a_i by angles_i in the plane of a_i and a unit tangent
    t = rng.standard_normal((50, 3))
    t -= np.sum(t * a, axis=1, keepdims=True) * a
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * t
    # atol: b itself carries ~1e-16 of rounding; arccos would be off by ~1e-8 here.
    np.testing.assert_allclose(geodesic_distance(a, b), angles, rtol=1e-9, atol=1e-15)


def test_sphere_exact_distance(rng):
    """Exact OT with the geodesic cost: a point moved by an angle a is at distance a (down to 1e-9);
    it equals the linear program with arccos costs; the identity coupling bounds it."""
    from vlasov_tf.analysis.wasserstein import wasserstein

    for a in (1e-9, 0.3, 3.0):
        x, y = np.array([[0.0, 0.0, 1.0]]), np.array([[np.sin(a), 0.0, np.cos(a)]])
        assert wasserstein(x, None, y, None, geometry="sphere")[0] == pytest.approx(a, rel=1e-12)
    xa, xb = uniform_sphere(40, 3, rng), uniform_sphere(30, 3, rng)
    wa, wb = rng.random(40), rng.random(30)
    cost = np.arccos(np.clip(xa @ xb.T, -1, 1))
    lp = ot.emd2(wa / wa.sum(), wb / wb.sum(), cost)
    assert wasserstein(xa, wa, xb, wb, geometry="sphere")[0] == pytest.approx(lp, rel=1e-9)
    R = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    moved = wasserstein(xa, wa, xa @ R.T, wa, geometry="sphere")[0]
    assert moved <= wa @ geodesic_distance(xa, xa @ R.T) / wa.sum() + 1e-12


def test_sliced_and_euclidean_distances(rng):
    from scipy.stats import wasserstein_distance

    from vlasov_tf.analysis.wasserstein import sliced_wasserstein_sphere, wasserstein

    xa, xb = uniform_sphere(200, 3, rng), uniform_sphere(150, 3, rng)
    assert sliced_wasserstein_sphere(xa, None, xa, None) == pytest.approx(0.0, abs=1e-14)
    ours = sliced_wasserstein_sphere(xa, None, xb, None, n_projections=50, seed=3)
    assert ours == pytest.approx(sliced_wasserstein_sphere(xb, None, xa, None, n_projections=50, seed=3))
    # POT's estimator (unit-length circles, its own projections) agrees on average
    pot = 2 * np.pi * ot.sliced_wasserstein_sphere(xa, xb, n_projections=2000, p=1, seed=0)
    assert ours == pytest.approx(pot, rel=0.15)
    assert wasserstein(xa, None, xb, None, geometry="sphere", max_pairs=10)[1] == "sliced"
    # in R^d, points on a line: the exact distance is the 1-D one
    u, v = rng.standard_normal(30), rng.standard_normal(20)
    line = np.array([0.6, 0.8])
    got, how = wasserstein(np.outer(u, line), None, np.outer(v, line), None, geometry="euclidean")
    assert how == "exact" and got == pytest.approx(wasserstein_distance(u, v), rel=1e-10)
