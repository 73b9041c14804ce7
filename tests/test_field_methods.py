"""The solvers' choice of field method: every method agrees with the dense sums, bad choices are named."""

import numpy as np
import pytest

from vlasov_tf import kernels
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.models.attention import Head, Params, Schedule
from vlasov_tf.models.sums import method_head_sums
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.particles import solve_particles


@pytest.mark.parametrize("head", ["zonal", "general"])
def test_grid_methods_agree_on_the_sphere(rng, head):
    mesh = sphere_mesh(1)  # 4320 cells: the spectral sums are the cheaper
    rho0 = np.exp(2.0 * mesh.centres[:, 2])
    B = 4.0 * np.eye(3) if head == "zonal" else 4.0 * rng.normal(size=(3, 3)) / np.sqrt(3)
    sched = Schedule.constant(Params(heads=(Head(B=B, V=np.eye(3)),)), 0.1)
    dense = solve_grid(mesh, rho0, sched, field_method="dense").final
    spectral = solve_grid(mesh, rho0, sched, field_method="spectral").final
    # 1e-10 per row of the field, through a few steps of a contracting flow.
    assert 0 < np.abs(spectral - dense).max() <= 1e-9 * dense.max()  # really another path, within tol
    if head == "zonal":
        auto = solve_grid(mesh, rho0, sched).final
        np.testing.assert_array_equal(auto, spectral)  # "auto" chose them


def test_grid_methods_agree_on_the_circle():
    mesh = circle_mesh(256)
    t = np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0])
    sched = Schedule.constant(Params.identity(2, 4.0), 0.5)
    dense = solve_grid(mesh, 1.0 + 0.5 * np.cos(t), sched, field_method="dense").final
    fft = solve_grid(mesh, 1.0 + 0.5 * np.cos(t), sched, field_method="fft").final
    assert np.abs(fft - dense).max() <= 1e-12 * dense.max()  # FFT is exact up to round-off
    auto = solve_grid(mesh, 1.0 + 0.5 * np.cos(t), sched).final
    np.testing.assert_array_equal(auto, fft)  # "auto" chose it
    spectral = solve_grid(mesh, 1.0 + 0.5 * np.cos(t), sched, field_method="spectral").final
    assert 0 < np.abs(spectral - dense).max() <= 1e-9 * dense.max()


@pytest.mark.parametrize(
    ("mesh", "B", "method"),
    [
        (sphere_mesh(0), 2.0 * np.eye(3), "fft"),
        (circle_mesh(64), np.diag([1.0, 2.0]), "fft"),
    ],
)
def test_grid_method_that_does_not_apply_is_named(mesh, B, method):
    sched = Schedule.constant(Params(heads=(Head(B=B, V=np.eye(mesh.d)),)), 0.1)
    with pytest.raises(ValueError, match=f"field method '{method}' does not apply"):
        solve_grid(mesh, np.ones(mesh.n_cells), sched, field_method=method)
    with pytest.raises(ValueError, match="unknown field method"):
        solve_grid(mesh, np.ones(mesh.n_cells), sched, field_method="fmm")


@pytest.mark.parametrize("method", ["layers", "rk4"])
@pytest.mark.parametrize("d", [2, 3])
def test_particle_methods_agree(rng, method, d):
    """Spectral sums in every step, RK4's stages included (they are evaluated on the sphere)."""
    x = uniform_sphere(400, d, rng)
    w = rng.random(400)
    B = 3.0 * rng.normal(size=(d, d)) / np.sqrt(d)
    sched = Schedule.constant(Params(heads=(Head(B=B, V=np.eye(d)),)), 0.5)
    dense = solve_particles(sched, x, w, method=method, steps=10, field_method="dense").final
    got = solve_particles(sched, x, w, method=method, steps=10, field_method="spectral").final
    assert 0 < np.abs(got - dense).max() <= 1e-9


def test_particle_auto_chooses_by_cost(rng):
    """Zonal, many tokens: "auto" runs the spectral sums; small beta, general head in R^4: Taylor."""
    x = uniform_sphere(6000, 3, rng)
    w = rng.random(6000)
    assert kernels.choose_method(3.0 * x, x, w, 3) == "spectral"
    zonal = Schedule.constant(Params.identity(3, 3.0), 0.2)
    for method in ("layers", "rk4"):
        runs = {m: solve_particles(zonal, x, w, method=method, steps=3, field_method=m).final
                for m in ("auto", "spectral", "dense")}  # fmt: skip
        np.testing.assert_array_equal(runs["auto"], runs["spectral"])
        assert 0 < np.abs(runs["auto"] - runs["dense"]).max() <= 1e-9

    y = 0.2 * rng.normal(size=(20_000, 4))  # tokens in R^4: no spectral sums
    B = 0.3 * rng.normal(size=(4, 4))
    assert kernels.choose_method(y @ B.T, y, np.ones(20_000), 4) == "taylor"
    general = Schedule.constant(Params(heads=(Head(B=B, V=rng.normal(size=(4, 4))),)), 0.2)
    runs = {m: solve_particles(general, y, None, method="layers", steps=2, field_method=m, sphere=False).final
            for m in ("auto", "taylor", "dense")}  # fmt: skip
    np.testing.assert_array_equal(runs["auto"], runs["taylor"])
    assert 0 < np.abs(runs["auto"] - runs["dense"]).max() <= 1e-9
    with pytest.raises(ValueError, match="unknown field method"):
        method_head_sums("fmm")
    with pytest.raises(ValueError, match="unknown field method 'fft' for tokens"):
        solve_particles(zonal, x, w, method="layers", steps=1, field_method="fft")


def test_adaptive_reference_uses_the_fast_sums_within_its_tolerance(rng):
    """Zonal, 4000 tokens: the reference's "auto" takes the spectral sums at its own rtol and lands
    where the dense reference does, to DOP853's tolerance."""
    x = uniform_sphere(4000, 3, rng)
    w = rng.random(4000)
    sched = Schedule.constant(Params.identity(3, 3.0), 0.3)
    assert kernels.choose_method(3.0 * x, x, w, 3, tol=1e-11) == "spectral"
    auto = solve_particles(sched, x, w, method="adaptive")
    dense = solve_particles(sched, x, w, method="adaptive", field_method="dense")
    assert 0 < np.abs(auto.final - dense.final).max() <= 1e-9


def test_round_off_negative_density_is_zero_mass_to_the_spectral_sums():
    """A cell may hold -1e-94 after a step (see euler_step); the grid must hand it zero mass, as the
    old harmonic tables refused negative weights (a default "auto" run on S^2 stopped with ValueError)."""
    from vlasov_tf.solvers.finite_volumes import FiniteVolume

    mesh = sphere_mesh(1)
    rho = np.exp(6.0 * (mesh.centres[:, 2] - 1.0))
    rho[np.argmin(rho)] = -1e-94
    params = Params.identity(3, 6.0)
    fv_h, fv_d = FiniteVolume(mesh, field_method="spectral"), FiniteVolume(mesh, field_method="dense")
    u_h, u_d = fv_h.normal_velocity(params, 0.0, rho), fv_d.normal_velocity(params, 0.0, rho)
    assert np.abs(u_h - u_d).max() <= 1e-9 * np.abs(u_d).max()
