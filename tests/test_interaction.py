"""Interaction-kernel models against what is derived for them: attention as a special case, the
linear theory of the uniform state, the energy's rate, rotations, a user's own model."""

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vlasov_tf import Params, Schedule, solve_particles
from vlasov_tf.analysis.linear_theory import grid_growth_rate
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.kernels.zonal import Constant, ExpDifference, Exponential, Polynomial
from vlasov_tf.kernels.zonal_function import FunctionKernel
from vlasov_tf.models.attention import linear_growth_rate
from vlasov_tf.models.interaction import Interaction, circle_rotation
from vlasov_tf.solvers.causal_grid import solve_causal_grid
from vlasov_tf.solvers.finite_volumes import solve_grid

PAIR = ExpDifference(a=1.0, alpha=4.0, r=0.5, rho=1.0)  # attraction within ~40 degrees, repulsion beyond


def angles(mesh):
    return np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0])


# ------------------------------------------------------- attention is a special case
@pytest.mark.parametrize("normalised", [True, False])
def test_exponential_kernel_is_attention_bit_for_bit(rng, normalised):
    """phi = psi = exp(beta t) is softmax attention with Q = K = V = I, phi alone its unnormalised
    form: the same sums (B = beta I), so the same bits on the grid and for tokens."""
    beta, attention = 3.0, "SA" if normalised else "USA"
    kernel = Exponential(beta)
    for d in (2, 3):
        model = Interaction(d, kernel, kernel if normalised else None)
        sched = Schedule.constant(Params.identity(d, beta, attention), 0.2)
        mesh = circle_mesh(256) if d == 2 else sphere_mesh(1)
        rho = np.exp(np.cos(3 * mesh.centres[:, 0]) + mesh.centres[:, 1])
        rho /= rho @ mesh.areas  # a probability: the unnormalised field's speed scales with the mass
        a = solve_grid(mesh, rho, model, 0.2, t_eval=[0, 0.1, 0.2]).densities
        b = solve_grid(mesh, rho, sched, t_eval=[0, 0.1, 0.2]).densities
        np.testing.assert_array_equal(a, b)
        x0, w = uniform_sphere(300, d, rng), rng.random(300)
        for method, steps in (("layers", 10), ("rk4", 5)):
            p = solve_particles(model, x0, w, T=0.2, method=method, steps=steps).final
            q = solve_particles(sched, x0, w, method=method, steps=steps).final
            np.testing.assert_array_equal(p, q)


# ------------------------------------------------------- linear theory of the uniform state
@pytest.mark.parametrize("attention", ["SA", "USA"])
def test_growth_rates_of_the_exponential_kernel_are_attentions(attention):
    kernel = Exponential(2.5)
    for d in (2, 3):
        model = Interaction(d, kernel, kernel if attention == "SA" else None)
        for mode in (1, 2, 3):
            want = linear_growth_rate(d, mode, 2.5, attention)
            assert model.growth_rate(mode) == pytest.approx(want, rel=1e-12)


def test_growth_rates_of_kuramoto_and_lohe():
    """phi = K: X = K P_x m with m = int y dmu. The first moment of a mode-1 perturbation a cos(s)
    (circle) is a/2 along its axis, of a P_1 (S^2) a/3: lambda_1 = K/2 and 2K/3 (div_S P_x e =
    -(d - 1) <x, e>); higher modes have no first moment and are neutral."""
    for d, first in ((2, 0.5), (3, 2.0 / 3.0)):
        model = Interaction(d, Constant(1.7))
        assert model.growth_rate(1) == pytest.approx(1.7 * first, rel=1e-12)
        for mode in (2, 3, 4):
            assert abs(model.growth_rate(mode)) < 1e-14
    assert Interaction(2, Constant(1.0), omega=circle_rotation(0.3)).growth_rate(1) is None


def measured_rate(mesh, mode, model, rate):
    """The grid's growth of a small mode of the uniform state, relative to the unperturbed discrete
    evolution, fitted over t in [0, 1/rate] (as tests/test_finite_volumes.py does for attention)."""
    return grid_growth_rate(mesh, model, mode, 1.0 / abs(rate))


KERNELS = {
    "exp_difference": (PAIR, None),
    "polynomial": (Polynomial((0.2, 1.0, 0.8, 1.5)), None),
    "normalised": (PAIR, Exponential(1.0)),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_circle_growth_rates_of_other_kernels(name):
    """The Fourier formula for non-exponential kernels, against the grid's dynamics (M = 256)."""
    kernel, psi = KERNELS[name]
    model = Interaction(2, kernel, psi)
    mesh = circle_mesh(256)
    th = angles(mesh)
    for k in (1, 2, 3):
        exact = model.growth_rate(k)
        assert abs(exact) > 1e-2
        mode = np.cos(k * th) * np.sinc(k / 256)  # the cell averages of cos k t
        # O(h^2): 6e-5 ... 2.7e-4 measured at M = 256
        assert measured_rate(mesh, mode, model, exact) == pytest.approx(exact, rel=1e-3)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_sphere_growth_rates_of_other_kernels(name):
    """The Funk-Hecke formula for non-exponential kernels, against the grid's dynamics (level 1)."""
    kernel, psi = KERNELS[name]
    model = Interaction(3, kernel, psi)
    mesh = sphere_mesh(1)
    z = mesh.centres[:, 2]
    for degree, mode in ((1, z), (3, 2.5 * z**3 - 1.5 * z)):
        exact = model.growth_rate(degree)
        assert abs(exact) > 1e-2
        # O(h^2): 2.4e-4 (l = 1), 1.8e-3 (l = 3) measured at level 1; 4.9e-4 at level 2
        assert measured_rate(mesh, mode, model, exact) == pytest.approx(exact, rel=4e-3)


# ------------------------------------------------------- the energy and the rotation
def energy_rate(model, x, w):
    """int |X_int|^2 dmu: the field without its drift, at the tokens."""
    inner = dataclasses.replace(model, omega=None)
    v = inner.velocity(x, w)
    return float(w @ np.einsum("ij,ij->i", v, v))


@pytest.mark.parametrize("d", [2, 3])
def test_tokens_gain_energy_at_the_rate_of_the_gradient_flow(rng, d):
    """dE/dt = int |X|^2 dmu for a gradient kernel (unnormalised), a rotation drift included
    (E is rotation-invariant): a central difference of E along an RK4 run against the integral."""
    omega = circle_rotation(0.7) if d == 2 else np.array([[0, -0.7, 0.2], [0.7, 0, -0.1], [-0.2, 0.1, 0]])
    for kernel in (PAIR, Polynomial((0.0, 1.0, 0.5))):
        model = Interaction(d, kernel, omega=omega)
        x0, w = uniform_sphere(200, d, rng), np.full(200, 1 / 200)
        h, t = 1e-3, 0.3
        times = [0.0, t - h, t, t + h]
        xs = solve_particles(model, x0, w, T=t + h, method="rk4", steps=600, t_eval=times).positions[1:]
        e = [model.energy(x, w) for x in xs]
        rate = energy_rate(model, xs[1], w)
        assert rate > 0
        assert (e[2] - e[0]) / (2 * h) == pytest.approx(rate, rel=1e-6)  # 4e-9 ... 1e-7 measured


def test_the_grid_gains_energy_at_the_rate_of_the_gradient_flow():
    """The same on the S^2 grid (level 2): E of the cell measure against sum_c m_c |X(x_c)|^2, to
    the scheme's consistency (the two differ at O(h^2))."""
    mesh = sphere_mesh(2)
    model = Interaction(3, PAIR)
    x = mesh.centres
    rho = np.exp(3 * x[:, 2]) + 0.5 * np.exp(4 * x[:, 0])
    rho /= rho @ mesh.areas
    h, t = 2e-3, 0.05
    sol = solve_grid(mesh, rho, model, t + h, t_eval=[0, t - h, t, t + h], rtol=1e-6, atol=1e-12)
    e = [model.energy(x, r * mesh.areas) for r in sol.densities[1:]]
    rate = energy_rate(model, x, sol.densities[2] * mesh.areas)
    # -2.9e-4, -8.2e-5, -2.2e-5 measured at levels 1, 2, 3 (order 1.9)
    assert (e[2] - e[0]) / (2 * h) == pytest.approx(rate, rel=3e-4)


def test_a_rotation_drift_rotates_the_flow(rng):
    """Omega x with a rotation-invariant kernel: the flow is the drift-free flow, rotated by exp(t Omega)."""
    axis = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    omega = np.cross(np.eye(3), 0.9 * axis)  # Omega x = 0.9 axis x x
    x0, w = uniform_sphere(150, 3, rng), rng.random(150)
    T = 0.8
    a = solve_particles(Interaction(3, PAIR, omega=omega), x0, w, T=T, method="adaptive").final
    b = solve_particles(Interaction(3, PAIR), x0, w, T=T, method="adaptive").final
    rot = Rotation.from_rotvec(0.9 * T * axis).as_matrix()
    np.testing.assert_allclose(a, b @ rot.T, atol=1e-10)  # 2.9e-12 measured (DOP853 at rtol 1e-11)


def test_stationary_states():
    """The uniform circle grid is stationary under any kernel (exactly, by symmetry: 1e-12); a point
    mass is stationary for tokens (every field vanishes on a single point)."""
    mesh = circle_mesh(128)
    rho = np.full(128, 1 / (2 * np.pi))
    for kernel, psi in KERNELS.values():
        sol = solve_grid(mesh, rho, Interaction(2, kernel, psi), 2.0, field_method="dense")
        assert np.abs(sol.final / rho - 1).max() < 1e-12
    x0 = np.tile([[0.0, 0.6, 0.8]], (5, 1))
    out = solve_particles(Interaction(3, PAIR), x0, None, T=1.0, method="rk4", steps=10).final
    np.testing.assert_array_equal(out, x0)


# ------------------------------------------------------- a user's model
class Kuramoto:
    """A user's model in a few lines: identical Kuramoto / Lohe oscillators, X = K P_x int y dmu."""

    def __init__(self, d: int, K: float) -> None:
        self.d, self.K = d, K

    def velocity(self, t, points, weights, queries):
        m = self.K * (weights @ points)
        return m - (queries @ m)[:, None] * queries


def test_a_users_model_runs_through_both_solvers(rng):
    """The user's object and the named constant kernel give the same flows (to round-off)."""
    user, named = Kuramoto(3, 1.5), Interaction(3, Constant(1.5))
    x0, w = uniform_sphere(100, 3, rng), rng.random(100)
    for method, steps in (("layers", 20), ("rk4", 8), ("adaptive", None)):
        a = solve_particles(user, x0, w, T=0.5, method=method, steps=steps).final
        b = solve_particles(named, x0, w, T=0.5, method=method, steps=steps).final
        np.testing.assert_allclose(a, b, atol=1e-12)  # 7e-16 ... 2e-14 measured
    mesh = sphere_mesh(1)
    rho = np.exp(2 * mesh.centres[:, 2])
    rho /= rho @ mesh.areas
    a = solve_grid(mesh, rho, user, 0.5).final
    b = solve_grid(mesh, rho, named, 0.5).final
    np.testing.assert_allclose(a, b, rtol=1e-13)  # 1.7e-15 measured


def test_a_users_model_that_returns_bad_values_is_named(rng):
    class Broken(Kuramoto):
        def velocity(self, t, points, weights, queries):
            return queries[:, :2]

    with pytest.raises(ValueError, match=r"Broken\.velocity must return finite values of shape"):
        solve_particles(Broken(3, 1.0), uniform_sphere(10, 3, rng), T=1.0, steps=2)
    with pytest.raises(ValueError, match="needs a final time"):
        solve_particles(Kuramoto(3, 1.0), uniform_sphere(10, 3, rng), steps=2)
    with pytest.raises(ValueError, match="a model must be"):
        solve_particles(object(), uniform_sphere(10, 3, rng), T=1.0, steps=2)


def test_a_callable_kernel_equals_the_named_one(rng):
    """FunctionKernel of the same function: the flows agree to the sums' tolerance."""
    fn = FunctionKernel(lambda t: np.exp(4.0 * (t - 1)) - 0.5 * np.exp(t - 1), label="pair")
    x0, w = uniform_sphere(400, 3, rng), rng.random(400)
    a = solve_particles(Interaction(3, fn), x0, w, T=0.3, method="rk4", steps=6, field_method="dense").final
    b = solve_particles(Interaction(3, PAIR), x0, w, T=0.3, method="rk4", steps=6, field_method="dense").final
    np.testing.assert_allclose(a, b, atol=1e-13)


def test_bad_models_are_named():
    with pytest.raises(ValueError, match=r"normaliser .* must be positive"):
        Interaction(3, PAIR, PAIR)
    with pytest.raises(ValueError, match="skew-symmetric"):
        Interaction(3, PAIR, omega=np.eye(3))
    with pytest.raises(ValueError, match=r"omega must be a finite \(2, 2\)"):
        Interaction(2, PAIR, omega=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="integer >= 2"):
        Interaction(1, PAIR)


TINY = """
[case]
name = "tiny_interaction"
geometry = "sphere"
T = 0.3
outputs = 3

[initial]
family = "vmf_mixture"
means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
kappas = [4.0, 6.0]

[model]
type = "interaction"
kernel = { name = "exp_difference", a = 1.0, alpha = 4.0, r = 0.5, rho = 1.0 }
omega = [[0.0, -0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]

[particles]
tokens = [100]
layers = [5]
reference_steps = 10

[grid]
resolutions = [0]
"""


def test_cases_of_interaction_and_user_models_run_and_resume(tmp_path, monkeypatch):
    """run_case on an interaction case (energy stored: it grows) and on the same case with a user's
    model put in (no energy: the model defines none; no betas); a run killed inside its grid job
    resumes to the uninterrupted run's states bit for bit."""
    from helpers import killed_at_call

    from vlasov_tf.models import as_model
    from vlasov_tf.runs.cases import parse_case
    from vlasov_tf.runs.runner import run_case
    from vlasov_tf.runs.storage import RunFile

    case = parse_case(TINY)
    path = run_case(case, tmp_path / "pair.h5")
    with RunFile.open(path) as run:
        energy = run.diagnostics("energy")
        assert set(energy) == {"grid/K0", "particles/N100_ref", "particles/N100_L5"}
        for rows in energy.values():
            assert (np.diff(rows[:, 1]) > 0).all()
        assert "particles/N100_ref" in run.diagnostics("sw1_grid")
        reference = {key: run.job_state(key)[1] for key in run.jobs()}
    with killed_at_call(monkeypatch, RunFile, "append", 2):  # inside grid/K0
        run_case(case, tmp_path / "killed.h5")
    run_case(case, tmp_path / "killed.h5", resume=True)
    with RunFile.open(tmp_path / "killed.h5") as run:
        for key, states in reference.items():
            np.testing.assert_array_equal(run.job_state(key)[1], states, err_msg=key)

    user = dataclasses.replace(case, model=as_model(Kuramoto(3, 1.0)))
    assert user.betas == () and user.linking_distance == pytest.approx(user.clusters.scale)
    path = run_case(user, tmp_path / "user.h5")
    with RunFile.open(path) as run:
        assert run.diagnostics("energy") == {}
        assert len(run.diagnostics("sw1_grid")["particles/N100_ref"]) == 3


class Swirl:
    """A time-dependent user's model: X = t^2 Omega x, a rotation by the angle w T^3 / 3 about the axis
    (a field evaluated at the wrong stage times, e.g. at a piece's midpoint, turns by w T^3 / 4)."""

    d = 3

    def __init__(self, axis: np.ndarray, w: float) -> None:
        self.omega = w * np.cross(np.eye(3), axis)  # Omega x = w axis x x

    def velocity(self, t, points, weights, queries):
        return t * t * (queries @ self.omega.T)


def test_time_reaches_every_stage_of_every_solver(rng):
    """The exact rotation of a time-dependent field: layers at order 1, RK4, DOP853, the grid's
    SSP-RK3 stages and the causal grid's."""
    axis = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    model, T = Swirl(axis, 1.5), 1.2
    exact = Rotation.from_rotvec(1.5 * T**3 / 3 * axis).as_matrix()
    x0 = uniform_sphere(50, 3, rng)
    errors = {}
    for method, steps in (("layers", 100), ("layers", 200), ("rk4", 20), ("adaptive", None)):
        got = solve_particles(model, x0, T=T, method=method, steps=steps).final
        errors[f"{method} {steps}"] = np.abs(got - x0 @ exact.T).max()
    assert errors["layers 100"] / errors["layers 200"] == pytest.approx(2.0, rel=0.05)  # order 1
    # 6.4e-3, 1.0e-6, 1.2e-12 measured; the wrong angle would be off by 0.22
    assert errors["layers 200"] < 1e-2 and errors["rk4 20"] < 3e-6 and errors["adaptive None"] < 1e-10
    mesh = sphere_mesh(2)
    x = mesh.centres
    bump = lambda y: np.exp(6.0 * (y @ np.array([1.0, 0.0, 0.0]) - 1.0))  # noqa: E731
    want = bump(x @ exact)  # rho_T(x) = rho_0(R^T x)
    grid = solve_grid(mesh, bump(x), model, T).final
    causal = solve_causal_grid(mesh, bump(x)[None], model, T=T).final[0]
    for got in (grid, causal):  # 2.2e-4 measured for both (the wrong angle: 0.37)
        assert np.abs(got - want) @ mesh.areas < 1e-3 * (want @ mesh.areas)


def test_exponential_kernels_at_any_beta():
    """exp(beta t) at beta = 1000 normalised (attention's scaled sums, its finite rates), and beta <= 0
    (a kernel that attention cannot state: zonal sums, the general energy)."""
    big = Interaction(3, Exponential(1000.0), Exponential(1000.0))
    assert big.growth_rate(2) == pytest.approx(linear_growth_rate(3, 2, 1000.0, "SA"), rel=1e-12)
    flat = Interaction(3, Exponential(-2.0))
    x = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.6, -0.8]])
    w = np.array([0.5, 0.3, 0.2])
    W = (np.exp(-2.0 * (x @ x.T)) - np.exp(-2.0)) / -2.0  # int_1^t e^{-2 s} ds
    assert flat.energy(x, w) == pytest.approx(0.5 * w @ W @ w, rel=1e-10)


def test_tokens_take_a_prescribed_velocity(rng):
    """A callable v(t, x) is a model for tokens too (its d is the tokens'): a rigid rotation, exactly."""
    axis = np.array([0.0, 0.6, 0.8])
    x0 = uniform_sphere(30, 3, rng)
    got = solve_particles(lambda t, x: np.cross(axis, x), x0, T=0.7, method="adaptive").final
    np.testing.assert_allclose(got, x0 @ Rotation.from_rotvec(0.7 * axis).as_matrix().T, atol=1e-10)
