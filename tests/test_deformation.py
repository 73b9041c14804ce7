"""Strong deformation: the reversing deformational flow (Nair and Lauritzen 2010, case 4).

Two Gaussian hills are drawn into filaments a few cells wide at T / 2 and return at T: the
error at T is the schemes' error. The landed quadratic scheme lost to the linear one there
because its face jumps dissipate more (the l2 production below); "quadratic-lowdiss" halves
the upwinding and weights the nearest cells more, and keeps third order on smooth flows.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.models.base import Prescribed
from vlasov_tf.models.deformation import PERIOD, deformational_flow, gaussian_hills
from vlasov_tf.runs.cases import CASES_DIR, load_case
from vlasov_tf.runs.studies import fitted_order
from vlasov_tf.solvers.finite_volumes import FiniteVolume, solve_grid
from vlasov_tf.solvers.grid_scheme import check_scheme


def averages(mesh, f):
    points, weights = cell_quadrature(mesh)
    return (f(points.reshape(-1, mesh.d)).reshape(weights.shape) * weights).sum(1) / weights.sum(1)


def l2_error(mesh, rho, exact):
    return np.sqrt(((rho - exact) ** 2) @ mesh.areas / (exact**2 @ mesh.areas))


def test_the_flow_is_divergence_free_and_tangent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x[np.abs(x[:, 2]) < 0.99]  # away from the poles' longitude singularity
    for t in (0.0, 1.3, 2.5):
        v = deformational_flow(t, x)
        np.testing.assert_allclose(np.einsum("ni,ni->n", v, x), 0.0, atol=1e-14)
        # Surface divergence by central differences in the tangent plane (O(eps^2)).
        eps, div = 1e-5, np.zeros(len(x))
        for axis in np.eye(3):
            e = axis - (x @ axis)[:, None] * x
            plus, minus = x + eps * e, x - eps * e
            plus /= np.linalg.norm(plus, axis=1, keepdims=True)
            minus /= np.linalg.norm(minus, axis=1, keepdims=True)
            dv = (deformational_flow(t, plus) - deformational_flow(t, minus)) / (2 * eps)
            div += np.einsum("ni,ni->n", dv, e)
        np.testing.assert_allclose(div, 0.0, atol=1e-8)


def l2_dissipation(mesh, reconstruction, limiter=None):
    """-d/dt ||rho||_2^2 / ||rho||_2^2 of the semi-discrete scheme for the hills at t = 0 (the
    exact flow, divergence-free, keeps the norm: this is the scheme's dissipation alone)."""
    rho = averages(mesh, gaussian_hills)
    fv = FiniteVolume(mesh, limiter, reconstruction=reconstruction)
    rate = fv.rate(rho, fv.normal_velocity(Prescribed(deformational_flow, 3), 0.0, rho))
    return -2 * (rho @ rate) / (rho**2 @ mesh.areas)


def test_the_landed_quadratic_dissipates_more_than_the_linear_scheme_and_lowdiss_less():
    """The cause of the issue, measured without time stepping (level 1): the quadratic's face
    jumps dissipate about twice the linear scheme's l2 norm; "quadratic-lowdiss" less than it."""
    mesh = sphere_mesh(1)
    linear = l2_dissipation(mesh, "linear")
    unlimited = l2_dissipation(mesh, "linear", "none")
    landed = l2_dissipation(mesh, "quadratic")
    low = l2_dissipation(mesh, "quadratic-lowdiss")
    assert min(linear, unlimited, landed, low) > 0
    assert landed > 1.5 * linear > 1.5 * unlimited
    assert low < unlimited < linear


def test_the_scheme_is_named_in_calls_and_case_files():
    """A limiter alone still picks "quadratic" (both quadratics take "positivity"); a case file
    names the new scheme as any other."""
    assert check_scheme(None, "positivity") == ("quadratic", "positivity")
    assert check_scheme("quadratic-lowdiss", None) == ("quadratic-lowdiss", "positivity")
    path = CASES_DIR / "sphere_clustering.toml"
    grid = load_case(path, overrides={"grid.reconstruction": "quadratic-lowdiss"}).grid
    assert (grid.reconstruction, grid.limiter) == ("quadratic-lowdiss", "positivity")
    with pytest.raises(ValueError, match=r"grid\.reconstruction"):
        load_case(path, overrides={"grid.reconstruction": "lowdiss"})


def test_lowdiss_beats_the_linear_scheme_through_filaments():
    """Level 0 (about 6 degrees): the hills come back with a smaller l2 error than the linear
    scheme's, positive, mass to round-off."""
    mesh = sphere_mesh(0)
    rho0 = averages(mesh, gaussian_hills)
    errors = {}
    for scheme in ("linear", "quadratic-lowdiss"):
        sol = solve_grid(mesh, rho0, deformational_flow, PERIOD, reconstruction=scheme)
        assert sol.final.min() >= 0
        np.testing.assert_allclose(sol.mass[-1], sol.mass[0], rtol=1e-12)
        errors[scheme] = l2_error(mesh, sol.final, rho0)
    # Measured: 0.612 against 0.668 (the landed quadratic: 0.687).
    assert errors["quadratic-lowdiss"] < 0.64 and errors["linear"] < 0.7
    assert errors["quadratic-lowdiss"] <= errors["linear"]


@pytest.mark.slow
def test_deformation_levels_0_to_2():
    """Both schemes at levels 0-2: the new scheme's error at most the linear's at each level,
    absolute ceilings, and the observed orders (the filaments are under-resolved: both about 1)."""
    errors: dict[str, list[float]] = {"linear": [], "quadratic-lowdiss": []}
    levels = (0, 1, 2)
    for level in levels:
        mesh = sphere_mesh(level)
        rho0 = averages(mesh, gaussian_hills)
        for scheme, errs in errors.items():
            sol = solve_grid(mesh, rho0, deformational_flow, PERIOD, reconstruction=scheme)
            errs.append(l2_error(mesh, sol.final, rho0))
    h = [sphere_mesh(level).h for level in levels]
    assert all(q <= lin for q, lin in zip(errors["quadratic-lowdiss"], errors["linear"], strict=True))
    # Measured: 0.612, 0.377, 0.156 against 0.668, 0.464, 0.227 (the default quadratic: 0.687,
    # 0.486, 0.246); orders 0.99 against 0.78.
    assert errors["quadratic-lowdiss"][-1] < 0.18 and errors["linear"][-1] < 0.25
    assert fitted_order(h, errors["quadratic-lowdiss"]) >= fitted_order(h, errors["linear"]) > 0.6


def sphere_deformation(t, x):
    """The smooth compressible reversing flow of tests/test_reconstruction.py."""
    a, b = np.array([0.3, -0.5, 0.4]), np.array([0.6, 0.0, 0.8])
    flow = a - (x @ a)[:, None] * x + 2.0 * (x @ b)[:, None] * np.cross([0.0, 0.0, 1.0], x)
    return np.cos(np.pi * t) * flow


AXIS = np.array([1.0, 0.5, 0.8]) / np.linalg.norm([1.0, 0.5, 0.8])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flow", "turn", "ceiling"),
    [
        (sphere_deformation, None, 6e-5),  # 3.87e-5 measured (default quadratic: 8.3e-5)
        (lambda t, x: np.cross(AXIS, x), Rotation.from_rotvec(-AXIS), 6e-5),  # 3.64e-5 (9.2e-5)
    ],
    ids=["deformation", "rotation"],
)
def test_lowdiss_is_third_order_on_smooth_flows(flow, turn, ceiling):
    """The smooth flows of tests/test_reconstruction.py (a reversing compressible flow; a turn by
    1 radian), levels 0-2: order >= 2.7 (2.90 and 3.04 measured)."""
    f0 = lambda x: 1.0 + np.exp(3.0 * (x @ np.array([0.0, 0.6, 0.8]) - 1))  # noqa: E731
    exact = f0 if turn is None else (lambda x: f0(turn.apply(x)))
    errors, h = [], []
    for level in (0, 1, 2):
        mesh = sphere_mesh(level)
        sol = solve_grid(mesh, averages(mesh, f0), flow, 1.0, reconstruction="quadratic-lowdiss")
        errors.append(np.abs(sol.final - averages(mesh, exact)) @ mesh.areas)
        h.append(mesh.h)
    assert fitted_order(h, errors) >= 2.7
    assert errors[-1] < ceiling
