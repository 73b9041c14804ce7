"""The attention field X[mu](x) against its definition and its exact properties."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import softmax

import vlasov_tf.kernels as kernels
from vlasov_tf import Head, Params, Perceptron, Schedule, interaction_energy, log_potential, velocity
from vlasov_tf.geometry.measures import equally_spaced_circle, normalize, uniform_sphere
from vlasov_tf.kernels import dense


def reference_field(params: Params, y, w, x, sphere=True):
    """The formula of docs/equations.md written out head by head in log space (independent of kernels.py)."""
    out = np.zeros_like(x)
    for h in params.heads:
        logits = (x @ h.B.T) @ y.T + np.log(w)  # (M, N)
        if params.attention == "SA":
            a = softmax(logits, axis=1) @ y
        else:
            a = np.exp(logits) @ y
        out += a @ h.V.T @ (np.eye(len(h.B)) if h.W is None else h.W).T
    if params.perceptron is not None:
        p = params.perceptron
        out += np.maximum(x @ p.U.T + p.b, 0) @ p.W.T
    if sphere:
        out = out - np.sum(out * x, axis=1, keepdims=True) * x
    return out


def general_params(rng, d, heads=2, beta=1.5, attention="SA", perceptron=True):
    mats = [rng.standard_normal((heads, d, d)) / np.sqrt(d) for _ in range(4)]
    perc = None
    if perceptron:
        m = 4
        perc = Perceptron(
            W=rng.standard_normal((d, m)), U=rng.standard_normal((m, d)), b=rng.standard_normal(m)
        )
    return Params.qkv(*mats[:3], beta, W=mats[3], perceptron=perc, attention=attention)


@pytest.mark.parametrize("attention", ["SA", "USA"])
@pytest.mark.parametrize("d", [2, 3, 5])
def test_field_matches_definition(rng, d, attention):
    params = general_params(rng, d, attention=attention)
    y = uniform_sphere(40, d, rng)
    w = rng.random(40)
    x = uniform_sphere(25, d, rng)
    np.testing.assert_allclose(
        velocity(params, y, w, x), reference_field(params, y, w, x), rtol=1e-12, atol=1e-13
    )
    np.testing.assert_allclose(
        velocity(params, 3 * y, w, x, sphere=False),
        reference_field(params, 3 * y, w, x, sphere=False),
        rtol=1e-11,
        atol=1e-12,
    )


def test_field_is_tangent(rng):
    params = general_params(rng, 4)
    y = uniform_sphere(30, 4, rng)
    v = velocity(params, y)
    assert np.abs(np.sum(v * y, axis=1)).max() < 1e-14 * np.abs(v).max()


@pytest.mark.parametrize("beta", [300.0, 1000.0, 5000.0])
def test_large_beta_finite_and_correct(rng, beta):
    """exp(beta) overflows float64 beyond beta ~ 709; the log-sum-exp shift must not."""
    params = Params.identity(3, beta)
    y = uniform_sphere(200, 3, rng)
    # Queries close to tokens make softmax weights spread over a few near neighbours.
    x = normalize(y[:50] + 0.02 * rng.standard_normal((50, 3)))
    w = rng.random(200) + 1e-3
    v = velocity(params, y, w, x)
    assert np.isfinite(v).all()
    # The softmax is conditioned like beta: scores carry relative round-off beta * eps.
    rtol = max(1e-12, 50 * beta * np.finfo(float).eps)
    np.testing.assert_allclose(v, reference_field(params, y, w, x), rtol=rtol, atol=1e-12)


def test_large_beta_point_mass_limit(rng):
    """As beta -> infinity, SA attention picks the nearest token: X(x) -> P_x y_nearest."""
    y = uniform_sphere(100, 3, rng)
    x = uniform_sphere(20, 3, rng)
    nearest = y[np.argmax(x @ y.T, axis=1)]
    expected = nearest - np.sum(nearest * x, axis=1, keepdims=True) * x
    np.testing.assert_allclose(velocity(Params.identity(3, 1e5), y, None, x), expected, atol=1e-12)


def test_usa_overflow_is_a_clear_error(rng):
    y = uniform_sphere(10, 3, rng)
    with pytest.raises(OverflowError, match="USA"):
        velocity(Params.identity(3, 1000.0, attention="USA"), y)


def test_tiles_and_threads_do_not_change_the_result(rng, monkeypatch):
    """Query blocks, key blocks, the exact-max path and threads are exact rearrangements."""
    params = general_params(rng, 3, perceptron=False)
    y = uniform_sphere(3000, 3, rng)
    w = rng.random(3000)
    ref = velocity(params, y, w)
    serial = kernels.exp_kernel_sums(y @ params.heads[0].B.T, y, w, y, threads=1)
    threaded = kernels.exp_kernel_sums(y @ params.heads[0].B.T, y, w, y, threads=2)
    np.testing.assert_allclose(serial[1], threaded[1], rtol=1e-14)
    monkeypatch.setattr(dense, "_TILE", 4096)  # many key blocks per query block
    monkeypatch.setattr(dense, "_SAFE_GAP", 1.0)  # force the exact row-max path
    np.testing.assert_allclose(velocity(params, y, w), ref, rtol=1e-12, atol=1e-14)


def test_memory_is_bounded_by_tiles(rng):
    """N = M = 2e4 pairs would need 3.2 GB dense; the tiles keep the peak far below."""
    import tracemalloc

    y = uniform_sphere(20_000, 3, rng)
    tracemalloc.start()
    velocity(Params.identity(3, 2.0), y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 150e6, f"peak {peak / 1e6:.0f} MB"


def test_double_weight_equals_two_coincident_tokens(rng):
    params = general_params(rng, 3)
    y = uniform_sphere(12, 3, rng)
    w = rng.random(12)
    merged_w = w.copy()
    merged_w[0] *= 2
    split_y = np.r_[y[:1], y]
    split_w = np.r_[w[:1], w]
    x = uniform_sphere(7, 3, rng)
    np.testing.assert_allclose(
        velocity(params, y, merged_w, x), velocity(params, split_y, split_w, x), rtol=1e-13
    )


def test_permutation_invariance_of_the_measure(rng):
    params = general_params(rng, 3)
    y, w = uniform_sphere(30, 3, rng), rng.random(30)
    perm = rng.permutation(30)
    v = velocity(params, y, w)
    np.testing.assert_allclose(
        velocity(params, y[perm], w[perm])[np.argsort(perm)], v, rtol=1e-12, atol=1e-15
    )


def commuting_params(R: np.ndarray, beta: float) -> Params:
    """Two heads whose Q, K, V, W are polynomials in the rotation R, so they commute with it."""
    eye = np.eye(3)
    Q = np.stack([eye + 0.3 * R, 2 * eye - 0.5 * R.T])
    K = np.stack([2 * eye - 0.5 * R.T, R])
    V = np.stack([R @ R + 0.1 * eye, -eye])
    W = np.stack([R, eye + R])
    return Params.qkv(Q, K, V, beta, W)


def test_rotation_equivariance(rng):
    axis = normalize(rng.standard_normal(3))
    R = Rotation.from_rotvec(0.7 * axis).as_matrix()
    params = commuting_params(R, beta=2.0)
    y, w = uniform_sphere(25, 3, rng), rng.random(25)
    x = uniform_sphere(9, 3, rng)
    np.testing.assert_allclose(
        velocity(params, y @ R.T, w, x @ R.T), velocity(params, y, w, x) @ R.T, atol=1e-13
    )


@pytest.mark.parametrize("attention", ["SA", "USA"])
def test_zonal_field_is_gradient_of_potential(rng, attention):
    """Q = K = V = I: SA = (1/beta) grad_S log Phi, USA = (1/beta) grad_S Phi."""
    beta = 3.0
    y, w = uniform_sphere(40, 3, rng), rng.random(40)
    x = uniform_sphere(10, 3, rng)
    v = velocity(Params.identity(3, beta, attention), y, w, x)
    eps = 1e-5
    for xi, vi in zip(x, v, strict=True):
        basis = np.linalg.svd(np.eye(3) - np.outer(xi, xi))[0][:, :2]  # tangent plane at xi
        for e in basis.T:
            plus, minus = normalize(xi + eps * e)[None], normalize(xi - eps * e)[None]
            lp, lm = log_potential(y, w, plus, beta)[0], log_potential(y, w, minus, beta)[0]
            grad = (lp - lm) / (2 * eps) if attention == "SA" else (np.exp(lp) - np.exp(lm)) / (2 * eps)
            assert vi @ e == pytest.approx(grad / beta, rel=1e-7, abs=1e-9)


def test_equally_spaced_circle_is_stationary():
    for n in (2, 3, 7, 64):
        x = equally_spaced_circle(n, phase=0.3)
        for attention in ("SA", "USA"):
            v = velocity(Params.identity(2, 5.0, attention), x)
            assert np.abs(v).max() < 1e-13


def test_energy_of_a_point_mass_and_of_antipodes():
    """All mass at one point: E = exp(beta) / (2 beta), in log form past the float range.
    Two antipodal halves: E = (exp(beta) + exp(-beta)) / (4 beta)."""
    x = np.tile([[0.0, 0.0, 1.0]], (5, 1))
    assert interaction_energy(x, None, 3.0) == pytest.approx(np.exp(3.0) / 6.0, rel=1e-14)
    assert interaction_energy(x, None, 800.0, log=True) == pytest.approx(800.0 - np.log(1600.0), rel=1e-14)
    pm = np.array([[0.0, 1.0], [0.0, -1.0]])
    assert interaction_energy(pm, None, 2.0) == pytest.approx(np.cosh(2.0) / 4.0, rel=1e-14)


def test_schedule_selects_blocks_right_continuously():
    a, b = Params.identity(3, 1.0), Params.identity(3, 2.0)
    s = Schedule(((0.5, a), (1.5, b)))
    assert s.T == 2.0
    np.testing.assert_array_equal(s.breakpoints, [0.0, 0.5, 2.0])
    assert s.params_at(0.0) is a and s.params_at(0.4999) is a
    assert s.params_at(0.5) is b and s.params_at(2.0) is b


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("points", "weights", "match"),
    [
        (np.ones(3), None, "2-D array"),
        (np.ones((4, 1)), None, "d >= 2"),
        (np.zeros((0, 3)), None, "empty"),
        (np.array([[1.0, 0, 0], [np.nan, 0, 1]]), None, "non-finite"),
        (np.array([[1.0, 0, 0], [0, 2.0, 0]]), None, "not on the unit sphere"),
        (np.eye(3), [0.5, -0.1, 0.6], "non-negative"),
        (np.eye(3), [0.0, 0.0, 0.0], "zero total"),
        (np.eye(3), [1.0, np.inf, 0.0], "non-finite"),
        (np.eye(3), [1.0, 1.0], r"shape \(3,\)"),
        (np.eye(2), None, "d = 3"),
    ],
)
def test_bad_measures_are_named(points, weights, match):
    with pytest.raises(ValueError, match=match):
        velocity(Params.identity(3, 1.0), points, weights)


def test_bad_queries_are_named():
    with pytest.raises(ValueError, match="queries are not on the unit sphere"):
        velocity(Params.identity(3, 1.0), np.eye(3), None, np.array([[0.0, 0.0, 1.1]]))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Params.identity(3, 0.0), "beta must be finite and > 0"),
        (lambda: Params.identity(3, np.nan), "beta"),
        (lambda: Head(B=np.eye(3), V=np.eye(2)), r"V must have shape \(3, 3\)"),
        (lambda: Head(B=np.full((3, 3), np.inf), V=np.eye(3)), "non-finite"),
        (lambda: Params(), "at least one head"),
        (lambda: Params(heads=(Head(np.eye(3), np.eye(3)),), attention="soft"), "'SA'"),
        (lambda: Params(heads=(Head(np.eye(3), np.eye(3)), Head(np.eye(2), np.eye(2)))), "disagree"),
        (
            lambda: Perceptron(W=np.ones((3, 2)), U=np.ones((3, 3)), b=np.ones(2)),
            r"U must have shape \(2, 3\)",
        ),
        (lambda: Schedule(()), "at least one"),
        (lambda: Schedule(((0.0, Params.identity(3, 1.0)),)), "durations must be finite and > 0"),
        (lambda: Schedule(((-1.0, Params.identity(3, 1.0)),)), "durations"),
        (lambda: Schedule(((1.0, Params.identity(3, 1.0)), (1.0, Params.identity(2, 1.0)))), "disagree"),
        (lambda: Schedule.constant(Params.identity(3, 1.0), 1.0).params_at(1.5), "outside"),
    ],
)
def test_bad_parameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
