"""The solvers' choice of field method: every method agrees with the dense sums, bad choices are named."""

import numpy as np
import pytest

from vlasov_tf import kernels
from vlasov_tf.eulerian import solve_grid
from vlasov_tf.measures import uniform_sphere
from vlasov_tf.meshes import circle_mesh, sphere_mesh
from vlasov_tf.model import Head, Params, Schedule, method_head_sums
from vlasov_tf.particles import solve_particles


def row_error(a: tuple, b: tuple) -> float:
    """Largest per-row error of scaled sums ``a`` against ``b``, relative to b's normaliser."""
    (sa, ua), (sb, ub) = a, b
    scaled = ua * np.exp(sa - sb)[:, None]
    return float(np.max(np.abs(scaled - ub) / ub[:, -1:]))


@pytest.mark.parametrize("beta", [0.5, 8.0, 300.0])
def test_kernel_sums_by_harmonics_match_dense(rng, beta):
    x = uniform_sphere(600, 3, rng)
    cap = x[x[:, 2] > 0.3]  # mass in a cap: rows opposite it need the dense fix-up
    w = rng.random(len(cap))
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    z = beta * x @ rot.T
    got = kernels.kernel_sums(z, cap, w, cap, method="harmonics")
    assert row_error(got, kernels.exp_kernel_sums(z, cap, w, cap)) <= 1e-10


def test_harmonics_refuse_non_zonal_sums(rng):
    x = uniform_sphere(50, 3, rng)
    with pytest.raises(ValueError, match="zonal sums on S\\^2"):
        kernels.kernel_sums(x @ rng.normal(size=(3, 3)), x, np.ones(50), x, method="harmonics")
    with pytest.raises(ValueError, match="method must be one of"):
        kernels.kernel_sums(x, x, np.ones(50), x, method="fmm")


def test_auto_picks_by_cost(rng):
    x = uniform_sphere(20_000, 3, rng)
    assert kernels.pick_method(2.0 * x, x, 3, 1e-10) == "harmonics"  # L ~ 20: (n + m) L^2 << n m
    assert kernels.pick_method(1000.0 * x[:300], x[:300], 3, 1e-10) == "dense"  # L ~ 250
    general = x @ rng.normal(size=(3, 3))
    assert kernels.pick_method(general[:300], x[:300], 3, 1e-10) == "dense"


def test_grid_methods_agree_on_the_sphere():
    mesh = sphere_mesh(1)  # 4030 cells: the harmonics are the cheaper (level 0: the dense sums)
    rho0 = np.exp(2.0 * mesh.centres[:, 2])
    sched = Schedule.constant(Params.identity(3, 4.0), 0.1)
    dense = solve_grid(mesh, rho0, sched, field_method="dense").final
    harmonics = solve_grid(mesh, rho0, sched, field_method="harmonics").final
    # 1e-10 per row of the field, through a few steps of a contracting flow.
    assert np.abs(harmonics - dense).max() <= 1e-9 * dense.max()
    assert np.abs(harmonics - dense).max() > 0  # really another path
    auto = solve_grid(mesh, rho0, sched).final
    np.testing.assert_array_equal(auto, harmonics)  # "auto" chose them


def test_grid_methods_agree_on_the_circle():
    mesh = circle_mesh(256)
    t = np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0])
    sched = Schedule.constant(Params.identity(2, 4.0), 0.5)
    dense = solve_grid(mesh, 1.0 + 0.5 * np.cos(t), sched, field_method="dense").final
    fft = solve_grid(mesh, 1.0 + 0.5 * np.cos(t), sched, field_method="fft").final
    assert np.abs(fft - dense).max() <= 1e-12 * dense.max()  # FFT is exact up to round-off


@pytest.mark.parametrize(
    ("mesh", "B", "method"),
    [
        (sphere_mesh(0), 2.0 * np.eye(3), "fft"),
        (sphere_mesh(0), np.diag([1.0, 2.0, 3.0]), "harmonics"),
        (circle_mesh(64), np.diag([1.0, 2.0]), "fft"),
    ],
)
def test_grid_method_that_does_not_apply_is_named(mesh, B, method):
    sched = Schedule.constant(Params(heads=(Head(B=B, V=np.eye(mesh.d)),)), 0.1)
    with pytest.raises(ValueError, match=f"field method '{method}' does not apply"):
        solve_grid(mesh, np.ones(mesh.n_cells), sched, field_method=method)
    with pytest.raises(ValueError, match="unknown field method"):
        solve_grid(mesh, np.ones(mesh.n_cells), sched, field_method="fmm")


def test_particle_methods_agree(rng):
    x = uniform_sphere(400, 3, rng)
    w = rng.random(400)
    sched = Schedule.constant(Params.identity(3, 3.0), 0.5)
    # Layers keep the tokens on the sphere, where the harmonics apply (RK4's stages leave it).
    dense = solve_particles(sched, x, w, method="layers", steps=10, field_method="dense").final
    got = solve_particles(sched, x, w, method="layers", steps=10, field_method="harmonics").final
    assert 0 < np.abs(got - dense).max() <= 1e-9


def test_particle_auto_chooses_by_cost(rng):
    """Zonal, many tokens: "auto" runs the harmonics; small beta, general head: the Taylor features."""
    x = uniform_sphere(6000, 3, rng)
    w = rng.random(6000)
    assert kernels.pick_method(3.0 * x, x, 3, 1e-10) == "harmonics"
    zonal = Schedule.constant(Params.identity(3, 3.0), 0.2)
    runs = {m: solve_particles(zonal, x, w, method="layers", steps=3, field_method=m).final
            for m in ("auto", "harmonics", "dense")}
    np.testing.assert_array_equal(runs["auto"], runs["harmonics"])
    assert np.abs(runs["auto"] - runs["dense"]).max() <= 1e-9

    B = 0.3 * rng.normal(size=(3, 3))
    assert kernels.pick_method(x @ B.T, x, 3, 1e-10) == "taylor"
    general = Schedule.constant(Params(heads=(Head(B=B, V=rng.normal(size=(3, 3))),)), 0.2)
    runs = {m: solve_particles(general, x, w, method="layers", steps=3, field_method=m).final
            for m in ("auto", "taylor", "dense")}
    np.testing.assert_array_equal(runs["auto"], runs["taylor"])
    assert 0 < np.abs(runs["auto"] - runs["dense"]).max() <= 1e-9
    with pytest.raises(ValueError, match="unknown field method"):
        method_head_sums("fmm")


def test_round_off_negative_density_is_zero_mass_to_the_harmonics():
    """A cell may hold -1e-94 after a step (see euler_step); the harmonics refuse negative weights,
    so the grid must hand them zero mass (a default "auto" run on S^2 stopped with ValueError)."""
    from vlasov_tf.eulerian import FiniteVolume

    mesh = sphere_mesh(1)
    rho = np.exp(6.0 * (mesh.centres[:, 2] - 1.0))
    rho[np.argmin(rho)] = -1e-94
    params = Params.identity(3, 6.0)
    fv_h, fv_d = FiniteVolume(mesh, field_method="harmonics"), FiniteVolume(mesh, field_method="dense")
    u_h, u_d = fv_h.normal_velocity(params, 0.0, rho), fv_d.normal_velocity(params, 0.0, rho)
    assert np.abs(u_h - u_d).max() <= 1e-9 * np.abs(u_d).max()
