"""Baseline: FiPy's own first-order upwind scheme for the continuity equation on S^1 and S^2.

The project keeps FiPy's ``UpwindConvectionTerm`` (the convection term FiPy offers) as a
baseline against which the project's finite-volume schemes (linear MUSCL and the third-order
default) are compared on the same test. Both solve the linear continuity equation with a *given*
velocity field

    d rho/dt + div_S(rho v) = 0

(no attention: ``v`` does not depend on ``rho``).

Circle
    :func:`fipy_upwind_circle`: FiPy's ``PeriodicGrid1D`` on the angle ``theta in [0, 2 pi)``,
    ``d rho/dt + d(rho u)/d theta = 0`` with the angular velocity ``u(theta)`` at the faces.

Sphere
    :func:`fipy_upwind_sphere`: FiPy's convection terms do not work on a bare 2D-in-3D surface
    mesh (its cell geometry assumes a flat mesh: a ``Gmsh2DIn3DSpace`` sphere reports signed
    areas of the triangles projected on the xy plane, summing to ~0, and a 3-component face
    velocity does not broadcast against its 2-component geometry), so, as in FiPy's
    ``examples/cahnHilliard/sphere.py``, the gmsh
    surface mesh is extruded radially into a one-cell-thick shell between radii ``1`` and
    ``1 + delta`` (prisms over the surface triangles), on which FiPy's 3D terms run. The
    lateral faces of the prisms lie in planes through the origin, so their normals are exactly
    tangent to the sphere and a tangent velocity gives the right edge fluxes; the velocity is
    set to zero on the inner and outer faces (the shell's exterior), so there is no radial
    flux and the mass ``sum(rho * shell volume)`` is conserved to round-off.

Time stepping: FiPy's default, implicit (backward Euler) with the upwind matrix, solved here by
FiPy's ``LinearLUSolver`` (a direct solve, so that mass is conserved to round-off and not to an
iterative tolerance); ``implicit=False`` uses ``ExplicitUpwindConvectionTerm`` (forward Euler,
stable and positive for a Courant number <= 1, see :func:`sphere_courant_dt`: on triangles that is
``dt <~ 0.3 h / max|v|``). Fixed step: ``n = ceil(T / dt)`` steps of ``T / n``.
Both are first order in space and in time.

FiPy is imported lazily inside the functions: importing this module does not import FiPy
(which refuses to import under ``mpiexec`` with several ranks and no PETSc/Trilinos).

The solid-body rotation test problem, its exact solutions and the L1 errors quoted in the README
are in :func:`rotation_error_circle` and :func:`rotation_error_sphere`;
``python -m vlasov_tf.solvers.fipy_baseline`` prints the convergence tables.

Design notes: docs/numerics.md §2.9.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from vlasov_tf.geometry import mesh_files
from vlasov_tf.geometry.meshes import MeshGeometry, sphere_geometry

__all__ = [
    "RotationResult",
    "ShellMesh",
    "face_velocity",
    "fipy_solver",
    "fipy_upwind_circle",
    "fipy_upwind_sphere",
    "observed_orders",
    "rotation_error_circle",
    "rotation_error_sphere",
    "sphere_courant_dt",
    "sphere_geo",
    "sphere_shell",
]

#: Default relative thickness of the one-cell shell (radii 1 to 1 + delta).
SHELL_DELTA = 0.01

#: Test problem (solid-body rotation): concentration of the bump, its centre on S^2, the axis.
KAPPA = 8.0
SPHERE_BUMP_CENTRE = np.array([1.0, 0.3, 0.2]) / np.linalg.norm([1.0, 0.3, 0.2])
SPHERE_AXIS = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
CIRCLE_BUMP_CENTRE = 1.0


def _n_steps(T: float, dt: float) -> tuple[int, float]:
    """Number of fixed steps covering [0, T] with a step at most ``dt``, and the step used."""
    if not (T >= 0 and dt > 0):
        raise ValueError(f"need T >= 0 and dt > 0, got T={T}, dt={dt}")
    n = math.ceil(T / dt - 1e-12) if T > 0 else 0
    return n, (T / n if n else 0.0)


def fipy_solver(fp: Any) -> Any:
    """FiPy's direct solver (tight tolerance: one LU solve plus a refinement step at most)."""
    return fp.LinearLUSolver(tolerance=1e-13, iterations=3)


def _march(fp: Any, var: Any, coeff: Any, n: int, dt: float, implicit: bool) -> None:
    """Advance ``var`` by ``n`` steps of ``d var/dt + div(coeff var) = 0`` (upwind)."""
    if implicit:
        eq = fp.TransientTerm() + fp.UpwindConvectionTerm(coeff=coeff) == 0
    else:
        eq = fp.TransientTerm() + fp.ExplicitUpwindConvectionTerm(coeff=coeff) == 0
    solver = fipy_solver(fp)
    for _ in range(n):
        var.updateOld()
        eq.solve(var=var, dt=dt, solver=solver)


# ----------------------------------------------------------------------------------------------
# Circle
# ----------------------------------------------------------------------------------------------


def fipy_upwind_circle(
    M: int,
    rho0: Callable[[np.ndarray], np.ndarray],
    velocity: Callable[[np.ndarray], np.ndarray],
    T: float,
    dt: float,
    *,
    implicit: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """FiPy first-order upwind for ``d rho/dt + d(rho u)/d theta = 0`` on the circle.

    Parameters
    ----------
    M : number of cells of the periodic grid in the angle, ``dtheta = 2 pi / M``.
    rho0 : vectorised callable, angles (n,) -> densities (n,); sampled at the cell centres.
    velocity : vectorised callable, angles (n,) -> angular velocity u (n,); sampled at the faces.
    T : final time.
    dt : largest time step; ``ceil(T / dt)`` equal steps are taken.
    implicit : backward Euler (FiPy's default, ``UpwindConvectionTerm``) or forward Euler
        (``ExplicitUpwindConvectionTerm``, stable for ``max|u| dt / dtheta <= 1``; ``ValueError``
        beyond).

    Returns
    -------
    theta : (M,) cell centres ``(i + 1/2) 2 pi / M``.
    rho_T : (M,) cell densities at time T (mass ``sum(rho_T) * 2 pi / M`` is conserved).
    """
    import fipy as fp

    if M < 2:
        raise ValueError(f"need M >= 2 cells, got {M}")
    n, step = _n_steps(T, dt)
    mesh = fp.PeriodicGrid1D(nx=M, dx=2 * np.pi / M)
    theta = np.asarray(mesh.cellCenters[0], dtype=float)
    face_theta = np.asarray(mesh.faceCenters[0], dtype=float)
    u = np.broadcast_to(np.asarray(velocity(face_theta), dtype=float), face_theta.shape)
    if not implicit and n and step * np.max(np.abs(u)) > (2 * np.pi / M) * (1 + 1e-12):
        raise ValueError(
            f"explicit upwind unstable: max|u| dt / dtheta = {step * np.max(np.abs(u)) * M / (2 * np.pi)} > 1"
        )
    coeff = fp.FaceVariable(mesh=mesh, rank=1, value=u[np.newaxis, :].copy())
    r0 = np.broadcast_to(np.asarray(rho0(theta), dtype=float), theta.shape)
    rho = fp.CellVariable(mesh=mesh, value=r0.copy(), hasOld=True)
    _march(fp, rho, coeff, n, step, implicit)
    return theta, np.array(rho.value, dtype=float)


# ----------------------------------------------------------------------------------------------
# Sphere
# ----------------------------------------------------------------------------------------------


def sphere_geo(h: float) -> str:
    """The project's sphere source (``meshes/sphere.geo``) at characteristic length ``h``.

    ``h = 0.18`` gives exactly the triangles of sphere level 0 of :mod:`vlasov_tf.geometry.meshes` (the
    finer levels refine those; pass the level's mesh to :func:`sphere_shell` to get its triangles).
    """
    return mesh_files.sphere_geo(h)


@dataclass(frozen=True)
class ShellMesh:
    """The one-cell shell over a gmsh surface mesh of the unit sphere, with its geometry.

    Attributes
    ----------
    mesh : the FiPy 3D mesh (C prisms; cells 0..C-1 are the surface triangles, in order).
    centres : (C, 3) prism centroids projected to the unit sphere.
    areas : (C,) areas of the spherical triangles on the unit sphere spanned by the surface
        triangles' vertices (they tile the sphere: ``areas.sum() == 4 pi``).
    volumes : (C,) FiPy's prism volumes (the measure FiPy's scheme conserves).
    h_mean, h_max : mean and largest edge length of the surface mesh (chords).
    delta : shell thickness (radii 1 to 1 + delta).
    """

    mesh: Any
    centres: np.ndarray
    areas: np.ndarray
    volumes: np.ndarray
    h_mean: float
    h_max: float
    delta: float

    @property
    def n_cells(self) -> int:
        """Number of cells C."""
        return int(self.centres.shape[0])


def sphere_shell(geo_or_h: str | float | MeshGeometry, delta: float = SHELL_DELTA) -> ShellMesh:
    """Mesh the unit sphere with gmsh through FiPy and extrude it into a one-cell shell.

    Parameters
    ----------
    geo_or_h : gmsh ``.geo`` text (or a path to a ``.geo``/``.msh`` file) of a surface whose
        vertices lie on the unit sphere, a characteristic length ``h`` for :func:`sphere_geo`, or
        a sphere :class:`~vlasov_tf.geometry.meshes.MeshGeometry` (its triangles, through a ``.msh`` file:
        the same cells as the project's scheme).
    delta : shell thickness; the shell spans radii 1 to ``1 + delta``.

    Returns
    -------
    The :class:`ShellMesh` (C cells).
    """

    if not 0 < delta < 1:
        raise ValueError(f"need 0 < delta < 1, got {delta}")
    if isinstance(geo_or_h, MeshGeometry):
        with tempfile.TemporaryDirectory() as tmp:
            msh = mesh_files.write_gmsh(geo_or_h, Path(tmp) / "sphere.msh")
            surface, _ = mesh_files.fipy_sphere_surface(str(msh))
    else:
        geo = sphere_geo(float(geo_or_h)) if isinstance(geo_or_h, int | float) else geo_or_h
        surface, _ = mesh_files.fipy_sphere_surface(geo)
    verts, triangles = mesh_files.fipy_triangles(surface)
    radius = np.linalg.norm(verts, axis=1)
    if np.max(np.abs(radius - 1.0)) > 1e-6:
        raise ValueError(
            f"surface vertices are not on the unit sphere (|x| in [{radius.min()}, {radius.max()}])"
        )
    verts = verts / radius[:, np.newaxis]
    # Exact spherical areas, in FiPy's cell order (sphere_geometry keeps the order of its triangles).
    areas = sphere_geometry(verts, triangles).areas

    edges = np.ma.getdata(surface.faceVertexIDs)  # (2, E)
    lengths = np.linalg.norm(verts[edges[0]] - verts[edges[1]], axis=1)

    shell = surface.extrude(extrudeFunc=lambda x: (1.0 + delta) * x, layers=1)
    centres = np.asarray(shell.cellCenters, dtype=float).T
    centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    volumes = np.asarray(shell.cellVolumes, dtype=float)
    if centres.shape[0] != len(areas) or np.any(volumes <= 0):
        raise RuntimeError("extruded shell does not match its surface mesh")
    return ShellMesh(
        mesh=shell,
        centres=centres,
        areas=areas,
        volumes=volumes,
        h_mean=float(lengths.mean()),
        h_max=float(lengths.max()),
        delta=float(delta),
    )


def face_velocity(shell: ShellMesh, velocity: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(F, 3) velocity at the projected face centres of the shell, 0 on its inner and outer faces."""
    mesh = shell.mesh
    face_x = np.asarray(mesh.faceCenters, dtype=float).T  # (F, 3)
    face_x = face_x / np.linalg.norm(face_x, axis=1, keepdims=True)
    v = np.array(velocity(face_x), dtype=float).reshape(face_x.shape)
    v[np.asarray(mesh.exteriorFaces, dtype=bool)] = 0.0  # no radial flux
    return v


def sphere_courant_dt(shell: ShellMesh, velocity: Callable[[np.ndarray], np.ndarray]) -> float:
    """The step at Courant number 1 of the upwind scheme on the shell.

    ``1 / max_c (sum of the outgoing fluxes |v.n| A_f of cell c) / V_c``: forward Euler upwind
    is stable and positive for ``dt <= sphere_courant_dt`` (on triangles this is about
    ``0.2 ... 0.4 h / max|v|``, not ``h / max|v|``).
    """
    mesh = shell.mesh
    v = face_velocity(shell, velocity)
    flux = np.einsum("fi,if->f", v, np.asarray(mesh.faceNormals, dtype=float))
    flux *= np.asarray(mesh.scaledFaceAreas, dtype=float)  # > 0: out of faceCellIDs[0]
    ids = np.ma.getdata(mesh.faceCellIDs)
    inner = ~np.ma.getmaskarray(mesh.faceCellIDs)[1]
    out = np.zeros(shell.n_cells)
    np.add.at(out, ids[0][inner], np.maximum(flux[inner], 0.0))
    np.add.at(out, ids[1][inner], np.maximum(-flux[inner], 0.0))
    rate = float(np.max(out / shell.volumes))
    return math.inf if rate == 0 else 1.0 / rate


def fipy_upwind_sphere(
    geo_or_mesh: str | float | ShellMesh,
    rho0: Callable[[np.ndarray], np.ndarray],
    velocity: Callable[[np.ndarray], np.ndarray],
    T: float,
    dt: float,
    *,
    implicit: bool = True,
    delta: float = SHELL_DELTA,
) -> tuple[np.ndarray, np.ndarray]:
    """FiPy first-order upwind for ``d rho/dt + div_S(rho v) = 0`` on the unit sphere (one-cell shell).

    Parameters
    ----------
    geo_or_mesh : gmsh ``.geo`` text, a characteristic length ``h``, or a :class:`ShellMesh`
        from :func:`sphere_shell` (to reuse a mesh, or to get its areas and volumes).
    rho0 : vectorised callable, points (n, 3) on the unit sphere -> densities (n,); sampled at
        the cell centres projected to the sphere.
    velocity : vectorised callable, points (n, 3) on the unit sphere -> tangent vectors (n, 3);
        sampled at the projections ``x / |x|`` of the prisms' lateral face centres (the shell's
        inner and outer faces get velocity 0: no radial flux).
    T : final time.
    dt : largest time step; ``ceil(T / dt)`` equal steps are taken. With ``implicit=False`` it
        must not exceed :func:`sphere_courant_dt` (``ValueError`` otherwise).
    implicit : backward Euler (FiPy's default) or forward Euler (``ExplicitUpwindConvectionTerm``).
    delta : shell thickness when the mesh is built here.

    Returns
    -------
    centres : (C, 3) cell centres on the unit sphere.
    rho_T : (C,) cell densities at time T; ``sum(rho_T * volumes)`` (``ShellMesh.volumes``) is
        conserved to round-off.
    """
    import fipy as fp

    shell = geo_or_mesh if isinstance(geo_or_mesh, ShellMesh) else sphere_shell(geo_or_mesh, delta)
    n, step = _n_steps(T, dt)
    if not implicit and n and step > sphere_courant_dt(shell, velocity) * (1 + 1e-12):
        raise ValueError(
            f"explicit upwind unstable: dt = {step} > Courant limit {sphere_courant_dt(shell, velocity)}"
        )
    v = face_velocity(shell, velocity)
    coeff = fp.FaceVariable(mesh=shell.mesh, rank=1, value=v.T.copy())
    r0 = np.broadcast_to(np.asarray(rho0(shell.centres), dtype=float), (shell.n_cells,))
    rho = fp.CellVariable(mesh=shell.mesh, value=r0.copy(), hasOld=True)
    _march(fp, rho, coeff, n, step, implicit)
    return shell.centres.copy(), np.array(rho.value, dtype=float)


# ----------------------------------------------------------------------------------------------
# Test problem: solid-body rotation of a smooth bump
# ----------------------------------------------------------------------------------------------


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` about the unit ``axis`` (right-handed; Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


@dataclass(frozen=True)
class RotationResult:
    """One run of the rotation test: resolution, size, L1 error, mass drift, wall time (s)."""

    h: float
    cells: int
    steps: int
    l1_error: float
    mass_drift: float
    wall_s: float


def rotation_error_circle(
    M: int, *, T: float = np.pi / 2, cfl: float = 0.5, kappa: float = KAPPA, implicit: bool = True
) -> RotationResult:
    """Circle test: bump ``exp(kappa (cos(theta - 1) - 1))`` turned by ``u = 1`` up to T.

    Exact: ``rho_T(theta) = rho0(theta - T)``. ``dt = cfl * 2 pi / M``; the L1 error is
    ``sum |rho - exact(centre)| dtheta``; ``mass_drift`` is relative.
    """

    def rho0(theta: np.ndarray) -> np.ndarray:
        return np.exp(kappa * (np.cos(theta - CIRCLE_BUMP_CENTRE) - 1.0))

    dx = 2 * np.pi / M
    start = time.perf_counter()
    theta, rho = fipy_upwind_circle(M, rho0, lambda t: np.ones_like(t), T, cfl * dx, implicit=implicit)
    wall = time.perf_counter() - start
    err = float(np.sum(np.abs(rho - rho0(theta - T))) * dx)
    mass0 = float(np.sum(rho0(theta)))
    return RotationResult(
        h=dx,
        cells=M,
        steps=_n_steps(T, cfl * dx)[0],
        l1_error=err,
        mass_drift=abs(float(np.sum(rho)) - mass0) / mass0,
        wall_s=wall,
    )


def rotation_error_sphere(
    geo_or_mesh: str | float | ShellMesh,
    *,
    T: float = np.pi / 2,
    cfl: float = 0.5,
    kappa: float = KAPPA,
    implicit: bool = True,
) -> RotationResult:
    """Sphere test: bump ``exp(kappa (<x, p> - 1))`` turned by ``v = omega x x`` up to T.

    ``p = (1, 0.3, 0.2)/|.|``, ``omega = (0.3, -0.2, 1)/|.|`` (rate 1, tilted off the mesh's
    axes). Exact: ``rho_T(x) = rho0(R(-T) x)``. ``dt = cfl * sphere_courant_dt`` (the Courant
    number of the mesh, about ``0.2 ... 0.4 h_mean`` at ``cfl = 1``); the L1 error is
    ``sum |rho - exact(centre)| * spherical area``; ``h`` is the mean edge length; the wall time
    includes meshing when a ``ShellMesh`` is not given.
    """

    def rho0(x: np.ndarray) -> np.ndarray:
        return np.exp(kappa * (x @ SPHERE_BUMP_CENTRE - 1.0))

    def velocity(x: np.ndarray) -> np.ndarray:
        return np.cross(SPHERE_AXIS, x)

    start = time.perf_counter()
    shell = geo_or_mesh if isinstance(geo_or_mesh, ShellMesh) else sphere_shell(geo_or_mesh)
    dt = cfl * sphere_courant_dt(shell, velocity)
    x, rho = fipy_upwind_sphere(shell, rho0, velocity, T, dt, implicit=implicit)
    wall = time.perf_counter() - start
    exact = rho0(x @ _rotation(SPHERE_AXIS, -T).T)
    err = float(np.sum(np.abs(rho - exact) * shell.areas))
    mass0 = float(np.sum(rho0(x) * shell.volumes))
    return RotationResult(
        h=shell.h_mean,
        cells=shell.n_cells,
        steps=_n_steps(T, dt)[0],
        l1_error=err,
        mass_drift=abs(float(np.sum(rho * shell.volumes)) - mass0) / mass0,
        wall_s=wall,
    )


def observed_orders(results: list[RotationResult]) -> list[float]:
    """Orders ``log(e_{k-1} / e_k) / log(h_{k-1} / h_k)`` between successive runs (len - 1)."""
    return [math.log(a.l1_error / b.l1_error) / math.log(a.h / b.h) for a, b in pairwise(results)]


def _table(title: str, results: list[RotationResult]) -> str:
    orders = ["-", *(f"{p:.3f}" for p in observed_orders(results))]
    lines = [
        title,
        f"{'h':>10} {'cells':>7} {'steps':>6} {'L1 error':>11} {'order':>6} {'mass drift':>10} {'wall s':>7}",
    ]
    for r, p in zip(results, orders, strict=True):
        lines.append(
            f"{r.h:10.5f} {r.cells:7d} {r.steps:6d} {r.l1_error:11.4e} {p:>6} "
            f"{r.mass_drift:10.1e} {r.wall_s:7.2f}"
        )
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - prints the README's tables
    """Print the convergence tables of the rotation test on the circle and the sphere."""
    implicit = "--explicit" not in sys.argv
    scheme = "implicit (backward Euler)" if implicit else "explicit (forward Euler)"
    circle = [rotation_error_circle(M, implicit=implicit) for M in (64, 128, 256, 512, 1024, 2048)]
    print(_table(f"circle, FiPy upwind, {scheme}, CFL 0.5, T = pi/2", circle))
    sphere = [rotation_error_sphere(h, implicit=implicit) for h in (0.2, 0.1, 0.05, 0.025)]
    print(_table(f"sphere, FiPy upwind on the one-cell shell, {scheme}, CFL 0.5, T = pi/2", sphere))


if __name__ == "__main__":  # pragma: no cover
    main()
