"""The dense kernel sums: both engines (fused numba, numpy tiles) against log-space references."""

import numpy as np
import pytest

from vlasov_tf import kernels
from vlasov_tf.kernels import dense
from vlasov_tf.measures import uniform_sphere

numba = pytest.importorskip("numba")


def reference(z, y, w, v):
    """``S_i`` scaled by the exact row maximum, straight from the definition (small sizes)."""
    t = z @ y.T + np.log(w)
    top = t.max(axis=1)
    e = np.exp(t - top[:, None])
    return top, np.c_[e @ v, e.sum(axis=1)]


def rel_err(shift, sums, ref_shift, ref_sums):
    """Per-row error relative to the row's normaliser, at the reference's shift."""
    scaled = sums * np.exp(shift - ref_shift)[:, None]
    return np.max(np.abs(scaled - ref_sums) / ref_sums[:, -1:])


def test_fused_exp_is_within_two_ulp_and_underflows_to_zero():
    fexp = dense.numba_exp()

    @numba.njit(fastmath=set(dense.FAST_MATH) | {"reassoc"})  # as inlined into the fused rows
    def apply(x, out):
        for j in range(x.shape[0]):
            out[j] = fexp(x[j])

    x = np.linspace(-720.0, 700.0, 300_001)
    out = np.empty_like(x)
    apply(x, out)
    ok = x >= dense.EXP_MIN
    assert np.max(np.abs(out[ok] / np.exp(x[ok]) - 1)) <= 2 * np.finfo(float).eps
    assert np.all(out[~ok] == 0.0)


@pytest.mark.parametrize("engine", ["fused", "numpy"])
@pytest.mark.parametrize(("d", "k"), [(3, 3), (2, 2), (3, 0), (5, 1)])
def test_engines_match_the_definition(rng, monkeypatch, engine, d, k):
    n, m = 300, 5000
    # Small numpy tiles: the key-block accumulation loop runs ~20 times, not once.
    monkeypatch.setattr(dense, "_TILE", 4096)
    z = 2.0 * rng.standard_normal((n, d))
    y = rng.standard_normal((m, d))
    w = rng.random(m)
    w[::7] = 0.0  # zero weights are dropped
    v = rng.standard_normal((m, k))
    shift, sums = kernels.exp_kernel_sums(z, y, w, v if k else None, engine=engine, threads=2)
    keep = w > 0
    assert rel_err(shift, sums, *reference(z, y[keep], w[keep], v[keep])) < 1e-13


@pytest.mark.parametrize("beta", [1000.0, 1e5])
@pytest.mark.parametrize("engine", ["fused", "numpy"])
def test_sharp_kernels_stay_finite_and_exact(rng, beta, engine):
    """beta = 1e3, 1e5 on the sphere: terms down to exp(-2 beta) next to exp(0), no overflow."""
    y = uniform_sphere(2000, 3, rng)
    x = uniform_sphere(200, 3, rng)
    w = rng.random(2000)
    shift, sums = kernels.exp_kernel_sums(beta * x, y, w, y, engine=engine)
    assert np.isfinite(shift).all() and np.isfinite(sums).all()
    # exp(t) has condition number |t| ~ beta: scores rounded to eps * beta bound the agreement.
    assert rel_err(shift, sums, *reference(beta * x, y, w, y)) < max(1e-12, 50 * beta * np.finfo(float).eps)


@pytest.mark.parametrize("engine", ["fused", "numpy"])
def test_measure_concentrated_at_a_point(rng, engine):
    """All keys within 1e-3 of one point; queries everywhere, including opposite (e^-2000)."""
    centre = np.array([0.0, 0.0, 1.0])
    y = centre + 1e-3 * rng.uniform(-1, 1, (3000, 3)) / np.sqrt(3)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = uniform_sphere(300, 3, rng)
    w = rng.random(3000)
    z = 1000.0 * x
    shift, sums = kernels.exp_kernel_sums(z, y, w, y, engine=engine)
    assert np.isfinite(sums).all() and (sums[:, -1] > 0).all()
    assert rel_err(shift, sums, *reference(z, y, w, y)) < 1e-12


def test_fused_result_does_not_depend_on_threads_or_chunks(rng, monkeypatch):
    z = rng.standard_normal((1000, 3))
    y = uniform_sphere(5000, 3, rng)
    w = rng.random(5000)
    one = kernels.exp_kernel_sums(z, y, w, y, engine="fused", threads=1)
    two = kernels.exp_kernel_sums(z, y, w, y, engine="fused", threads=2)
    np.testing.assert_array_equal(one[1], two[1])
    monkeypatch.setattr(dense, "_KEY_CHUNK", 512)  # key chunks add: only round-off changes
    chunked = kernels.exp_kernel_sums(z, y, w, y, engine="fused")
    assert rel_err(*chunked, *one) < 1e-14


def test_fused_refuses_wide_inputs(rng):
    with pytest.raises(ValueError, match="fused engine"):
        kernels.exp_kernel_sums(rng.random((4, 9)), rng.random((4, 9)), np.ones(4), engine="fused")
