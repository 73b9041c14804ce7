"""The particle solver (deep Transformer, RK4, adaptive) against exact properties of the flow."""

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.integrate import solve_ivp
from scipy.spatial.transform import Rotation
from test_model import commuting_params, general_params

from vlasov_tf import Head, Params, Schedule, interaction_energy, log_potential, solve_particles, velocity
from vlasov_tf.geometry.measures import equally_spaced_circle, normalize, uniform_sphere
from vlasov_tf.runs.studies import fitted_order


def two_block_case(rng, perceptron: bool):
    """d = 3, 16 weighted tokens, two heads then one head, switch at t = 0.4 (not a step multiple)."""
    s = Schedule(
        (
            (0.4, general_params(rng, 3, perceptron=perceptron)),
            (0.6, general_params(rng, 3, heads=1, beta=2.5, perceptron=perceptron)),
        )
    )
    return s, uniform_sphere(16, 3, rng), rng.random(16)


def test_deep_transformer_converges_at_order_one(rng):
    """x <- normalise(x + h X): first order in h = T / L, perceptron (ReLU) included."""
    s, x0, w = two_block_case(rng, perceptron=True)
    ref = solve_particles(s, x0, w, method="adaptive", rtol=1e-13, atol=1e-14).final
    layers = [25, 50, 100, 200, 400]
    errors = [np.abs(solve_particles(s, x0, w, method="layers", steps=L).final - ref).max() for L in layers]
    assert fitted_order(1 / np.asarray(layers), errors) == pytest.approx(1.0, abs=0.1)
    assert errors[-1] < 1e-2


def test_rk4_converges_at_order_four(rng):
    """Order 4 needs a smooth field: no ReLU kink, but a switch that falls inside the steps' grid."""
    s, x0, w = two_block_case(rng, perceptron=False)
    ref = solve_particles(s, x0, w, method="adaptive", rtol=1e-13, atol=1e-14).final
    steps = [5, 10, 20, 40, 80]
    errors = [np.abs(solve_particles(s, x0, w, method="rk4", steps=n).final - ref).max() for n in steps]
    assert fitted_order(1 / np.asarray(steps), errors) == pytest.approx(4.0, abs=0.3)
    assert errors[-1] < 1e-8  # C h^4 with h = 1/80 and C = O(1)


@pytest.mark.parametrize("method", ["layers", "rk4", "adaptive"])
def test_tokens_stay_on_the_sphere(rng, method):
    s, x0, w = two_block_case(rng, perceptron=True)
    sol = solve_particles(s, x0, w, method=method, steps=50, t_eval=np.linspace(0, 1, 11))
    assert np.abs(np.linalg.norm(sol.positions, axis=-1) - 1).max() < 1e-9
    assert sol.positions.shape == (11, 16, 3)


def test_switches_are_exact(rng):
    """Integrating the two blocks in one call equals chaining two constant schedules."""
    s, x0, w = two_block_case(rng, perceptron=False)
    (tau0, p0), (tau1, p1) = s.blocks
    whole = solve_particles(s, x0, w, method="rk4", steps=50).final
    mid = solve_particles(Schedule.constant(p0, tau0), x0, w, method="rk4", steps=20).final
    chained = solve_particles(Schedule.constant(p1, tau1), mid, w, method="rk4", steps=30).final
    np.testing.assert_allclose(whole, chained, atol=1e-14)


def test_output_times_and_layer_count(rng):
    s, x0, w = two_block_case(rng, perceptron=True)
    seen = []
    sol = solve_particles(
        s,
        x0,
        w,
        method="layers",
        steps=100,
        t_eval=np.linspace(0, 1, 11),
        callback=lambda t, x: seen.append(t),
    )
    assert sol.steps == 100  # a uniform output grid compatible with 100 layers keeps 100 layers
    np.testing.assert_allclose(seen, np.linspace(0, 1, 11))
    np.testing.assert_allclose(sol.positions[0], x0, atol=1e-15)


@pytest.mark.parametrize("method", ["layers", "rk4"])
def test_double_weight_moves_as_two_coincident_tokens(rng, method):
    s, x0, w = two_block_case(rng, perceptron=True)
    merged_w = w.copy()
    merged_w[3] *= 2
    merged = solve_particles(s, x0, merged_w, method=method, steps=40).final
    split = solve_particles(s, np.r_[x0, x0[3:4]], np.r_[w, w[3]], method=method, steps=40).final
    np.testing.assert_allclose(split[:16], merged, atol=1e-13)
    np.testing.assert_allclose(split[16], merged[3], atol=1e-13)


def test_permutation_equivariance(rng):
    s, x0, w = two_block_case(rng, perceptron=True)
    perm = rng.permutation(16)
    a = solve_particles(s, x0, w, method="rk4", steps=30).final
    b = solve_particles(s, x0[perm], w[perm], method="rk4", steps=30).final
    np.testing.assert_allclose(b, a[perm], atol=1e-13)


def test_rotation_equivariance(rng):
    R = Rotation.from_rotvec(1.1 * normalize(rng.standard_normal(3))).as_matrix()
    s = Schedule.constant(commuting_params(R, beta=1.5), 1.0)
    x0, w = uniform_sphere(20, 3, rng), rng.random(20)
    a = solve_particles(s, x0, w, method="layers", steps=50).final
    b = solve_particles(s, x0 @ R.T, w, method="layers", steps=50).final
    np.testing.assert_allclose(b, a @ R.T, atol=1e-12)


@pytest.mark.parametrize("attention", ["SA", "USA"])
def test_interaction_energy_never_decreases(rng, attention):
    """dE/dt = sum_i w_i Phi_i |X_i|^2 (SA) or sum_i w_i |X_i|^2 (USA) >= 0, Q = K = V = I.

    Checked twice: E is non-decreasing along the reference trajectory, and its
    time derivative (central difference) matches that formula.
    """
    beta = 2.0
    params = Params.identity(3, beta, attention)
    x0, w = uniform_sphere(24, 3, rng), rng.random(24)
    times = np.linspace(0, 3, 61)
    sol = solve_particles(Schedule.constant(params, 3.0), x0, w, method="adaptive", t_eval=times)
    energy = np.array([interaction_energy(x, w, beta) for x in sol.positions])
    # 1e-9: above the integrator's error (rtol 1e-11, amplified by e^beta for USA), far
    # below the O(1) growth, so a decrease of any visible size fails.
    assert (np.diff(energy) >= -1e-9 * energy[1:]).all()
    assert energy[-1] > energy[0] * (1 + 1e-3)  # it really moves

    dt = 1e-5  # truncation ~ dt^2, integrator noise ~ rtol / dt: both ~1e-8 relative
    t_mid = 0.1  # before USA saturates (it is e^beta faster), where dE/dt = O(100)
    around = [t_mid - dt, t_mid, t_mid + dt]
    pts = solve_particles(
        Schedule.constant(params, 3.0), x0, w, method="adaptive", t_eval=around, rtol=1e-13, atol=1e-14
    ).positions
    de_dt = (interaction_energy(pts[2], w, beta) - interaction_energy(pts[0], w, beta)) / (2 * dt)
    v = velocity(params, pts[1], w)
    phi = np.exp(log_potential(pts[1], w, pts[1], beta))
    dissipation = w @ (np.sum(v * v, axis=1) * (phi if attention == "SA" else 1.0))
    assert de_dt == pytest.approx(dissipation, rel=1e-6)


def test_equally_spaced_circle_tokens_do_not_move():
    x0 = equally_spaced_circle(12, phase=0.1)
    s = Schedule.constant(Params.identity(2, 4.0), 5.0)
    for method in ("layers", "rk4"):
        np.testing.assert_allclose(solve_particles(s, x0, method=method, steps=200).final, x0, atol=1e-13)


def test_collapse_to_one_cluster_in_d3(rng):
    """d = 3, Q = K = V = I, SA, beta = 1: random tokens collapse to a point.

    Why T = 20 suffices: near consensus at p, write x_i = p + u_i; then
    A(x_i) = p + mean(u) + O(u^2) and P_x A = mean(u) - u_i + O(u^2), so
    deviations decay like exp(-t). From diameter <= 2 to 1e-3 takes
    log(2000) ~ 7.6 time units once the tokens share a hemisphere (an O(1)
    transient). The test checks the diameter and that exponential rate.
    """
    x0 = uniform_sphere(32, 3, rng)
    times = np.arange(0.0, 21.0, 1.0)
    sol = solve_particles(
        Schedule.constant(Params.identity(3, 1.0), 20.0), x0, method="rk4", steps=400, t_eval=times
    )
    diam = np.array([np.linalg.norm(x[:, None] - x[None], axis=-1).max() for x in sol.positions])
    assert diam[-1] < 1e-3
    late = times >= 12
    rate = -np.polyfit(times[late], np.log(diam[late]), 1)[0]
    assert rate == pytest.approx(1.0, abs=0.05)


def gaussian_quadrature_tokens(m0, S0, n):
    """n x n tensor Gauss-Hermite nodes of N(m0, S0) in R^2 as weighted tokens."""
    z, wz = hermegauss(n)
    Z = np.array(np.meshgrid(z, z, indexing="ij")).reshape(2, -1).T
    W = np.outer(wz, wz).ravel()
    return m0 + Z @ np.linalg.cholesky(S0).T, W / W.sum()


def test_gaussian_stays_gaussian_in_Rd():
    """SA in R^d: for mu = N(m, S), int e^{<Bx,y>} y dmu / int e^{<Bx,y>} dmu = m + S B x, so
    X(x) = V (m + S B x) is affine and Gaussians stay Gaussian with
        m' = V (m + S B m),  S' = M S + S M^T,  M = V S B,
    and the flow map is x -> P(t) x + c(t), P' = M P, c' = M c + V m.
    Gauss-Hermite nodes are mapped to the Gauss-Hermite nodes of the image
    Gaussian, so weighted tokens track the exact solution up to a quadrature
    error that decays spectrally in the number of nodes.
    """
    m0 = np.array([0.3, -0.2])
    S0 = np.array([[0.53, 0.3], [0.3, 0.17]]) + 0.1 * np.eye(2)
    B = np.array([[0.8, 0.3], [-0.2, 0.5]])
    V = np.array([[-0.5, 0.4], [0.1, -0.3]])
    T = 1.0

    def rhs(_t, u):
        m, S, P, c = u[:2], u[2:6].reshape(2, 2), u[6:10].reshape(2, 2), u[10:]
        M = V @ S @ B
        return np.r_[V @ (m + S @ B @ m), (M @ S + S @ M.T).ravel(), (M @ P).ravel(), M @ c + V @ m]

    u0 = np.r_[m0, S0.ravel(), np.eye(2).ravel(), 0.0, 0.0]
    exact = solve_ivp(rhs, (0, T), u0, method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
    mT, ST, PT, cT = exact[:2], exact[2:6].reshape(2, 2), exact[6:10].reshape(2, 2), exact[10:]
    s = Schedule.constant(Params(heads=(Head(B=B, V=V),)), T)

    errors = {}
    for n in (5, 20):
        x0, w = gaussian_quadrature_tokens(m0, S0, n)
        x = solve_particles(s, x0, w, method="adaptive", sphere=False, rtol=1e-13, atol=1e-14).final
        mean = w @ x
        cov = (x - mean).T @ ((x - mean) * w[:, None])
        errors[n] = max(np.abs(mean - mT).max(), np.abs(cov - ST).max())
        # Weighted (L1(mu)) map error: far nodes (+-7 sigma) see a poorly resolved tilt.
        map_error = w @ np.linalg.norm(x - (x0 @ PT.T + cT), axis=1)
    assert errors[20] < 1e-12
    assert errors[5] > 1e4 * errors[20]  # spectral convergence, not a lucky match
    assert map_error < 1e-10


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "euler"}, "unknown method"),
        ({"method": "layers"}, "positive integer number of steps"),
        ({"method": "rk4", "steps": 0}, "positive integer"),
        ({"method": "rk4", "steps": 2.5}, "positive integer"),
        ({"method": "rk4", "steps": 4, "t_eval": [0.5, 0.2]}, "strictly increasing"),
        ({"method": "rk4", "steps": 4, "t_eval": [0.0, 2.0]}, r"\[0, T\]"),
        ({"method": "rk4", "steps": 4, "t_eval": [np.nan]}, "finite"),
    ],
)
def test_bad_solver_arguments_are_named(kwargs, match):
    s = Schedule.constant(Params.identity(3, 1.0), 1.0)
    with pytest.raises(ValueError, match=match):
        solve_particles(s, np.eye(3), **kwargs)


def test_bad_initial_tokens_are_named():
    s = Schedule.constant(Params.identity(3, 1.0), 1.0)
    with pytest.raises(ValueError, match="initial tokens are not on the unit sphere"):
        solve_particles(s, 2 * np.eye(3), method="rk4", steps=2)
    with pytest.raises(ValueError, match="non-negative"):
        solve_particles(s, np.eye(3), [1.0, -1.0, 1.0], method="rk4", steps=2)
    with pytest.raises(ValueError, match="d = 3"):
        solve_particles(s, np.eye(2), method="rk4", steps=2)


@pytest.mark.parametrize("method", ["layers", "rk4", "adaptive"])
def test_resume_reproduces_the_uninterrupted_run(rng, method):
    """Restarting from a stored output (t = 0.6) or from a switch (t = 0.4) continues exactly."""
    s, x0, w = two_block_case(rng, perceptron=False)
    times = np.linspace(0, 1, 6)
    full = solve_particles(s, x0, w, method=method, steps=37, t_eval=times)
    for k in (2, 3):
        rest = solve_particles(s, full.positions[k], w, method=method, steps=37, t_eval=times, t0=times[k])
        np.testing.assert_array_equal(rest.times, times[k:])
        if method == "adaptive":  # a restarted adaptive integrator agrees to its tolerance
            np.testing.assert_allclose(rest.positions, full.positions[k:], atol=1e-10)
        else:
            np.testing.assert_array_equal(rest.positions, full.positions[k:])
    with pytest.raises(ValueError, match="cannot resume there"):
        solve_particles(s, x0, w, method=method, steps=37, t_eval=times, t0=0.55)


@pytest.mark.parametrize("attention", ["SA", "USA"])
@pytest.mark.parametrize("sphere", [True, False])
def test_few_tokens_take_the_general_steps_bit_for_bit(rng, attention, sphere):
    """A few tokens run a lean loop (particles._tile_layers, model.tile_head_sums): the same bits
    as the general step with the dense sums chosen per call, for "auto" and "dense" alike."""
    from vlasov_tf.models.sums import Sums
    from vlasov_tf.solvers import particles

    params = general_params(rng, 3, attention=attention, beta=0.5)
    x0 = uniform_sphere(24, 3, rng)
    if not sphere:
        x0 = 0.5 * x0
    w = rng.random(24)
    w /= w.sum()
    s = Schedule.constant(params, 0.3)
    for method, step in particles._STEPPERS.items():
        assert particles._few_tokens("auto", x0, w, None) and particles._few_tokens("dense", x0, w, None)
        want = normalize(x0) if sphere else x0  # as solve_particles starts
        for i in range(7):
            want = step(params, i * 0.3 / 7, want, w, 0.3 / 7, sphere, Sums.by_method("auto"))
        for field_method in ("auto", "dense"):
            got = solve_particles(s, x0, w, method=method, steps=7, sphere=sphere, field_method=field_method)
            np.testing.assert_array_equal(got.final, want)
    # Zero weights, many tokens or another method: the general path.
    assert not particles._few_tokens("auto", x0, np.r_[0.0, w[1:]], None)
    assert not particles._few_tokens("auto", uniform_sphere(200, 3, rng), np.ones(200), None)
    assert particles._few_tokens("dense", uniform_sphere(200, 3, rng), np.ones(200), None)
    assert not particles._few_tokens("taylor", x0, w, None)


def test_few_tokens_are_profiled_as_dense_sums(rng):
    from vlasov_tf import profiling

    s = Schedule.constant(Params.identity(3, 1.0), 1.0)
    assert profiling.section("a") is profiling.section("b", pairs=1.0)  # no profile: one shared no-op
    with profiling.profile() as prof:
        solve_particles(s, uniform_sphere(10, 3, rng), steps=5)
    assert prof.counts["dense.pairs"] == 5 * 10 * 10
    assert prof.seconds["sums.dense"] > 0 and not profiling.active()


def test_adaptive_reference_bar_moves_with_time(monkeypatch):
    """The adaptive reference's bar counted blocks: a one-block run sat at 0 until the end. Now
    it follows the time DOP853 has reached, and ends at T."""
    import vlasov_tf.logs as logs

    seen: list[float] = []

    class Recording(logs.tqdm):
        def update(self, n=1):
            super().update(n)
            seen.append(self.n)

    monkeypatch.setattr(logs, "tqdm", Recording)
    x0 = uniform_sphere(40, 3, np.random.default_rng(0))
    solve_particles(Schedule.constant(Params.identity(3, beta=2.0), 2.0), x0, None, method="adaptive",
                    progress=True)  # fmt: skip
    assert len(set(seen)) > 5 and np.all(np.diff(seen) >= 0) and seen[-1] == 2.0


@pytest.mark.parametrize("norm", ["pre", "peri"])
def test_pre_and_peri_ln_layers_converge_at_first_order_to_their_limits(norm):
    """x <- x + h A(pi(x)) (pre-LN) and x <- x + h A / |A| (peri-LN) on the residual stream are
    explicit Euler for dz/dt = A(z), resp. A(z) / |A(z)| (solve_particles' docstring): order 1
    against DOP853 on the same limit, RK4 at order 4."""
    rng = np.random.default_rng(0)
    x0 = uniform_sphere(40, 3, rng) * rng.uniform(0.5, 2.0, (40, 1))  # a stream off the sphere
    s = Schedule.constant(Params.identity(3, beta=2.0), 2.0)
    ref = solve_particles(s, x0, None, method="adaptive", norm=norm).final
    layers = np.array([50, 100, 200, 400])
    def error(method: str, steps: int) -> float:
        final = solve_particles(s, x0, None, method=method, steps=steps, norm=norm).final
        return float(np.abs(final - ref).max())

    err = np.array([error("layers", L) for L in layers])
    orders = np.log2(err[:-1] / err[1:])
    assert np.all(np.abs(orders - 1.0) < 0.05) and err[-1] < 0.01
    rk4 = [error("rk4", L) for L in (40, 80)]
    assert np.log2(rk4[0] / rk4[1]) > 3.7 and rk4[1] < 1e-6


@pytest.mark.parametrize("norm", ["post", "pre", "peri"])
def test_one_token_under_each_layer_norm(norm):
    """One token, Q = K = V = I: the attention returns the token's own direction, A = pi(z). Post-LN
    projects it away (the token stays); pre- and peri-LN add it: |z(t)| = |z(0)| + t, the
    direction fixed; the layers are then exact."""
    z0 = np.array([[0.0, 0.6, 0.8]]) * (1.0 if norm == "post" else 1.5)
    s = Schedule.constant(Params.identity(3, beta=3.0), 2.0)
    for method, steps in (("layers", 7), ("adaptive", None)):
        z = solve_particles(s, z0, None, method=method, steps=steps, norm=norm).final
        grow = 0.0 if norm == "post" else 2.0
        np.testing.assert_allclose(z, z0 * (1 + grow / np.linalg.norm(z0)), rtol=1e-10, atol=1e-12)


def test_layer_norm_placements_are_checked():
    s = Schedule.constant(Params.identity(3, beta=1.0), 1.0)
    x0 = uniform_sphere(5, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown layer-norm placement 'middle'"):
        solve_particles(s, x0, None, steps=2, norm="middle")
    with pytest.raises(ValueError, match="needs sphere=True"):
        solve_particles(s, x0, None, steps=2, norm="pre", sphere=False)
    with pytest.raises(ValueError, match="nonzero"):
        solve_particles(s, np.r_[x0[:4], np.zeros((1, 3))], None, steps=2, norm="peri")


def test_causal_first_token_never_moves_and_the_second_closes_by_the_two_point_ode():
    """Causal attention, Q = K = V = I: the first token attends to itself alone (P_x x = 0), the
    second to the first and itself: with theta their angle, d theta/dt = -sin theta / (1 +
    exp(beta (1 - cos theta))), whatever the later tokens do."""
    from scipy.integrate import solve_ivp as ivp

    rng = np.random.default_rng(0)
    x0 = uniform_sphere(30, 3, rng)
    beta, T = 2.0, 3.0
    times = np.linspace(0.0, T, 7)
    sol = solve_particles(Schedule.constant(Params.identity(3, beta=beta), T), x0, None, method="adaptive",
                          causal_s=np.arange(30) / 30.0, t_eval=times)  # fmt: skip
    assert np.abs(sol.positions[:, 0] - x0[0]).max() < 1e-14
    theta = np.arccos(np.clip(np.einsum("td,d->t", sol.positions[:, 1], x0[0]), -1.0, 1.0))
    ode = ivp(lambda _t, th: -np.sin(th) / (1 + np.exp(beta * (1 - np.cos(th)))), (0.0, T), theta[:1],
              t_eval=times, rtol=1e-12, atol=1e-14)  # fmt: skip
    np.testing.assert_allclose(theta, ode.y[0], rtol=1e-8)
    assert np.all(np.diff(theta) < 0)  # drawn toward the first token
    # Unmasked, the first token moves.
    free = solve_particles(Schedule.constant(Params.identity(3, beta=beta), T), x0, None, method="adaptive")
    assert np.abs(free.final[0] - x0[0]).max() > 0.05


def test_causal_layers_converge_at_first_order_and_sums_are_the_masked_ones():
    from vlasov_tf.kernels.dense import causal_kernel_sums

    rng = np.random.default_rng(1)
    x0 = uniform_sphere(40, 3, rng)
    s = rng.random(40)
    sch = Schedule.constant(general_params(rng, d=3, heads=2), 1.0)
    ref = solve_particles(sch, x0, None, method="adaptive", causal_s=s).final
    err = np.array([np.abs(solve_particles(sch, x0, None, steps=L, causal_s=s).final - ref).max()
                    for L in (40, 80, 160)])  # fmt: skip
    assert np.all(np.abs(np.log2(err[:-1] / err[1:]) - 1.0) < 0.05)
    z, w, v = rng.standard_normal((40, 3)), rng.random(40), rng.standard_normal((40, 2))
    shift, sums = causal_kernel_sums(z, x0, w, v, s, s, rows=7)
    for i in range(40):
        j = s <= s[i]
        e = w[j] * np.exp(x0[j] @ z[i])
        np.testing.assert_allclose(np.exp(shift[i]) * sums[i], np.r_[e @ v[j], e.sum()], rtol=1e-12)
    with pytest.raises(ValueError, match="no key at or before"):
        causal_kernel_sums(z, x0, w, v, s - 2.0, s)
    with pytest.raises(ValueError, match="causal_s must be"):
        solve_particles(sch, x0, None, steps=2, causal_s=s[:5])


def test_particle_scheme_is_checked_once_and_equals_the_keywords(rng):
    """ParticleScheme: each method's options checked (steps for layers and RK4, tolerances for the
    reference), and scheme= gives the keywords' bits."""
    from vlasov_tf.solvers.particles import ParticleScheme

    for kwargs, match in (
        ({"method": "rk4"}, "needs a positive integer number of steps; got None"),
        ({"method": "layers", "steps": 2.5}, "needs a positive integer number of steps"),
        ({"method": "adaptive", "rtol": 0.0}, r"rtol must lie in \(0, 1\)"),
        ({"method": "euler", "steps": 3}, "unknown method 'euler'"),
        ({"steps": 3, "norm": "pre", "sphere": False}, "needs sphere=True"),
        ({"steps": 3, "field_method": "fft"}, "unknown field method 'fft' for tokens"),
    ):
        with pytest.raises(ValueError, match=match):
            ParticleScheme(**kwargs)
    assert ParticleScheme("adaptive").steps is None  # no steps asked of the reference
    sched = Schedule.constant(Params.identity(3, 2.0), 0.5)
    x0 = uniform_sphere(40, 3, rng)
    a = solve_particles(sched, x0, method="rk4", steps=7).final
    b = solve_particles(sched, x0, scheme=ParticleScheme("rk4", 7)).final
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="either as scheme= or as keywords"):
        solve_particles(sched, x0, steps=7, scheme=ParticleScheme("rk4", 7))


def test_absurd_step_counts_are_refused_at_once():
    """solve_particles(steps=1e12) ran for minutes with no output (it would take about a year)."""
    from vlasov_tf.solvers.particles import MAX_STEPS

    x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    model = Schedule.constant(Params(heads=(Head(B=np.eye(3), V=np.eye(3)),)), 1.0)
    for method in ("layers", "rk4"):
        with pytest.raises(ValueError, match=r"steps = 1e\+12 is more than MAX_STEPS"):
            solve_particles(model, x, method=method, steps=1e12)
    assert MAX_STEPS == 10**9
