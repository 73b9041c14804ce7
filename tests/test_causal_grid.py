"""The grid of causal attention (slices of s) against facts of the masked equation, and a causal
case's cross-validation with the masked Transformer."""

import numpy as np
import pytest
from helpers import killed_at_call
from test_crossval import SMALL

import vlasov_tf as vt
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.models.base import with_noise
from vlasov_tf.runs import storage as io
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.studies import crossval_tables
from vlasov_tf.solvers.causal_grid import solve_causal_grid
from vlasov_tf.solvers.finite_volumes import solve_grid


def bumpy(mesh, sign: float = 1.0) -> np.ndarray:
    x = sign * mesh.centres
    rho = 1.0 + 0.8 * x[:, 0] + 0.3 * x[:, 1] * x[:, 0]
    return rho / (rho @ mesh.areas)


@pytest.mark.parametrize("mesh", [circle_mesh(256), sphere_mesh(1)], ids=["circle", "sphere"])
def test_the_first_slice_moves_as_the_unmasked_flow_of_itself(mesh):
    """Slice 1 attends to itself alone: with the same (fixed) steps it is the unmasked solution of
    its own density (SA: the field does not see the slice's mass); one slice is the unmasked equation.
    (Equal slices would all move so: SA's field of k equal slices is that of one.)"""
    d = mesh.centres.shape[1]
    sch = vt.Schedule.constant(vt.Params.identity(d, beta=3.0), 0.5)
    rho, times = bumpy(mesh), np.linspace(0.0, 0.5, 3)
    plain = solve_grid(mesh, rho, sch, t_eval=times, rtol=None, max_dt=0.01)
    slices = np.stack([rho, bumpy(mesh, -1.0), rho]) / 3  # the middle slice's bump opposite
    sliced = solve_causal_grid(mesh, slices, sch, t_eval=times, rtol=None, max_dt=0.01)
    np.testing.assert_allclose(3 * sliced.densities[:, 0], plain.densities, rtol=1e-12, atol=1e-14)
    one = solve_causal_grid(mesh, rho[None], sch, t_eval=times, rtol=None, max_dt=0.01)
    np.testing.assert_allclose(one.densities[:, 0], plain.densities, rtol=1e-12, atol=1e-14)
    # Every slice keeps its mass and stays >= 0; later slices move differently.
    masses = (sliced.densities * mesh.areas).sum(axis=2)
    np.testing.assert_allclose(masses, 1 / 3, rtol=1e-12)
    assert sliced.densities.min() >= 0
    assert np.abs(sliced.densities[-1, 2] - sliced.densities[-1, 0]).max() > 1e-3


def test_noisy_first_slice_moves_as_the_unmasked_noisy_flow_of_itself():
    """With noise each slice diffuses too (the McKean-Vlasov equation per slice): the first slice,
    attending to itself alone, is still the unmasked noisy solution of its own density."""
    mesh = circle_mesh(256)
    sch = with_noise(vt.Schedule.constant(vt.Params.identity(2, beta=3.0), 0.5), 0.05)
    rho, times = bumpy(mesh), np.linspace(0.0, 0.5, 3)
    plain = solve_grid(mesh, rho, sch, t_eval=times, rtol=None, max_dt=0.002)  # below both bounds
    slices = np.stack([rho, bumpy(mesh, -1.0), rho]) / 3
    sliced = solve_causal_grid(mesh, slices, sch, t_eval=times, rtol=None, max_dt=0.002)
    np.testing.assert_allclose(3 * sliced.densities[:, 0], plain.densities, rtol=1e-12, atol=1e-14)
    quiet = solve_grid(mesh, rho, sch.model, t_eval=times, rtol=None, max_dt=0.002)
    assert np.abs(plain.final - quiet.final).max() > 1e-3  # the noise did something
    np.testing.assert_allclose((sliced.densities * mesh.areas).sum(axis=2), 1 / 3, rtol=1e-12)


def test_error_control_steps_the_slices_as_one_state_and_resumes_bit_for_bit():
    """The grid's controller on the (S, C) slices: it follows the solution more closely than the
    fixed CFL steps (rtol=None, the causal grid's steps before it had error control), and its
    steps after a stop depend on the state there alone, so a resumed run is the uninterrupted one."""
    mesh = circle_mesh(64)
    sch = vt.Schedule(((0.3, vt.Params.identity(2, 2.0, "USA")), (0.3, vt.Params.identity(2, 5.0, "USA"))))
    slices = np.stack([bumpy(mesh), bumpy(mesh, -1.0)]) / 2
    times = np.linspace(0.0, 0.6, 4)
    full = solve_causal_grid(mesh, slices, sch, t_eval=times, rtol=1e-4)
    for k in (1, 2):
        rest = solve_causal_grid(mesh, full.densities[k], sch, t_eval=times, t0=times[k], rtol=1e-4)
        np.testing.assert_array_equal(rest.densities, full.densities[k:])
    fixed = solve_causal_grid(mesh, slices, sch, t_eval=times, rtol=None)
    fine = solve_causal_grid(mesh, slices, sch, t_eval=times, rtol=None, max_dt=1e-3)
    assert fixed.rejected == 0 and full.steps > fixed.steps
    err = [np.abs(s.final - fine.final).sum() for s in (full, fixed)]
    assert err[0] < err[1] / 3, err


CAUSAL = SMALL.replace('name = "tiny"', 'name = "causal"').replace(
    'attention = "SA"\nbeta = 3.0',
    # USA: the field grows with the mass before s (SA of equal slices would be the unmasked flow)
    'attention = "USA"\nbeta = 1.0\nmask = "causal"\nslices = 2',
)


def test_causal_cases_cross_validate_and_resume(tmp_path, monkeypatch):
    """The masked Transformer converges in depth at order 1, the slices' grid in h at order ~2
    (linear scheme: as the unmasked case, log2(5) between these grids); a run killed inside a
    grid job resumes from its stored slices to the same bits."""
    case = parse_case(CAUSAL)
    assert case.token_positions(4).tolist() == [0.25, 0.25, 0.75, 0.75]
    full = run_case(case, tmp_path / "full.h5")
    with io.RunFile.open(full, mode="r") as run:
        tables = {t.name: t for t in crossval_tables(case, run)}
        reference = {key: run.job_state(key)[1] for key in run.jobs()}
        slices = run.table("grid/M128", "slices")[1]
    assert tables["layers"].rate == pytest.approx(1.0, abs=0.1)
    assert tables["grid"].rate == pytest.approx(np.log2(5.0), abs=0.2)
    np.testing.assert_array_equal(slices.sum(axis=1), reference["grid/M128"])

    with killed_at_call(monkeypatch, io.RunFile, "append", 5):  # inside grid/M128
        run_case(case, tmp_path / "killed.h5")
    run_case(case, tmp_path / "killed.h5", resume=True)
    with io.RunFile.open(tmp_path / "killed.h5", mode="r") as run:
        for key, states in reference.items():
            np.testing.assert_array_equal(run.job_state(key)[1], states, err_msg=key)
    with pytest.raises(ValueError, match=r"particles\.tokens must be multiples of model\.slices = 3"):
        parse_case(CAUSAL.replace("slices = 2", "slices = 3"))
