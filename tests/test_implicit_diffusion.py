"""The implicit diffusion (``diffusion = "implicit"``: TR-BDF2 on the assembled operator,
Strang-split around the transport) against what is derived for it: the assembled matrix is the
explicit scheme's operator with zero column sums, the heat equation's decay rates at steps far
beyond the explicit limit (order 2 in space, order 2 in time against the semi-discrete
``exp(t L)``), mass to round-off, the noisy Kuramoto stationary state, resume bit for bit, and
bad input in one line."""

import numpy as np
import pytest
from scipy.sparse.linalg import expm_multiply
from test_noise import NOISY, circle_averages, sphere_averages, still

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.runs.cases import case_settings, load_case, parse_case, settings_difference
from vlasov_tf.runs.overrides import parse_overrides
from vlasov_tf.solvers.causal_grid import solve_causal_grid
from vlasov_tf.solvers.diffusion import Diffusion
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.grid_scheme import GridScheme
from vlasov_tf.solvers.implicit_diffusion import diffusion_matrix


def explicit_limit(mesh, sigma: float) -> float:
    """The explicit diffusion's step bound at CFL 1 (its cells' outflow rates)."""
    return float(np.min(mesh.areas / Diffusion(mesh, sigma).outflow_rates()))


@pytest.mark.parametrize("mesh", [circle_mesh(24), sphere_mesh(0)], ids=["circle", "sphere"])
def test_matrix_is_the_explicit_operator_and_conserves(mesh):
    """``L m`` equals ``-div`` of the explicit fluxes of ``m / A`` to round-off; the columns of
    ``L`` sum to zero (each face flux leaves one cell and enters the other)."""
    diffusion = Diffusion(mesh, 0.3)
    matrix = diffusion_matrix(diffusion)
    rho = np.random.default_rng(1).random(mesh.n_cells)
    want = -mesh.net_outflow(diffusion.fluxes(rho).sum(axis=1))
    assert np.abs(matrix @ (rho * mesh.areas) - want).max() <= 1e-14 * np.abs(want).max()
    assert np.abs(np.asarray(matrix.sum(axis=0))).max() <= 1e-15 * abs(matrix).max()


def test_heat_on_the_circle_far_beyond_the_explicit_step():
    """cos(2 theta + 0.3) decays as exp(-4 sigma t) at a step 2-33x the explicit bound (M = 64 to
    256): order 2 in space, mass to round-off."""
    sigma, T, dt = 0.1, 1.0, 0.1
    model = with_noise(still(2), sigma)
    errs = []
    for M in (64, 128, 256):
        mesh = circle_mesh(M)
        wave = circle_averages(mesh, 2, 0.3)
        sol = solve_grid(mesh, 1 + 0.5 * wave, model, T, max_dt=dt, diffusion="implicit")
        assert sol.steps == round(T / dt)
        errs.append(np.abs(sol.final - (1 + 0.5 * np.exp(-4 * sigma * T) * wave)).max())
        assert abs(sol.mass[-1] - sol.mass[0]) <= 1e-14 * sol.mass[0]
    assert dt > 30 * explicit_limit(mesh, sigma)
    orders = np.log2(np.array(errs[:-1]) / errs[1:])
    assert errs[-1] < 3e-5 and (np.abs(orders - 2) < 0.2).all(), errs


def test_time_order_two_against_the_semi_discrete_solution():
    """Against ``exp(T L)`` of the same operator (the space error removed), the error falls 4x a
    halving of the step: TR-BDF2 (Strang-split around a transport at rest) is second order. At
    sigma = 0.5 on M = 128 the steps are 10-80x the explicit bound."""
    mesh, sigma, T = circle_mesh(128), 0.5, 1.0
    theta = np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0])
    rho0 = 1 + 0.5 * np.cos(2 * theta + 0.3) + 0.3 * np.cos(7 * theta)
    exact = expm_multiply(diffusion_matrix(Diffusion(mesh, sigma)) * T, rho0 * mesh.areas) / mesh.areas
    model = with_noise(still(2), sigma)
    errs = [
        np.abs(solve_grid(mesh, rho0, model, T, max_dt=dt, diffusion="implicit").final - exact).max()
        for dt in (0.2, 0.1, 0.05)
    ]
    orders = np.log2(np.array(errs[:-1]) / errs[1:])
    assert errs[-1] < 2e-5 and (np.abs(orders - 2) < 0.1).all(), errs


def test_heat_on_the_sphere_far_beyond_the_explicit_step():
    """P_2(z) decays as exp(-6 sigma t) on levels 0, 1 at a step 8-30x the explicit bound: order 2."""
    sigma, T, dt = 0.2, 0.25, 0.05
    model = with_noise(still(3), sigma)
    errs = []
    for level in (0, 1):
        mesh = sphere_mesh(level)
        wave = sphere_averages(mesh, lambda x: 1.5 * x[..., 2] ** 2 - 0.5)
        sol = solve_grid(mesh, 1 + 0.5 * wave, model, T, max_dt=dt, diffusion="implicit")
        assert dt > 7.5 * explicit_limit(mesh, sigma)
        errs.append(np.abs(sol.final - (1 + 0.5 * np.exp(-6 * sigma * T) * wave)).max())
        assert abs(sol.mass[-1] - sol.mass[0]) <= 1e-14 * sol.mass[0]
    assert errs[1] < 6e-4 and np.log2(errs[0] / errs[1]) > 1.9, errs


def test_implicit_resumes_bit_for_bit():
    mesh = circle_mesh(48)
    model = with_noise(Interaction(2, Constant(1.0)), 0.2)
    rho0 = np.exp(2 * mesh.centres[:, 0])
    kw = {"t_eval": [0.0, 0.5, 1.0], "diffusion": "implicit"}
    whole = solve_grid(mesh, rho0, model, 1.0, **kw)
    resumed = solve_grid(mesh, whole.densities[1], model, 1.0, t0=0.5, **kw)
    np.testing.assert_array_equal(resumed.final, whole.final)
    explicit = solve_grid(mesh, rho0, model, 1.0, t_eval=kw["t_eval"])
    assert 0 < np.abs(explicit.final - whole.final).max() < 1e-3 * whole.final.max()  # another scheme


def test_noiseless_implicit_is_the_transport():
    """Without noise there is nothing to split: the bits of the default scheme."""
    mesh = sphere_mesh(0)
    model = Interaction(3, Constant(1.0))
    rho0 = np.exp(2 * mesh.centres[:, 2])
    a = solve_grid(mesh, rho0, model, 0.2).final
    np.testing.assert_array_equal(a, solve_grid(mesh, rho0, model, 0.2, diffusion="implicit").final)


def test_bad_diffusion_is_named():
    with pytest.raises(ValueError, match=r"unknown diffusion 'crank'; choose one of \('explicit', 'implic"):
        GridScheme(diffusion="crank")
    mesh = sphere_mesh(0)
    model = with_noise(Interaction(3, Constant(1.0)), 0.3)
    with pytest.raises(ValueError, match="the causal grid steps the diffusion explicitly only"):
        scheme = GridScheme(diffusion="implicit")
        solve_causal_grid(mesh, np.ones((2, mesh.n_cells)), model, T=0.1, scheme=scheme)
    base = NOISY.format(noise=0.2, layers="4, 8", ref=16) + "[grid]\nresolutions = [0]\n"
    case = parse_case(base + 'diffusion = "implicit"\n', "noisy.toml")
    assert case.grid.diffusion == "implicit"
    assert parse_case(base, "noisy.toml").grid.diffusion == "explicit"
    with pytest.raises(ValueError, match=r"grid\.diffusion must be one of 'explicit', 'implicit'; got"):
        parse_case(base + 'diffusion = "crank"\n', "noisy.toml")
    causal = base.replace("noise = 0.2", 'noise = 0.2\nmask = "causal"') + 'diffusion = "implicit"\n'
    with pytest.raises(ValueError, match=r"grid\.diffusion 'implicit' is not available on the causal grid"):
        parse_case(causal, "noisy.toml")


def test_set_and_old_run_files():
    """``--set grid.diffusion=implicit`` reaches the case; a run file stored before the key (no
    ``grid.diffusion``) ran explicitly: it resumes as explicit, and an implicit case is refused."""
    case = load_case("sphere_noisy", parse_overrides(["grid.diffusion=implicit"]))
    assert case.grid.diffusion == "implicit"
    explicit = case_settings(load_case("sphere_noisy"))
    old = {k: v for k, v in explicit.items() if k != "grid.diffusion"}
    assert settings_difference(old, explicit) is None
    changed = settings_difference(old, case_settings(case))
    assert changed == 'grid.diffusion = "explicit" when run, "implicit" now'
