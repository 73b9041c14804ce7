"""Zonal kernels phi(<x, y>) and their sums (kernels/zonal.py, zonal_function.py, zonal_sums.py):
expansions against closed forms and the kernels themselves, spectral sums against dense ones within
the contract tol sup|phi| T_c, the choice of method, bad input, serial equals MPI."""

import json
import sys

import numpy as np
import pytest
from helpers import launch
from scipy.special import iv

from vlasov_tf.geometry.measures import uniform_sphere, von_mises_fisher_mixture
from vlasov_tf.kernels import (
    MAX_ZONAL_DEGREE,
    Constant,
    ExpDifference,
    Exponential,
    FunctionKernel,
    Polynomial,
    choose_zonal_method,
    kernel_from_spec,
    zonal_kernel_sums,
    zonal_method_costs,
)
from vlasov_tf.kernels.zonal_sums import zonal_dense_sums, zonal_spectral_approximation

TOL = 1e-10
#: Points of [-1, 1] on which expansions are checked: Chebyshev points (dense near +-1), equally
#: spaced ones, and the ends.
GRID = np.r_[np.cos(np.pi * (np.arange(3001) + 0.5) / 3001), np.linspace(-1, 1, 2001)]
POLY5 = Polynomial((0.3, -1.0, 0.5, 2.0, -0.7, 1.1))


def cauchy(t):
    return 1.0 / (1.5 - t)


NAMED = {
    "constant": Constant(1.7),
    "exp": Exponential(4.0),
    "exp_negative": Exponential(-2.5),
    "exp_narrow": Exponential(80.0),
    "polynomial5": POLY5,
    # Sign-changing: phi(1) = 0.2 > 0 > phi(-1), attraction near, repulsion far.
    "exp_difference": ExpDifference(1.0, 20.0, 0.8, 5.0),
    # Sign-changing the other way: phi(1) = -0.5, positive further out.
    "exp_difference_repulsive": ExpDifference(1.0, 2.0, 1.5, 0.5),
}
KERNELS = {**NAMED, "function_cauchy": FunctionKernel(cauchy, "cauchy")}


# -- expansions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", list(KERNELS))
def test_expansion_reproduces_the_kernel_within_its_tail(name, d):
    """max |series - phi| <= tail <= tol sup|phi| on a fine grid of [-1, 1] (the tail proven for named
    kernels, measured for callables), plus the series' own round-off."""
    kernel = KERNELS[name]
    exp = kernel.coefficients(d, TOL)
    assert exp.within_cap and exp.proven == (name in NAMED)
    assert exp.tail <= TOL * exp.sup
    sampled = np.abs(kernel(GRID)).max()  # sup |phi| exact or sampled on a finer grid
    assert sampled * (1 - 1e-12) <= exp.sup <= sampled * (1 + 1e-6)
    error = np.abs(exp(GRID) - kernel(GRID)).max()
    assert error <= exp.tail + 1e-15 * exp.abs_sum()
    # The least degree: one fewer would not do (when the tail is not zero).
    if exp.degree > 0 and exp.tail > 0:
        fewer = kernel.coefficients(d, 2 * exp.tail / exp.sup)
        assert fewer.degree <= exp.degree


@pytest.mark.parametrize("d", [2, 3])
def test_sign_changing_expansion_has_coefficients_of_both_signs(d):
    exp = NAMED["exp_difference"].coefficients(d, TOL)
    assert (exp.factors > 0).any() and (exp.factors < 0).any()
    assert NAMED["exp_difference"].minimum() < 0 < NAMED["exp_difference"].maximum()


@pytest.mark.parametrize("beta", [0.5, 4.0, 80.0, -2.5])
def test_exponential_coefficients_are_bessel_functions(beta):
    """exp(beta cos s) = sum_k I_k(beta) e^{iks}; exp(beta t) = sum_l (2l + 1) sqrt(pi / 2 beta)
    I_{l + 1/2}(beta) P_l(t) (Funk-Hecke), I of a negative argument by I_nu(-x) = (-1)^nu I_nu(x)."""
    r, sign = abs(beta), np.sign(beta)
    circle = Exponential(beta).coefficients(2, TOL).factors
    k = np.arange(len(circle))
    np.testing.assert_allclose(circle, sign**k * iv(k, r), rtol=1e-13, atol=1e-15 * np.exp(r))
    sphere = Exponential(beta).coefficients(3, TOL).factors
    ell = np.arange(len(sphere))
    exact = sign**ell * (2 * ell + 1) * np.sqrt(np.pi / (2 * r)) * iv(ell + 0.5, r)
    np.testing.assert_allclose(sphere, exact, rtol=1e-13, atol=1e-15 * np.exp(r))


@pytest.mark.parametrize("d", [2, 3])
def test_polynomial_expansion_is_exact(d):
    exp = POLY5.coefficients(d, TOL)
    assert exp.degree == 5 and exp.tail == 0.0 and exp.proven
    assert np.abs(exp(GRID) - POLY5(GRID)).max() <= 1e-14
    # t^2 = P_0 / 3 + 2 P_2 / 3; cos^2 s = 1/2 + (e^{2is} + e^{-2is}) / 4.
    square = Polynomial((0.0, 0.0, 1.0)).coefficients(d, TOL).factors
    np.testing.assert_allclose(square, [1 / 3, 0, 2 / 3] if d == 3 else [0.5, 0, 0.25], atol=1e-16)


def test_function_kernel_of_a_named_kernel_has_its_coefficients():
    named = NAMED["exp_difference"]
    same = FunctionKernel(lambda t: np.exp(20.0 * (t - 1)) - 0.8 * np.exp(5.0 * (t - 1)), "same")
    for d in (2, 3):
        a, b = named.coefficients(d, TOL), same.coefficients(d, TOL)
        top = min(a.degree, b.degree)
        assert abs(a.degree - b.degree) <= 2
        assert np.abs(a.factors[: top + 1] - b.factors[: top + 1]).max() <= 1e-14 * a.sup


@pytest.mark.parametrize("d", [2, 3])
def test_kinked_function_needs_more_than_the_cap(d):
    """|t| has Legendre / Chebyshev coefficients decaying like a power: no degree up to the cap
    reaches the tolerance, and the expansion says so."""
    exp = FunctionKernel(np.abs, "abs").coefficients(d, TOL)
    assert not exp.within_cap and exp.degree == MAX_ZONAL_DEGREE and exp.tail > TOL


@pytest.mark.parametrize("name", list(KERNELS))
def test_antiderivative_extremes_width(name):
    """W(1) = 0 and W' = phi (central differences); minimum / maximum bound phi on a fine grid and
    are attained up to its spacing; width = min(pi, sqrt(sup |phi| / sup |phi'|))."""
    kernel = KERNELS[name]
    t = np.linspace(-0.999, 0.999, 3001)
    h = 1e-5
    derivative = (kernel.antiderivative(t + h) - kernel.antiderivative(t - h)) / (2 * h)
    scale = kernel.sup()
    assert np.abs(derivative - kernel(t)).max() <= 1e-6 * scale
    assert abs(float(kernel.antiderivative(np.array([1.0]))[0])) <= 1e-12 * scale
    values = kernel(GRID)
    lo, hi = values.min(), values.max()
    assert kernel.minimum() <= lo + 1e-12 * scale and kernel.maximum() >= hi - 1e-12 * scale
    assert kernel.minimum() >= lo - 1e-5 * scale and kernel.maximum() <= hi + 1e-5 * scale
    fine = np.linspace(-1, 1, 200001)
    slope = np.abs(np.diff(kernel(fine)) / np.diff(fine)).max()
    expected = np.pi if slope == 0 else min(np.pi, np.sqrt(scale / slope))
    assert kernel.width == pytest.approx(expected, rel=1e-2)


def test_exp_scale_and_width_of_the_exponential():
    assert Exponential(9.0).exp_scale == 9.0 and Exponential(9.0).width == pytest.approx(1 / 3)
    assert Constant(1.0).exp_scale is None and NAMED["exp_difference"].exp_scale is None
    assert Constant(2.0).width == pytest.approx(np.pi)


# -- sums --------------------------------------------------------------------------------------------


def measure(rng, kind: str, m: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys, weights and signed values: uniform, a mixture of three vMF clusters (kappa 50), a point
    mass, or two antipodal point masses."""
    if kind == "uniform":
        y = uniform_sphere(m, d, rng)
    elif kind == "clusters":
        means = uniform_sphere(3, d, rng)
        y = von_mises_fisher_mixture(m, means, np.full(3, 50.0), np.array([0.5, 0.3, 0.2]), rng)
    elif kind == "point":
        y = np.repeat(uniform_sphere(1, d, rng), m, axis=0)
    else:
        c = uniform_sphere(1, d, rng)[0]
        y = np.where(rng.random((m, 1)) < 0.5, c, -c)
    return y, rng.random(m) ** 3, rng.standard_normal((m, 2))


def totals(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``T_c = sum_j w_j |[v_j, 1]_c|``."""
    return np.abs(w[:, None] * np.c_[v, np.ones(len(w))]).sum(axis=0)


SUM_KERNELS = ["exp", "exp_difference", "exp_difference_repulsive", "polynomial5", "function_cauchy"]


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("kind", ["uniform", "clusters", "point", "antipodal"])
@pytest.mark.parametrize("name", SUM_KERNELS)
def test_spectral_sums_within_the_contract(rng, name, kind, d):
    """Every entry within tol sup|phi| T_c of the dense sum, and within the method's own bound."""
    kernel = KERNELS[name]
    y, w, v = measure(rng, kind, 2000, d)
    x = np.r_[uniform_sphere(600, d, rng), y[:200]]  # spread queries and queries at the keys
    dense = zonal_kernel_sums(kernel, x, y, w, v, method="dense")
    spectral = zonal_kernel_sums(kernel, x, y, w, v, method="spectral")
    assert (np.abs(spectral - dense) <= TOL * kernel.sup() * totals(w, v)).all()
    raw, bound = zonal_spectral_approximation(kernel, x, y, w, v, tol=TOL)
    np.testing.assert_array_equal(raw, spectral)
    assert (np.abs(raw - dense) <= bound).all()
    assert (bound <= TOL * kernel.sup() * totals(w, v)).all()


@pytest.mark.parametrize("d", [2, 3])
def test_error_bound_is_not_vacuous(rng, d):
    """At a point mass, queried at the mass, a positive series' truncation error is its tail: the
    measured error is close to the bound."""
    kernel = Exponential(5.0)
    y, w, v = measure(rng, "point", 500, d)
    x = np.r_[y[:1], uniform_sphere(100, d, rng)]
    raw, bound = zonal_spectral_approximation(kernel, x, y, w, v, tol=TOL)
    error = np.abs(raw - zonal_dense_sums(kernel, x, y, w, v))
    ratio = (error / bound).max()
    assert 0.1 <= ratio <= 1.0


@pytest.mark.parametrize("d", [2, 3, 4])
def test_constant_kernel_gives_c_times_the_mass(rng, d):
    """phi = c: S_i = c sum_j w_j [v_j, 1] for every query, by every method (spectral in any d, for
    any kernel that is constant: a polynomial of degree 0 too)."""
    y, w, v = uniform_sphere(700, d, rng), rng.random(700), rng.standard_normal((700, 3))
    w[::7] = 0.0
    x = uniform_sphere(400, d, rng)
    exact = -2.5 * (w[:, None] * np.c_[v, np.ones(700)]).sum(axis=0)
    for kernel in (Constant(-2.5), Polynomial((-2.5,))):
        for method in ("auto", "dense", "spectral"):
            got = zonal_kernel_sums(kernel, x, y, w, v, method=method)
            want = np.broadcast_to(exact, got.shape)
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * 2.5 * w.sum())


def test_function_kernel_gives_the_named_kernels_sums(rng):
    """The same function as a callable: the same dense sums (to round-off), and spectral sums within
    the two contracts; a polynomial callable has the polynomial's degree, hence the same spectral
    sums to round-off."""
    y, w, v = measure(rng, "clusters", 1500, 3)
    x = uniform_sphere(700, 3, rng)
    named = NAMED["exp_difference"]
    same = FunctionKernel(lambda t: np.exp(20.0 * (t - 1)) - 0.8 * np.exp(5.0 * (t - 1)), "same")
    scale = named.sup() * totals(w, v)
    a, b = (zonal_kernel_sums(k, x, y, w, v, method="dense") for k in (named, same))
    assert (np.abs(a - b) <= 1e-12 * scale).all()
    a, b = (zonal_kernel_sums(k, x, y, w, v, method="spectral") for k in (named, same))
    assert (np.abs(a - b) <= 2 * TOL * scale).all()
    poly = FunctionKernel(POLY5, "poly5")
    assert poly.coefficients(3, TOL / 2).degree == 5
    a, b = (zonal_kernel_sums(k, x, y, w, v, method="spectral") for k in (POLY5, poly))
    assert (np.abs(a - b) <= 1e-12 * POLY5.sup() * totals(w, v)).all()


def test_dense_sums_do_not_depend_on_threads(rng):
    y, w, v = measure(rng, "uniform", 900, 3)
    x = uniform_sphere(700, 3, rng)
    w[::5] = 0.0
    for kernel in (NAMED["exp_difference"], POLY5, KERNELS["function_cauchy"]):
        one = zonal_dense_sums(kernel, x, y, w, v, threads=1)
        np.testing.assert_array_equal(zonal_dense_sums(kernel, x, y, w, v, threads=2), one)
        np.testing.assert_array_equal(zonal_dense_sums(kernel, x, y, w, v, threads=3), one)


def test_auto_choice(rng):
    """Spectral for many points on S^1 and S^2, dense for few, dense for a kink at any size."""
    kink = FunctionKernel(np.abs, "abs")
    for d in (2, 3):
        big = uniform_sphere(20000, d, rng)
        w = np.ones(20000)
        for kernel in (Exponential(5.0), NAMED["exp_difference"], POLY5):
            assert choose_zonal_method(kernel, big, big, w, 3) == "spectral"
            small = big[:300]
            assert choose_zonal_method(kernel, small, small, w[:300], 3) == "dense"
            assert choose_zonal_method(kernel, small[:100], small[:100], w[:100], 3) == "dense"
        assert zonal_method_costs(kink, big, big, w, 3)["spectral"] == np.inf
        assert choose_zonal_method(kink, big, big, w, 3) == "dense"
    # d = 4: only the constant kernel has spectral sums there.
    x4 = uniform_sphere(3000, 4, rng)
    assert choose_zonal_method(POLY5, x4, x4, np.ones(3000), 2) == "dense"
    assert choose_zonal_method(Constant(1.0), x4, x4, np.ones(3000), 2) == "spectral"


def test_kinked_kernel_auto_sums_densely(rng):
    y, w, v = measure(rng, "uniform", 800, 2)
    x = uniform_sphere(500, 2, rng)
    kink = FunctionKernel(np.abs, "abs")
    np.testing.assert_array_equal(
        zonal_kernel_sums(kink, x, y, w, v), zonal_kernel_sums(kink, x, y, w, v, method="dense")
    )
    with pytest.raises(ValueError, match="needs a degree above 2000"):
        zonal_kernel_sums(kink, x, y, w, v, method="spectral")


def test_points_off_the_sphere_are_summed_densely(rng):
    y, w, v = measure(rng, "uniform", 900, 3)
    x = 1.001 * uniform_sphere(300, 3, rng)
    assert choose_zonal_method(POLY5, x, y, w, 2) == "dense"
    with pytest.raises(ValueError, match="must lie on the unit sphere"):
        zonal_kernel_sums(POLY5, x, y, w, v, method="spectral")


def test_empty_queries_and_zero_weights(rng):
    y, w, v = measure(rng, "uniform", 300, 3)
    for method in ("auto", "dense", "spectral"):
        assert zonal_kernel_sums(POLY5, y[:0], y, w, v, method=method).shape == (0, 3)
        got = zonal_kernel_sums(POLY5, y[:5], y, np.zeros(300), v, method=method)
        np.testing.assert_array_equal(got, np.zeros((5, 3)))


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("gauss", {"beta": 1.0}, "unknown zonal kernel 'gauss'"),
        ("exp", {}, "exp kernel: missing parameter 'beta'"),
        ("exp", {"beta": 1.0, "gamma": 2.0}, "exp kernel: unknown parameter 'gamma'"),
        ("exp", {"beta": "large"}, "exp kernel: beta must be a finite number"),
        ("exp", {"beta": float("nan")}, "exp kernel: beta must be a finite number"),
        ("constant", {"c": True}, "constant kernel: c must be a finite number"),
        ("polynomial", {"a": []}, "polynomial kernel: a must be a non-empty list"),
        ("polynomial", {"a": [1.0, float("inf")]}, r"polynomial kernel: a\[1\] must be a finite number"),
        ("exp_difference", {"a": 1, "alpha": 2, "r": 1, "rho": 2}, "exp_difference kernel: .* give phi = 0"),
        ("exp_difference", {"a": 1, "alpha": 2, "r": 1}, "exp_difference kernel: missing parameter 'rho'"),
    ],
)
def test_bad_kernel_specs_raise_one_line(name, params, message):
    with pytest.raises(ValueError, match=message) as info:
        kernel_from_spec(name, params)
    assert "\n" not in str(info.value)


def test_kernel_from_spec_builds_the_named_kernels():
    assert kernel_from_spec("exp", {"beta": 2}) == Exponential(2.0)
    assert kernel_from_spec("polynomial", {"a": [1, 0, 2]}) == Polynomial((1.0, 0.0, 2.0))
    assert kernel_from_spec("exp_difference", {"a": 1, "alpha": 9, "r": 0.5, "rho": 2}) == ExpDifference(
        1.0, 9.0, 0.5, 2.0
    )
    assert hash(kernel_from_spec("constant", {"c": 3})) == hash(Constant(3.0))


def test_bad_sums_raise_one_line(rng):
    y, w, v = measure(rng, "uniform", 300, 3)
    cases = [
        (POLY5, y, "unknown zonal method 'fast'", {"method": "fast"}),
        (Exponential(1000.0), y, r"exceeds 1e\+300", {}),
        (POLY5, np.c_[y, y[:, :1]] / np.sqrt(2), r"for S\^1 and S\^2", {"method": "spectral"}),
    ]
    for kernel, keys, message, kwargs in cases:
        with pytest.raises(ValueError, match=message) as info:
            zonal_kernel_sums(kernel, keys[:40], keys, w, v, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        POLY5.coefficients(3, 0.0)
    with pytest.raises(ValueError, match=r"S\^1 and S\^2"):
        POLY5.coefficients(4)
    with pytest.raises(ValueError, match=r"f\(.*\) is not finite"):
        FunctionKernel(lambda t: 1.0 / t, "pole").coefficients(3)


# -- MPI ---------------------------------------------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_split_sums_equal_serial(ranks):
    """Spectral (coefficients all-reduced), dense (keys all-gathered) and auto sums of a measure split
    across ranks, each rank with its own queries, equal the serial sums to 1e-12 of sup|phi| T_c."""
    proc = launch(ranks, sys.executable, "tests/mpi_zonal.py", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = {key: value for key, value in result.items() if not key.endswith("picks")}
    assert len(errors) == 16  # (2 kernels x 3 methods + a kink x 2 methods) x (S^1, S^2)
    assert max(errors.values()) <= 1e-12, errors
    assert result["abs d=3 auto picks"] == "dense" and result["polynomial d=3 auto picks"] == "spectral"
