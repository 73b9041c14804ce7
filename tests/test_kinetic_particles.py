"""Second-order (kinetic) tokens against mathematics: free streaming, observed orders, energy and
angular momentum, the overdamped limit, velocity alignment, the HMF dispersion relation, resume and
serial equals mpiexec -n 2 (vlasov_tf/solvers/kinetic_particles.py, docs/guide/kinetic_particles.md)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import MPIEXEC, ONE_THREAD, REPO, launch
from scipy.optimize import brentq
from scipy.special import ndtri

from vlasov_tf.analysis.kinetic_theory import VelocityLaw, least_stable_root, magnetisation
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.tangent_bundle import (
    angular_momentum,
    check_velocities,
    geodesic_flow,
    maxwellian_velocities,
)
from vlasov_tf.kernels.zonal import Constant, ExpDifference
from vlasov_tf.models.attention import Head, Params
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction, circle_rotation
from vlasov_tf.solvers.kinetic_particles import potential_energy, solve_kinetic_particles
from vlasov_tf.solvers.particles import solve_particles

HMF = Interaction(2, Constant(1.0))  # F_i = sum_j w_j sin(theta_j - theta_i): the HMF model


def circle_state(theta: np.ndarray, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens at angles theta with angular velocities omega: (x, v), (N, 2) each."""
    tau = np.c_[-np.sin(theta), np.cos(theta)]
    return np.c_[np.cos(theta), np.sin(theta)], omega[:, None] * tau


def angular_velocities(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """theta' = x_0 v_1 - x_1 v_0, (..., N)."""
    return x[..., 0] * v[..., 1] - x[..., 1] * v[..., 0]


def sphere_state(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = uniform_sphere(n, d, rng)
    return x, maxwellian_velocities(x, 1.0, rng), 0.5 + rng.random(n)


# -- free streaming ------------------------------------------------------------------------------


def test_geodesic_flow_is_exact_on_the_circle_and_a_flow_on_s2():
    rng = np.random.default_rng(0)
    theta, omega = 2 * np.pi * rng.random(9), rng.normal(size=9)
    omega[0] = 0.0  # a token at rest stays
    x, v = circle_state(theta, omega)
    xt, vt = geodesic_flow(x, v, 3.7)
    xe, ve = circle_state(theta + 3.7 * omega, omega)
    assert np.abs(xt - xe).max() < 1e-14 and np.abs(vt - ve).max() < 1e-14
    x, v, _ = sphere_state(20, 3, 1)
    x1, v1 = geodesic_flow(*geodesic_flow(x, v, 0.3), 0.9)
    x2, v2 = geodesic_flow(x, v, 1.2)
    assert np.abs(x1 - x2).max() < 1e-14 and np.abs(v1 - v2).max() < 1e-14
    assert np.abs(np.linalg.norm(x2, axis=1) - 1).max() < 1e-15
    assert np.abs(np.einsum("ij,ij->i", x2, v2)).max() < 1e-15
    assert np.abs(np.linalg.norm(v2, axis=1) - np.linalg.norm(v, axis=1)).max() < 1e-14
    for i in range(20):  # each token's x ^ v is constant
        one = np.eye(20)[i]
        assert np.abs(angular_momentum(x2, v2, one) - angular_momentum(x, v, one)).max() < 1e-14
    # The arc travelled is |v| t (mod 2 pi): the angle between x and x(t) where |v| t < pi.
    slow = np.linalg.norm(v, axis=1) * 1.2 < np.pi
    arc = np.arccos(np.clip(np.einsum("ij,ij->i", x, x2), -1, 1))
    assert np.abs(arc - 1.2 * np.linalg.norm(v, axis=1))[slow].max() < 1e-7  # arccos near 0: 1e-8


@pytest.mark.parametrize("method", ["layers", "verlet"])
def test_free_streaming_is_exact_whatever_the_step(method):
    rng = np.random.default_rng(2)
    theta, omega = 2 * np.pi * rng.random(16), 3 * rng.normal(size=16)
    x, v = circle_state(theta, omega)
    zero = Interaction(2, Constant(0.0))
    sol = solve_kinetic_particles(zero, x, v, T=5.0, method=method, steps=7, t_eval=[0, 2.5, 5.0])
    xe, ve = circle_state(theta + 5.0 * omega, omega)
    assert np.abs(sol.final[0] - xe).max() < 1e-13 and np.abs(sol.final[1] - ve).max() < 1e-13
    assert np.abs(sol.energy - sol.energy[0]).max() < 1e-13


# -- observed orders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("friction", "alignment", "ceilings"),
    [
        (0.0, 0.0, {"layers": 1.5e-3, "verlet": 3e-5, "rk4": 2e-6}),  # measured 7.7e-4, 1.5e-5, 9.0e-7
        (0.5, 0.3, {"layers": 1e-2, "verlet": 1.5e-5, "rk4": 1.2e-7}),  # measured 6.1e-3, 7.4e-6, 5.8e-8
    ],
)
def test_observed_orders_against_a_fine_rk4_reference(friction, alignment, ceilings):
    """S^2, 8 tokens, USA attention beta = 1 (with friction and alignment: the exact kicks' matrix
    exponential); errors at T = 2 against RK4 with 640 steps (itself within 1e-10 of 1280), as the
    steps double. Unit mass."""
    x, v, w = sphere_state(8, 3, 0)
    w = w / w.sum()
    model = Params.identity(3, 1.0, "USA")
    kw = {"T": 2.0, "friction": friction, "alignment": alignment}
    ref = solve_kinetic_particles(model, x, v, w, method="rk4", steps=640, **kw).final
    orders = {"layers": (1, [100, 200, 400]), "verlet": (2, [50, 100, 200]), "rk4": (4, [20, 40, 80])}
    for method, (order, steps) in orders.items():
        errs = []
        for n in steps:
            xs, vs = solve_kinetic_particles(model, x, v, w, method=method, steps=n, **kw).final
            errs.append(max(np.abs(xs - ref[0]).max(), np.abs(vs - ref[1]).max()))
        observed = np.log2(np.array(errs[:-1]) / errs[1:])
        assert np.all(np.abs(observed - order) < 0.15 * order), (method, errs, observed)
        assert errs[-1] < ceilings[method], (method, errs)


# -- energy and momentum -------------------------------------------------------------------------


def test_energy_is_conserved_to_the_order_and_momentum_to_round_off():
    x, v, w = sphere_state(10, 3, 3)
    w = w / w.sum()
    model = Params.identity(3, 1.0, "USA")
    drift = {}
    for method, steps in (("layers", [200, 400]), ("verlet", [100, 200]), ("rk4", [40, 80])):
        for n in steps:
            sol = solve_kinetic_particles(
                model, x, v, w, T=2.0, method=method, steps=n, t_eval=np.linspace(0, 2, 21)
            )
            drift[method, n] = np.abs(sol.energy - sol.energy[0]).max()
            if method != "rk4":
                assert np.abs(sol.momentum - sol.momentum[0]).max() < 1e-14  # |L| = 0.25
    # measured 6.6e-4, 7.8e-6, 8.5e-9 at the finer steps; ratios 2.00, 4.00, 16.6
    assert 1.8 < drift["layers", 200] / drift["layers", 400] < 2.2 and drift["layers", 400] < 1e-3
    assert 3.6 < drift["verlet", 100] / drift["verlet", 200] < 4.4 and drift["verlet", 200] < 1.2e-5
    assert 13 < drift["rk4", 40] / drift["rk4", 80] < 19 and drift["rk4", 80] < 1.5e-8


def test_verlet_energy_error_stays_bounded_over_long_times():
    """Symplectic: on the HMF model over 400 time units the energy error does not grow (and the
    tokens stay on the bundle: without the drift's re-projection |x| reached 1.6)."""
    rng = np.random.default_rng(4)
    x, v = circle_state(2 * np.pi * rng.random(64), 0.7 * rng.normal(size=64))
    sol = solve_kinetic_particles(
        HMF, x, v, T=400.0, method="verlet", steps=4000, t_eval=np.linspace(0, 400, 401)
    )
    err = np.abs(sol.energy - sol.energy[0])
    assert err.max() < 2.5e-4  # h = 0.1; measured 1.3e-4 (3.2e-5 at h = 0.05)
    assert err[200:].max() < 2 * err[:201].max()
    assert np.abs(sol.momentum - sol.momentum[0]).max() < 1e-13


def test_friction_dissipates_twice_the_kinetic_energy():
    """dE/dt = -2 gamma E_kin: the balance E(t) - E(0) + 2 gamma int_0^t E_kin holds to O(h^2)
    ("verlet", outputs at every step, trapezoid rule), while E falls by 0.34."""
    rng = np.random.default_rng(13)
    x, v = circle_state(2 * np.pi * rng.random(64), rng.normal(size=64))
    residual = []
    for n in (100, 200):
        times = np.linspace(0, 2, n + 1)
        sol = solve_kinetic_particles(HMF, x, v, T=2.0, method="verlet", steps=n, friction=0.3, t_eval=times)
        spent = np.r_[0.0, np.cumsum(0.5 * (sol.kinetic[1:] + sol.kinetic[:-1]) * np.diff(times))]
        residual.append(np.abs(sol.energy - sol.energy[0] + 2 * 0.3 * spent).max())
        assert sol.energy[0] - sol.energy[-1] > 0.3
    assert 3.6 < residual[0] / residual[1] < 4.4 and residual[1] < 2e-6  # measured 4.1e-6, 1.0e-6


def test_friction_decays_the_momentum_exactly():
    rng = np.random.default_rng(5)
    x, v = circle_state(2 * np.pi * rng.random(32), rng.normal(size=32) + 0.4)
    times = np.linspace(0, 3, 7)
    for method, expected in (
        ("verlet", np.exp(-0.8 * times)),
        ("layers", (1 - 0.8 * 0.01) ** (times / 0.01)),
    ):
        sol = solve_kinetic_particles(HMF, x, v, T=3.0, method=method, steps=300, friction=0.8, t_eval=times)
        assert np.abs(sol.momentum[:, 0] - sol.momentum[0, 0] * expected).max() < 1e-14


@pytest.mark.parametrize(
    "model",
    [
        HMF,
        Interaction(3, ExpDifference(1.0, 3.0, 0.5, 1.0)),
        Params.identity(3, 2.0, "USA"),
        Params(heads=(Head(B=np.zeros((3, 3)), V=np.eye(3)),)),  # SA, B = 0: the barycentre
    ],
    ids=["hmf", "exp_difference", "usa", "sa_b0"],
)
def test_the_potential_is_the_force_s(model):
    """``-w_i <F_i, e> = d/ds U(x_i -> exp_{x_i}(s e))`` (central differences) for every token."""
    d = model.d
    rng = np.random.default_rng(6)
    x = uniform_sphere(7, d, rng)
    w = 0.2 + rng.random(7)
    F = model.velocity(x, w)
    for i in range(7):
        e = maxwellian_velocities(x[i : i + 1], 1.0, rng)[0]
        e /= np.linalg.norm(e)
        u = []
        for s in (-1e-5, 1e-5):
            y = x.copy()
            y[i] = np.cos(s) * x[i] + np.sin(s) * e
            u.append(potential_energy(model, y, w))
        assert abs((u[1] - u[0]) / 2e-5 + w[i] * F[i] @ e) < 1e-8 * max(1.0, np.abs(F).max())


def test_attention_at_b0_on_the_circle_is_the_hmf_model():
    """SA with B = 0, V = I: F_i = P_{x_i} m / M; with unit mass the HMF force sum_j w_j sin(theta_j -
    theta_i), and U = -|m|^2 / 2 = -(1/2) sum_ij w_i w_j cos(theta_i - theta_j)."""
    rng = np.random.default_rng(12)
    theta = 2 * np.pi * rng.random(9)
    w = rng.random(9)
    w /= w.sum()
    x = np.c_[np.cos(theta), np.sin(theta)]
    attention = Params(heads=(Head(B=np.zeros((2, 2)), V=np.eye(2)),))
    F = attention.velocity(x, w)
    hmf = (np.sin(theta[None, :] - theta[:, None]) @ w)[:, None] * np.c_[-np.sin(theta), np.cos(theta)]
    assert np.abs(F - hmf).max() < 1e-15 and np.abs(HMF.velocity(x, w) - hmf).max() < 1e-15
    u = -0.5 * w @ np.cos(theta[:, None] - theta[None, :]) @ w
    assert abs(potential_energy(attention, x, w) - u) < 1e-15
    assert abs(potential_energy(HMF, x, w) - (u + 0.5)) < 1e-15  # HMF's usual 1/2 sum (1 - cos)


def test_a_force_without_a_potential_reports_nan_energy():
    sa = Params.identity(3, 2.0, "SA")
    rotating = Interaction(2, Constant(1.0), omega=circle_rotation(1.0))
    x, v, w = sphere_state(5, 3, 7)
    assert potential_energy(sa, x, w) is None
    assert potential_energy(rotating, x[:, :2] / np.linalg.norm(x[:, :2], axis=1)[:, None], w) is None
    sol = solve_kinetic_particles(sa, x, v, w, T=0.1, steps=2)
    assert np.isnan(sol.energy).all() and np.isfinite(sol.kinetic).all()


# -- known answers -------------------------------------------------------------------------------


def test_alignment_decays_the_velocity_variance_exactly():
    """theta_i'' = K sum_j w_j (theta_j' - theta_i') - gamma theta_i': deviations from the mean decay
    as exp(-(K M + gamma) t), the mean as exp(-gamma t) ("verlet": exact kicks, to round-off)."""
    rng = np.random.default_rng(8)
    w = 0.1 + rng.random(40)
    w *= 2.0 / w.sum()
    M = 2.0
    x, v = circle_state(2 * np.pi * rng.random(40), rng.normal(size=40) + 1.0)
    zero = Interaction(2, Constant(0.0))
    times = np.linspace(0, 2, 5)
    K, gamma = 0.3, 0.25
    sol = solve_kinetic_particles(
        zero, x, v, w, T=2.0, method="verlet", steps=13, alignment=K, friction=gamma, t_eval=times
    )
    om = angular_velocities(sol.positions, sol.velocities)
    mean = om @ w / M
    var = ((om - mean[:, None]) ** 2) @ w / M
    np.testing.assert_allclose(var, var[0] * np.exp(-2 * (K * M + gamma) * times), rtol=1e-12)
    np.testing.assert_allclose(mean, mean[0] * np.exp(-gamma * times), rtol=1e-13)
    # The momentum Transformer: each layer multiplies the deviations by 1 - h (K M + gamma).
    lay = solve_kinetic_particles(zero, x, v, w, T=2.0, steps=400, alignment=K, t_eval=times)
    om = angular_velocities(lay.positions, lay.velocities)
    var_l = ((om - (om @ w / M)[:, None]) ** 2) @ w / M
    np.testing.assert_allclose(var_l, var[0] * (1 - 0.005 * K * M) ** (2 * times / 0.005), rtol=1e-11)


@pytest.mark.parametrize("start", ["at_rest", "moving"])
def test_overdamped_limit_is_the_first_order_flow(start):
    """x(gamma tau) -> the first-order flow at tau: O(1/gamma^2) from rest, O(1/gamma) otherwise."""
    x, v, _ = sphere_state(8, 3, 1)
    v = 0 * v if start == "at_rest" else v
    model = Params.identity(3, 2.0, "SA")
    first = solve_particles(model, x, T=1.0, method="adaptive").final
    errs = []
    for gamma in (4.0, 8.0, 16.0):
        sol = solve_kinetic_particles(
            model, x, v, T=gamma, method="verlet", steps=int(8 * gamma**2), friction=gamma
        )
        errs.append(np.abs(sol.final[0] - first).max())
    observed = np.log2(np.array(errs[:-1]) / errs[1:])
    order = 2 if start == "at_rest" else 1
    assert np.all(np.abs(observed - order) < 0.1), (errs, observed)
    assert errs[-1] < (2e-3 if start == "at_rest" else 0.15)  # measured 1.3e-3, 0.12


def hmf_quiet_start(n_theta: int, n_v: int, temperature: float, amplitude: float):
    """A phase-space lattice: angles at the quantiles of ``(1 + a cos theta) / 2 pi``, velocities at
    those of the Maxwellian; (x, v), (n_theta n_v, 2) each."""
    u = (np.arange(n_theta) + 0.5) / n_theta
    theta = np.array(
        [brentq(lambda t, q=q: t + amplitude * np.sin(t) - 2 * np.pi * q, 0, 2 * np.pi) for q in u]
    )
    speed = np.sqrt(temperature) * ndtri((np.arange(n_v) + 0.5) / n_v)
    th, om = (a.ravel() for a in np.meshgrid(theta, speed, indexing="ij"))
    return circle_state(th, om)


def hmf_root(temperature: float) -> complex:
    """The least stable root of the HMF dispersion relation (K = 1) for the Maxwellian of
    ``temperature``: the one relation of the package (vlasov_tf.analysis.kinetic_theory, wofz)."""
    return least_stable_root(1.0, VelocityLaw.maxwellian(temperature))


def test_the_hmf_dispersion_relation_has_the_known_threshold():
    """T_c = 1/2 (KM/2): a purely growing mode below, purely damped above, zero at T_c (the values
    0.306001590 and -0.265621286 solved independently by fsolve on ``1 - (1 + zeta Z) / 2T``)."""
    assert hmf_root(0.25).imag == pytest.approx(0.306001590, abs=1e-8)
    assert hmf_root(0.75).imag == pytest.approx(-0.265621286, abs=1e-8)
    assert abs(hmf_root(0.5 - 1e-6)) < 1e-4 and abs(hmf_root(0.5 + 1e-6)) < 1e-4


@pytest.mark.parametrize(
    ("temperature", "amplitude", "n_v", "rtol"),
    [(0.25, 1e-4, 256, 1e-3), (0.75, 1e-2, 1024, 1e-2)],  # measured 1.4e-4, 1.7e-3
    ids=["instability", "landau_damping"],
)
def test_hmf_homogeneous_state_grows_or_damps_at_the_dispersion_rate(temperature, amplitude, n_v, rtol):
    """The magnetisation |m(t)| of a perturbed homogeneous Maxwellian, fitted on t in [3, 9]."""
    x, v = hmf_quiet_start(8, n_v, temperature, amplitude)
    times = np.linspace(0, 9, 91)
    sol = solve_kinetic_particles(HMF, x, v, T=9.0, method="verlet", steps=180, t_eval=times)
    m = np.linalg.norm(sol.positions.mean(axis=1), axis=1)
    late = times >= 3
    rate = np.polyfit(times[late], np.log(m[late]), 1)[0]
    expected = hmf_root(temperature)
    assert abs(expected.real) < 1e-8  # the least damped root is purely imaginary (no oscillation)
    assert rate == pytest.approx(expected.imag, rel=rtol)


def test_a_heat_bath_holds_the_velocity_variance_at_its_temperature():
    """Free tokens in a bath (F = 0, gamma = 1, sigma = 0.5) from the Maxwellian of sigma: "verlet"'s
    exact Ornstein-Uhlenbeck kicks keep the variance sigma; "layers" (Euler-Maruyama)
    relaxes it to ``sigma / (1 - gamma h / 2)`` as ``(1 - gamma h)^{2n}``."""
    rng = np.random.default_rng(11)
    sigma, h = 0.5, 0.2
    x, v = circle_state(2 * np.pi * rng.random(4096), np.sqrt(sigma) * rng.normal(size=4096))
    bath = with_noise(Interaction(2, Constant(0.0)), sigma)
    times = np.linspace(0, 40, 201)
    late = times >= 5
    for method, expected in (("verlet", sigma), ("layers", sigma / (1 - 0.5 * h))):
        sol = solve_kinetic_particles(
            bath, x, v, T=40.0, method=method, steps=200, friction=1.0, t_eval=times
        )
        temperature = 2 * sol.kinetic[late]  # per tangent direction, unit mass
        assert temperature.mean() == pytest.approx(expected, rel=1e-2), method  # measured 2.4e-3, 7e-4
    assert expected / sigma - 1 > 0.1  # the two are told apart


@pytest.mark.parametrize(
    ("temperature", "atol"),
    [
        (0.25, 0.01),  # measured |mean - m*| = 2e-4
        pytest.param(0.4, 0.02, marks=pytest.mark.slow),  # measured 1.1e-3
        (0.75, 0.07),  # paramagnetic: |m| ~ (N (1 - 1 / 2T))^{-1/2} = 0.04; measured 0.031
    ],
)
def test_hmf_in_a_heat_bath_reaches_its_thermal_equilibrium(temperature, atol):
    """2000 tokens from a cluster, gamma = 1, time-averaged |m| on [20, 60] against the Gibbs state."""
    rng = np.random.default_rng(0)
    x, v = circle_state(0.5 * rng.normal(size=2000), np.sqrt(temperature) * rng.normal(size=2000))
    times = np.linspace(0, 60, 121)
    sol = solve_kinetic_particles(
        with_noise(HMF, temperature), x, v, T=60.0, method="verlet", steps=600, friction=1.0, t_eval=times
    )
    late = times >= 20
    m = np.linalg.norm(sol.positions.mean(axis=1), axis=1)[late]
    assert abs(m.mean() - magnetisation(1.0, temperature)) < atol
    assert 2 * sol.kinetic[late].mean() == pytest.approx(temperature, rel=0.03)  # measured 1.3e-2
    assert np.isfinite(sol.potential).all()  # the bath's model has the HMF potential


# -- the API -------------------------------------------------------------------------------------


def test_resume_from_an_output_is_bit_for_bit():
    x, v, w = sphere_state(12, 3, 9)
    model = Params.identity(3, 1.0, "USA")
    kw = {"T": 1.0, "method": "verlet", "steps": 20, "friction": 0.2, "alignment": 0.1}
    whole = solve_kinetic_particles(model, x, v, w, t_eval=[0, 0.4, 1.0], **kw)
    rest = solve_kinetic_particles(
        model, whole.positions[1], whole.velocities[1], w, t_eval=[0, 0.4, 1.0], t0=0.4, **kw
    )
    np.testing.assert_array_equal(rest.positions[-1], whole.positions[-1])
    np.testing.assert_array_equal(rest.velocities[-1], whole.velocities[-1])
    noisy = with_noise(model, 0.3)
    kw = {"T": 1.0, "method": "verlet", "steps": 20, "friction": 0.5, "noise_seed": 4}
    whole = solve_kinetic_particles(noisy, x, v, w, t_eval=[0, 0.4, 1.0], **kw)
    rest = solve_kinetic_particles(
        noisy, whole.positions[1], whole.velocities[1], w, t_eval=[0.4, 1.0], t0=0.4, **kw
    )
    np.testing.assert_array_equal(rest.velocities[-1], whole.velocities[-1])
    other = solve_kinetic_particles(noisy, x, v, w, **{**kw, "noise_seed": 5})
    assert np.abs(other.velocities[-1] - whole.velocities[-1]).max() > 1e-2


def test_bad_input_names_the_problem():
    x, v, _ = sphere_state(4, 3, 10)
    model = Params.identity(3, 1.0, "USA")
    with pytest.raises(ValueError, match="not tangent"):
        solve_kinetic_particles(model, x, v + x, T=1.0, steps=2)
    with pytest.raises(ValueError, match="unknown kinetic method"):
        solve_kinetic_particles(model, x, v, T=1.0, steps=2, method="euler")
    with pytest.raises(ValueError, match="friction gamma must be finite and >= 0"):
        solve_kinetic_particles(model, x, v, T=1.0, steps=2, friction=-1.0)
    with pytest.raises(ValueError, match="steps must be an integer"):
        solve_kinetic_particles(model, x, v, T=1.0, steps=0)
    with pytest.raises(ValueError, match="needs friction > 0"):
        solve_kinetic_particles(with_noise(model, 0.1), x, v, T=1.0, steps=2)
    with pytest.raises(ValueError, match="shape"):
        check_velocities(v[:3], x)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_serial_equals_mpiexec_2(tmp_path):
    env = {**os.environ, **ONE_THREAD}
    serial_run = [sys.executable, "tests/mpi_kinetic_particles.py", str(tmp_path / "s.npz"), "serial"]
    subprocess.run(serial_run, check=True, cwd=REPO, env=env)
    proc = launch(2, sys.executable, "tests/mpi_kinetic_particles.py", str(tmp_path / "p.npz"))
    assert proc.returncode == 0, proc.stderr
    serial, parallel = np.load(tmp_path / "s.npz"), np.load(tmp_path / "p.npz")
    assert sorted(serial) == sorted(parallel)
    for key in serial:
        scale = np.abs(serial[key]).max()
        assert np.abs(serial[key] - parallel[key]).max() <= 1e-13 * scale, key
