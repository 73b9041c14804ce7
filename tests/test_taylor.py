"""The truncated Taylor expansion of the kernel sums against the dense sums, and its error bound."""

import math

import numpy as np
import pytest

from vlasov_tf import kernels
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.kernels.taylor import radii, taylor_bound, taylor_cost, taylor_degree, taylor_sums


def general_head(rng, beta, d=3):
    """Tokens on the sphere, ``z = B x`` with ``B = beta K^T Q`` for random Q, K (entries N(0, 1/d))."""
    Q, K = rng.standard_normal((2, d, d)) / np.sqrt(d)
    return beta * K.T @ Q


def errors(shift, sums, ref_shift, ref_sums, values):
    """Per-row errors at the reference's shift: normaliser relative, value columns relative to
    ``normaliser * max |v_c|`` (the scale of the bound in the module docstring)."""
    scaled = sums * np.exp(shift - ref_shift)[:, None]
    norm = ref_sums[:, -1]
    err_norm = np.max(np.abs(scaled[:, -1] - norm) / norm)
    vmax = np.abs(values).max(axis=0)
    err_vals = np.max(np.abs(scaled[:, :-1] - ref_sums[:, :-1]) / (norm[:, None] * vmax))
    return err_norm, err_vals


@pytest.mark.parametrize(("beta", "tol"), [(0.1, 1e-10), (1.0, 1e-10), (5.0, 1e-8)])
def test_taylor_matches_dense_within_tol(rng, beta, tol):
    x = uniform_sphere(3000, 3, rng)
    w = rng.random(3000)
    w[::5] = 0.0
    z = uniform_sphere(2000, 3, rng) @ general_head(rng, beta).T
    shift, sums = taylor_sums(z, x, w, x, tol=tol)
    ref = kernels.exp_kernel_sums(z, x, w, x)
    err_norm, err_vals = errors(shift, sums, *ref, x[w > 0])
    assert err_norm <= tol and err_vals <= tol


def test_taylor_without_values_and_off_the_sphere(rng):
    """Keys in R^4 away from the origin (the centring carries the offset), k = 0."""
    y = 3.0 + 0.3 * rng.standard_normal((4000, 4))
    z = 0.2 * rng.standard_normal((500, 4))
    w = rng.random(4000)
    shift, sums = taylor_sums(z, y, w, tol=1e-10)
    ref_shift, ref_sums = kernels.exp_kernel_sums(z, y, w)
    assert sums.shape == (500, 1)
    assert np.max(np.abs(sums[:, 0] * np.exp(shift - ref_shift) / ref_sums[:, 0] - 1)) <= 1e-10


@pytest.mark.parametrize("tol", [1e-3, 1e-5, 1e-7])
def test_observed_error_is_below_the_proved_bound(rng, tol):
    """Loose tolerances, where truncation (not round-off) dominates: error <= delta(rho, p)."""
    x = uniform_sphere(2000, 3, rng)
    w = rng.random(2000)
    z = x[:500] @ general_head(rng, 2.0).T
    rho = radii(z, x)
    p = taylor_degree(rho, 3, tol)
    bound = taylor_bound(rho, p)
    assert bound <= tol / 2 < taylor_bound(rho, p - 1)  # p is the least degree that meets tol / 2
    shift, sums = taylor_sums(z, x, w, x, tol=tol)
    err_norm, err_vals = errors(shift, sums, *kernels.exp_kernel_sums(z, x, w, x), x)
    assert err_norm <= bound and err_vals <= bound
    # Not vacuous either; it is worst-case (|t| = r_z r_y, t < 0 for every pair), so random data
    # sit ~1e-4 below it.
    assert err_norm > 1e-6 * bound


@pytest.mark.parametrize(("rho", "p"), [(0.5, 4), (1.5, 7), (3.0, 12)])
def test_bound_holds_for_the_scalar_series(rho, p):
    """The bound is Lagrange's remainder of exp on [-rho, rho], relative to each term e^t: check it
    against the true truncation error, which is largest (and close to it) at t = rho."""
    assert taylor_bound(0.0, 3) == 0.0
    t = np.linspace(-rho, rho, 2001)
    partial = sum(t**k / math.factorial(k) for k in range(p + 1))
    worst = np.max(np.abs(np.exp(t) - partial) / np.exp(t))
    assert worst <= taylor_bound(rho, p)
    assert worst >= 0.3 * taylor_bound(rho, p) * np.exp(-2 * rho)  # within e^(2 rho) of sharp
    assert taylor_bound(1000.0, 5) == math.inf  # no overflow at large beta


@pytest.mark.parametrize(
    ("beta", "d", "tol", "cap"),
    [(50.0, 3, 1e-10, "MAX_DEGREE"), (2.0, 10, 1e-10, "MAX_FEATURES"), (5.0, 3, 1e-10, "round-off")],
)
def test_taylor_refuses_beyond_its_caps(rng, beta, d, tol, cap):
    """Q = K = I, so rho = r_z r_y ~ beta: each case trips one cap, named in the message."""
    x = uniform_sphere(200, d, rng)
    z = beta * x
    with pytest.raises(ValueError, match=cap):
        taylor_sums(z, x, np.ones(200), x, tol=tol)
    assert taylor_cost(z, x, tol) == np.inf
    with pytest.raises(ValueError, match=cap):
        kernels.kernel_sums(z, x, np.ones(200), x, method="taylor", tol=tol)


def test_dispatcher_picks_by_cost(rng):
    """Tokens on S^3 (no spectral sums there): small beta with many tokens: taylor; large beta:
    dense (taylor infeasible); tiny N: dense."""
    x = uniform_sphere(20_000, 4, rng)
    B = general_head(rng, 1.0, d=4)
    assert kernels.choose_method(x @ B.T, x, np.ones(20_000), 4) == "taylor"
    assert kernels.choose_method(20.0 * x @ B.T, x, np.ones(20_000), 4) == "dense"
    assert kernels.choose_method(x[:50] @ B.T, x[:50], np.ones(50), 4) == "dense"
    # the estimates themselves: taylor linear in N, dense quadratic
    small, large = x[:2000] @ B.T, x @ B.T
    assert taylor_cost(large, x, 1e-10) / taylor_cost(small, x[:2000], 1e-10) == pytest.approx(10, rel=0.2)


def test_kernel_sums_auto_is_within_tol(rng):
    x = uniform_sphere(20_000, 4, rng)
    w = rng.random(20_000)
    z = x @ general_head(rng, 0.5, d=4).T
    assert kernels.choose_method(z, x, w, 4) == "taylor"
    out = kernels.kernel_sums(z, x, w, x, tol=1e-10)
    err_norm, err_vals = errors(*out, *kernels.kernel_sums(z, x, w, x, method="dense"), x)
    assert err_norm <= 1e-10 and err_vals <= 1e-10
    with pytest.raises(ValueError, match="method"):
        kernels.kernel_sums(z, x, w, x, method="fmm")


def test_taylor_result_does_not_depend_on_threads(rng):
    x = uniform_sphere(5000, 3, rng)
    z = x @ general_head(rng, 1.0).T
    w = rng.random(5000)
    one = taylor_sums(z, x, w, x, threads=1)
    two = taylor_sums(z, x, w, x, threads=2)
    np.testing.assert_array_equal(one[1], two[1])
