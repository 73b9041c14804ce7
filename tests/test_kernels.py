"""The dense kernel sums: both engines (fused numba, numpy tiles) against log-space references."""

import numpy as np
import pytest
from helpers import max_row_error

from vlasov_tf import kernels
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.kernels import dense

numba = pytest.importorskip("numba")


def reference(z, y, w, v):
    """``S_i`` scaled by the exact row maximum, straight from the definition (small sizes)."""
    t = z @ y.T + np.log(w)
    top = t.max(axis=1)
    e = np.exp(t - top[:, None])
    return top, np.c_[e @ v, e.sum(axis=1)]


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
    assert max_row_error(shift, sums, *reference(z, y[keep], w[keep], v[keep])) < 1e-13


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
    bound = max(1e-12, 50 * beta * np.finfo(float).eps)
    assert max_row_error(shift, sums, *reference(beta * x, y, w, y)) < bound


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
    assert max_row_error(shift, sums, *reference(z, y, w, y)) < 1e-12


def test_fused_result_does_not_depend_on_threads_or_chunks(rng, monkeypatch):
    z = rng.standard_normal((1000, 3))
    y = uniform_sphere(5000, 3, rng)
    w = rng.random(5000)
    one = kernels.exp_kernel_sums(z, y, w, y, engine="fused", threads=1)
    two = kernels.exp_kernel_sums(z, y, w, y, engine="fused", threads=2)
    np.testing.assert_array_equal(one[1], two[1])
    monkeypatch.setattr(dense, "_KEY_CHUNK", 512)  # key chunks add: only round-off changes
    chunked = kernels.exp_kernel_sums(z, y, w, y, engine="fused")
    assert max_row_error(*chunked, *one) < 1e-14


def test_fused_refuses_wide_inputs(rng):
    with pytest.raises(ValueError, match="fused engine"):
        kernels.exp_kernel_sums(rng.random((4, 9)), rng.random((4, 9)), np.ones(4), engine="fused")


def small_problems(rng):
    """Few points, around the rule of "auto" (kernels.few_pairs): (z, y, w, v) on S^2, S^1, in R^4.

    Spread and clustered keys, sharp and flat kernels, zero weights, a uniform circle grid
    (where the FFT applies) and keys near the sphere (where the spectral sums apply).
    """
    out = []
    for n, m in [(1, 1), (5, 64), (64, 64), (128, 128), (129, 128), (200, 300), (256, 256)]:
        y = uniform_sphere(m, 3, rng)
        w = rng.random(m)
        w[1::5] = 0.0
        out.append((0.5 * uniform_sphere(n, 3, rng), y, w, y))  # flat: Taylor is cheap
        out.append((30.0 * uniform_sphere(n, 3, rng), y, np.ones(m), y))  # sharp
        grid = np.c_[np.cos(2 * np.pi * np.arange(m) / m), np.sin(2 * np.pi * np.arange(m) / m)]
        out.append((4.0 * grid[: min(n, m)], grid, np.ones(m), grid))  # uniform circle grid: FFT
        y4 = rng.standard_normal((m, 4))
        out.append((rng.standard_normal((n, 4)), y4, rng.random(m), y4[:, :1]))
    return out


def test_auto_sums_few_pairs_densely_and_the_rest_by_cost(rng):
    """Up to SMALL_PAIRS pairs "auto" is the dense sums (the same bits) whatever the points; above,
    the cheapest estimate, as method_costs says; choose_method and kernel_sums agree."""
    # The rule never compiles the fused kernel (~0.8 s): those sizes take the numpy path.
    assert kernels.SMALL_PAIRS < dense._FUSED_MIN_PAIRS
    assert dense.one_tile(128, 128, 3, 3)
    picks = set()
    for z, y, w, v in small_problems(rng):
        k = v.shape[1]
        chosen = kernels.choose_method(z, y, w, k)
        if kernels.few_pairs(len(z), len(y)):
            assert len(z) * len(y) <= kernels.SMALL_PAIRS
            assert chosen == "dense"
            auto = kernels.kernel_sums(z, y, w, v)
            forced = kernels.kernel_sums(z, y, w, v, method="dense")
            np.testing.assert_array_equal(auto[0], forced[0])
            np.testing.assert_array_equal(auto[1], forced[1])
        else:
            costs = kernels.method_costs(z, y, w, k)
            assert chosen == min(costs, key=costs.__getitem__)
            picks.add(chosen)
    assert {"dense", "fft"} <= picks  # the estimates still decide above the rule


def test_one_tile_sums_match_the_definition(rng):
    """A few tokens: the exact row maximum as the shift, the same sums as the bounded tiles."""
    for n, m, beta in [(64, 64, 1.0), (5, 37, 1000.0), (200, 300, 30.0), (0, 10, 1.0)]:
        assert dense.one_tile(n, m, 3, 3)
        y = uniform_sphere(m, 3, rng)
        z = beta * uniform_sphere(n, 3, rng)
        for w in (rng.random(m), np.full(m, 1.0 / m), np.where(np.arange(m) % 3, rng.random(m), 0.0)):
            for v in (y, None):
                shift, sums = kernels.exp_kernel_sums(z, y, w, v)
                keep = w > 0
                ref_shift, ref_sums = reference(z, y[keep], w[keep], y[keep])
                ref_sums = ref_sums if v is not None else ref_sums[:, -1:]
                np.testing.assert_allclose(shift, ref_shift, rtol=1e-15, atol=1e-15 * beta)
                assert sums.shape == (n, 1 if v is None else 4)
                assert (sums[:, -1] >= 1.0).all()  # the largest term is e^0
                if n:
                    assert max_row_error(shift, sums, ref_shift, ref_sums) < 1e-14 * max(beta, 1.0)


def test_one_tile_and_bounded_tiles_agree_to_round_off(rng, monkeypatch):
    """The two shifts (exact row max in one tile, Cauchy-Schwarz bound over tiles) differ by
    round-off only; so do equal weights left out of the tile and put into every log-weight."""
    y = uniform_sphere(64, 3, rng)
    z = 2.0 * uniform_sphere(64, 3, rng)
    w = np.full(64, 1.0 / 64)
    one = kernels.exp_kernel_sums(z, y, w, y)
    lw = np.log(w)
    assert isinstance(dense.log_weights(w), float)
    assert isinstance(dense.log_weights(rng.random(64)), np.ndarray)
    unequal = dense.tile_sums(z, y, lw, y)  # the same log-weights as an array: added in the tile
    assert max_row_error(*unequal, *one) < 1e-15
    monkeypatch.setattr(dense, "_TILE", 512)  # 64 x 64 is now 8 tiles: the bounded path
    assert not dense.one_tile(64, 64, 3, 3)
    tiled = kernels.exp_kernel_sums(z, y, w, y)
    assert not np.array_equal(tiled[0], one[0])  # really the other shift
    assert max_row_error(*tiled, *one) < 1e-15


def test_blas_pin_is_reentrant():
    """Nested pins keep BLAS on one thread until the outermost exits, which restores the limit."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl controls")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outer = blas_threads()
        with kernels.blas_single_thread():
            assert set(blas_threads()) == {1}
            with kernels.blas_single_thread():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}  # the inner exit leaves the outer pin in place
        assert blas_threads() == outer
