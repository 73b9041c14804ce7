"""Noisy models (McKean-Vlasov) against what is derived for them: the heat equation on S^1 and S^2
(modes decay as exp(-sigma lambda t)) on the grid at second order and for tokens at weak order 1,
the growth rates of the uniform state shifted by -sigma lambda, mass and positivity, the noisy
Kuramoto model's self-consistent stationary state, kicks independent of the ranks and of a
resume, and the case file's ``model.noise``."""

import numpy as np
import pytest
from scipy.special import i0e, i1e

from vlasov_tf import Params, Schedule, solve_particles
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.base import Noisy, Prescribed, as_model, laplacian_eigenvalue, with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.solvers.brownian import BLOCK, brownian_increments
from vlasov_tf.solvers.finite_volumes import solve_grid


def still(d: int) -> Prescribed:
    return Prescribed(lambda t, x: np.zeros_like(x), d)


def circle_averages(mesh, k: int, phase: float) -> np.ndarray:
    """Exact cell averages of cos(k theta + phase) on a uniform circle mesh."""
    t, h = np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0]), 2 * np.pi / mesh.n_cells
    return (np.sin(k * (t + h / 2) + phase) - np.sin(k * (t - h / 2) + phase)) / (k * h)


def sphere_averages(mesh, f) -> np.ndarray:
    pts, w = cell_quadrature(mesh)
    return (f(pts) * w).sum(axis=1) / w.sum(axis=1)


# ------------------------------------------------------- the model
def test_no_noise_is_the_model_itself():
    model = Schedule.constant(Params.identity(3, 2.0), 1.0)
    assert with_noise(model, 0.0) is model
    noisy = with_noise(model, 0.3)
    assert isinstance(noisy, Noisy) and noisy.noise == 0.3 and noisy.T == 1.0
    assert with_noise(noisy, 0.1).noise == 0.1  # replaces, does not stack
    assert with_noise(noisy, 0.0) is model

    class Lohe:  # a user's model may carry its noise; the solvers read it through as_model
        d, noise = 3, 0.2

        def velocity(self, t, points, weights, queries):
            return np.zeros_like(queries)

    assert as_model(Lohe()).noise == 0.2
    Lohe.noise = -1.0
    with pytest.raises(ValueError, match=r"Lohe.noise must be finite and >= 0"):
        solve_particles(Lohe(), uniform_sphere(5, 3, np.random.default_rng(0)), T=1.0, steps=2)
    for bad in (-0.1, np.inf, np.nan):
        with pytest.raises(ValueError, match="noise sigma must be finite and > 0"):
            with_noise(model, bad)


def test_noisy_growth_rates_lose_sigma_lambda():
    for d, lam in ((2, (1, 4, 9)), (3, (2, 6, 12))):
        base = Params.identity(d, 3.0)
        noisy = with_noise(base, 0.25)
        for mode, want in zip((1, 2, 3), lam, strict=True):
            assert laplacian_eigenvalue(d, mode) == want
            assert noisy.growth_rate(mode) == pytest.approx(base.growth_rate(mode) - 0.25 * want, abs=1e-14)


# ------------------------------------------------------- the heat equation on the grid
def test_heat_equation_on_the_circle_second_order():
    """rho = 1 + cos(2 theta + 0.3) / 2 decays as exp(-4 sigma t): both reconstructions, order 2,
    mass to round-off."""
    sigma, T = 0.1, 1.0
    for recon in ("quadratic", "linear"):
        errs = []
        for M in (32, 64, 128):
            mesh = circle_mesh(M)
            wave = circle_averages(mesh, 2, 0.3)
            sol = solve_grid(mesh, 1 + 0.5 * wave, with_noise(still(2), sigma), T, reconstruction=recon)
            exact = 1 + 0.5 * np.exp(-4 * sigma * T) * wave
            errs.append(np.abs(sol.final - exact).max())
            assert abs(sol.mass[-1] - sol.mass[0]) <= 1e-13 * sol.mass[0]
        orders = np.log2(np.array(errs[:-1]) / errs[1:])
        assert errs[-1] < 1.2e-4 and (orders > 1.9).all(), (recon, errs)


def test_heat_equation_on_the_sphere_second_order():
    """rho = 1 + P_2(z) / 2 decays as exp(-6 sigma t) on the nested meshes, at order 2."""
    sigma, T = 0.2, 0.25
    errs = []
    for level in (0, 1):
        mesh = sphere_mesh(level)
        wave = sphere_averages(mesh, lambda x: 1.5 * x[..., 2] ** 2 - 0.5)
        sol = solve_grid(mesh, 1 + 0.5 * wave, with_noise(still(3), sigma), T)
        errs.append(np.abs(sol.final - (1 + 0.5 * np.exp(-6 * sigma * T) * wave)).max())
        assert abs(sol.mass[-1] - sol.mass[0]) <= 1e-13 * sol.mass[0]
    assert errs[1] < 6e-4 and np.log2(errs[0] / errs[1]) > 1.9, errs


def test_absurd_noise_is_refused_before_stepping():
    """sigma = 1e12 on level 0 would take ~1e15 explicit steps: one line, nothing computed."""
    mesh = sphere_mesh(0)
    with pytest.raises(ValueError, match=r"noise sigma = 1e\+12 on this mesh needs about .* explicit steps"):
        solve_grid(mesh, np.ones(mesh.n_cells), with_noise(still(3), 1e12), 1.0)


def test_diffusion_keeps_a_point_mass_positive():
    """All the mass in one cell: the diffusive outflow is scaled like the transport's, so no cell
    goes negative, at CFL 1 and without error control (fixed steps at the stability bound)."""
    mesh = sphere_mesh(0)
    rho = np.zeros(mesh.n_cells)
    rho[17] = 1.0 / mesh.areas[17]
    model = with_noise(Interaction(3, Constant(1.0)), 0.5)
    sol = solve_grid(mesh, rho, model, 0.2, t_eval=np.linspace(0, 0.2, 5), cfl=1.0, rtol=None)
    assert sol.densities.min() >= 0.0
    assert np.abs(sol.mass - 1.0).max() <= 1e-13


# ------------------------------------------------------- linear theory and stationary states
def test_noisy_growth_rate_on_the_grid():
    """A small cos(theta) perturbation of the uniform state under noisy attention grows at
    lambda_1(beta) - sigma (stable here: the rate is negative)."""
    beta, sigma, eps, T = 2.0, 0.5, 1e-6, 1.0
    model = with_noise(Schedule.constant(Params.identity(2, beta), T), sigma)
    mesh = circle_mesh(128)
    wave = circle_averages(mesh, 1, 0.0)
    sol = solve_grid(mesh, (1 + eps * wave) / (2 * np.pi), model, t_eval=np.linspace(0, T, 5))
    amp = (sol.densities * 2 * np.pi - 1) @ wave / (wave @ wave)
    rate = np.polyfit(sol.times, np.log(amp), 1)[0]
    want = model.piece(0.5).growth_rate(1)
    assert want < 0 and abs(rate - want) < 2e-3 * abs(want), (rate, want)


def kuramoto_order(c: float, sigma: float) -> float:
    """The noisy Kuramoto model's stationary order parameter: r = I1(c r / sigma) / I0(c r / sigma)
    (the density exp(kappa cos theta) with kappa = c r / sigma), by fixed point from r = 1."""
    r = 1.0
    for _ in range(10_000):
        kappa = c * r / sigma
        r = i1e(kappa) / i0e(kappa)
    return r


@pytest.mark.parametrize(
    ("diffusion", "cells", "ceiling", "ratio"),
    [("explicit", (32, 64), 5e-4, 2.5), ("implicit", (64, 128), 2e-4, 3.0)],
)
def test_noisy_kuramoto_stationary_state_on_the_grid(diffusion, cells, ceiling, ratio):
    """Identical oscillators X = c P_x int y dmu with noise sigma < c / 2 are stationary in the von
    Mises density of the self-consistent order parameter: the grid, started there, stays within
    its discretisation error (second order) of it, the diffusion stepped explicitly (M = 32, 64) or
    implicitly (M = 64, 128; tests/test_implicit_diffusion.py: errors 5.3e-4, 1.6e-4, observed order
    1.7, where the explicit scheme's are 4.8e-4, 1.4e-4, order 1.8); the mass kept to round-off."""
    c, sigma = 1.0, 0.25
    want = kuramoto_order(c, sigma)
    model = with_noise(Interaction(2, Constant(c)), sigma)
    errs = []
    for M in cells:
        mesh = circle_mesh(M)
        rho0 = np.exp(c * want / sigma * mesh.centres[:, 0])
        rho0 = rho0 / (rho0 @ mesh.areas)
        sol = solve_grid(mesh, rho0, model, 20.0, t_eval=[0.0, 15.0, 20.0], diffusion=diffusion)
        r = np.linalg.norm((sol.densities * mesh.areas) @ mesh.centres, axis=1)
        assert abs(r[-1] - r[-2]) < 1e-5 * r[-1]  # settled: the discrete stationary state
        errs.append(abs(r[-1] - want))
        assert np.abs(sol.mass - 1).max() <= 1e-15 * sol.steps  # round-off, 1e-16 a step at most
    assert errs[1] < ceiling and errs[0] / errs[1] > ratio, errs


# ------------------------------------------------------- tokens
def test_brownian_tokens_weak_order_one():
    """E[<x, e>] of tokens started at e decays as exp(-sigma (d - 1) t); the noisy layers'
    weak error halves with the step (10 -> 20 layers), 400,000 tokens."""
    sigma, T, n = 0.2, 1.0, 400_000
    for d in (2, 3):
        x0 = np.zeros((n, d))
        x0[:, -1] = 1.0
        exact = np.exp(-sigma * (d - 1) * T)
        errs = []
        for steps in (10, 20):
            final = solve_particles(with_noise(still(d), sigma), x0, T=T, steps=steps, noise_seed=4).final
            errs.append(final[:, -1].mean() - exact)
        # Standard error of each mean ~ 0.5 / sqrt(n) = 8e-4 against biases of 1.2e-2 / 2.3e-2.
        assert 0.75 < np.log2(errs[0] / errs[1]) < 1.25, (d, errs)


def test_kicks_do_not_depend_on_the_split():
    whole = brownian_increments((5, 2), 7, 0, 3 * BLOCK + 10, 3)
    for lo, hi in ((0, 5), (BLOCK - 3, BLOCK + 4), (2 * BLOCK + 1, 3 * BLOCK + 10)):
        np.testing.assert_array_equal(brownian_increments((5, 2), 7, lo, hi, 3), whole[lo:hi])
    # A coarse step sums the fine steps it spans, over sqrt(substeps): one Brownian path.
    fine = [brownian_increments(1, j, 0, 50, 2) for j in (6, 7)]
    coarse = brownian_increments(1, 3, 0, 50, 2, substeps=2)
    np.testing.assert_allclose(coarse, sum(fine) / np.sqrt(2), rtol=1e-15)


def test_noisy_tokens_resume_bit_for_bit(rng):
    x0 = uniform_sphere(300, 3, rng)
    model = with_noise(Interaction(3, Constant(1.0)), 0.3)
    full = solve_particles(model, x0, T=1.0, steps=20, t_eval=[0.0, 0.5, 1.0], noise_seed=2)
    resumed = solve_particles(model, full.positions[1], T=1.0, steps=20, t_eval=[0.0, 0.5, 1.0], t0=0.5,
                              noise_seed=2)  # fmt: skip
    np.testing.assert_array_equal(resumed.final, full.final)


def test_noisy_tokens_refuse_ode_integrators(rng):
    model = with_noise(Interaction(3, Constant(1.0)), 0.3)
    x0 = uniform_sphere(10, 3, rng)
    for method, steps in (("rk4", 4), ("adaptive", None)):
        with pytest.raises(ValueError, match=r"noisy model .* runs with method 'layers'"):
            solve_particles(model, x0, T=1.0, method=method, steps=steps)
    with pytest.raises(ValueError, match="noise_grid = 30 must be a multiple"):
        solve_particles(model, x0, T=1.0, steps=4, noise_grid=30)


# ------------------------------------------------------- case files
NOISY = """
[case]
name = "noisy"
geometry = "sphere"
T = 1.0
outputs = 5
[initial]
family = "uniform"
[model]
beta = 1.0
noise = {noise}
[particles]
tokens = 100
layers = [{layers}]
reference_steps = {ref}
"""


def test_case_noise_key():
    case = parse_case(NOISY.format(noise=0.2, layers="4, 8", ref=16), "noisy.toml")
    assert case.model.noise == 0.2 and case.schedule.blocks[0][1].heads  # the attention underneath
    assert parse_case(NOISY.format(noise=0, layers="4, 8", ref=16), "noisy.toml").model.noise == 0.0
    bad = {
        (-0.1, "4", 16): "model.noise must be >= 0",
        ('"a"', "4", 16): "model.noise must be a number",
        (0.2, "4, 8", 0): "particles.reference_steps",
        (0.2, "4, 8", 12): r"particles.layers must divide particles.reference_steps = 12 .*; got 8",
        (0.2, "2, 4", 8): r"case.outputs \(the output times\) must be multiples of T / 2",
    }
    for (noise, layers, ref), message in bad.items():
        with pytest.raises(ValueError, match=message):
            parse_case(NOISY.format(noise=noise, layers=layers, ref=ref), "noisy.toml")
    # A sweep's batched RK4 flow is an ODE: a noisy model is refused, not silently run without noise.
    sweep = NOISY.format(noise=0.2, layers="4, 8", ref=16) + "[sweep]\nbetas = [1.0, 2.0]\n"
    with pytest.raises(ValueError, match=r"sweep draws its own single head .*: remove model\.noise"):
        parse_case(sweep, "noisy.toml")
