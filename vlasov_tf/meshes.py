"""Finite-volume mesh geometry on the circle S^1 and the sphere S^2.

One structure, :class:`MeshGeometry`, serves both manifolds: C cells with
centres on the manifold and their true measures, F faces, each shared by an
owner and a neighbour cell (the manifolds are closed: no boundary faces), with
a midpoint, a length and a unit normal tangent to the manifold pointing from
owner to neighbour. A finite-volume update of cell masses m_c is then

    dm_c/dt = - sum_{f owned by c} u_f L_f + sum_{f neighbouring c} u_f L_f,
    u_f = (velocity at the face midpoint) . n_f,

which conserves the total mass exactly (each face flux enters twice, with
opposite signs).

Circle: :func:`circle_mesh` (numpy, the cells of FiPy's ``PeriodicGrid1D``).
Sphere: geodesic triangles. Level 0 is a gmsh surface mesh (``meshes/sphere.geo``,
built through FiPy, 1080 triangles); level k + 1 splits every triangle of level k
into four by its edge midpoints projected to the sphere (:func:`refine_sphere`), so
the levels are *nested*: cell ``4 c + j`` (j = 0..3) of level k + 1 lies in cell
``c`` of level k and the four tile it exactly (geodesic edges), which lets finer
masses be summed into coarser cells (:func:`coarsen_masses`). Each level is
written once to ``meshes/sphere_L{level}.h5`` by :func:`build_sphere_mesh`
(``vlasov-tf mesh --level K``) and read back by :func:`load_mesh` /
:func:`sphere_mesh`, which import neither FiPy nor gmsh: FiPy refuses to import
under ``mpiexec`` with more than one rank, so parallel runs load the files.

Geometry on S^2, for a triangle with vertices a, b, c (unit vectors, ordered
counter-clockwise seen from outside):

- area: the spherical excess E of the geodesic triangle (Van Oosterom-Strackee)
  ``tan(E/2) = |a.(b x c)| / (1 + a.b + b.c + c.a)``; the triangles tile the
  sphere, so the areas sum to 4 pi up to rounding;
- centre: the direction of int_T x dsigma. The divergence theorem applied to
  the tangent fields P_x e (div_S P_x e = -2 <e, x>) gives it exactly:
  ``int_T x dsigma = 1/2 sum_{edges p->q} arc(p, q) (p x q) / |p x q|``;
- a face (edge a-b, a great-circle arc): midpoint ``(a + b) / |a + b|``,
  length ``arc(a, b) = 2 arcsin(|a - b| / 2)`` (accurate for short edges,
  unlike arccos(a.b)), normal ``+-(a x b) / |a x b|``. This normal is
  tangent to the sphere and perpendicular to the arc at every point of the
  arc, so the outward flux of a field through a geodesic cell is exactly
  ``sum_f int_f v . n_f ds``: no curvature error in the face normals.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .measures import normalize

__all__ = [
    "FORMAT_VERSION",
    "MESHES_ENV",
    "SPHERE_COMMITTED_LEVELS",
    "SPHERE_LC0",
    "SPHERE_LEVEL0_CELLS",
    "SPHERE_LEVELS",
    "MeshGeometry",
    "build_sphere_mesh",
    "cell_quadrature",
    "circle_mesh",
    "coarsen_masses",
    "face_quadrature",
    "fipy_sphere_surface",
    "load_mesh",
    "mesh_quality",
    "meshes_dir",
    "refine_sphere",
    "save_mesh",
    "sphere_char_length",
    "sphere_geo",
    "sphere_geometry",
    "sphere_mesh",
    "sphere_mesh_path",
    "write_gmsh",
]

#: Version of the HDF5 layout written by :func:`save_mesh`; :func:`load_mesh` refuses others.
FORMAT_VERSION = 1
#: Environment variable naming the directory of the mesh files (overrides ``<repo>/meshes``).
MESHES_ENV = "VLASOV_TF_MESHES"
#: gmsh characteristic length of sphere level 0; each level halves the edges (4x the cells).
SPHERE_LC0 = 0.18
#: The nested refinement ladder: 1080, 4320, 17280, 69120, 276480, 1105920 cells.
SPHERE_LEVELS = (0, 1, 2, 3, 4, 5)
#: Levels whose files are committed under meshes/ (small); the others are built on demand.
SPHERE_COMMITTED_LEVELS = (0, 1, 2)
#: Cells of level 0 (the gmsh mesh); level K has 4^K times as many.
SPHERE_LEVEL0_CELLS = 1080

# The repository's meshes/ (an editable install), else the levels 0-2 a wheel carries in the package.
_REPO_MESHES = next(
    (
        d
        for d in (
            Path(__file__).resolve().parents[1] / "meshes",
            Path(__file__).parent / "shipped" / "meshes",
        )
        if d.is_dir()
    ),
    Path(__file__).parent / "shipped" / "meshes",
)
_GEO_NAME = "sphere.geo"
_ARRAYS = (
    "vertices",
    "cell_vertices",
    "centres",
    "areas",
    "face_cells",
    "face_midpoints",
    "face_lengths",
    "face_normals",
)
_INT_ARRAYS = frozenset({"cell_vertices", "face_cells"})
_MEASURE = {"circle": 2 * np.pi, "sphere": 4 * np.pi}
_DIM = {"circle": 2, "sphere": 3}
# Normalised vectors are unit to a few ulps; anything looser than this is a wrong file.
_UNIT_ATOL = 1e-12
_MEASURE_RTOL = 1e-10


@dataclass(frozen=True, eq=False)
class MeshGeometry:
    """Finite-volume geometry of a closed mesh of S^1 (d = 2) or S^2 (d = 3) in R^d.

    Arrays (read-only; C cells, F faces, V vertices):

    - ``vertices`` (V, d): mesh vertices on the manifold (on S^1: the face points);
    - ``cell_vertices`` (C, d) int64: a cell's vertices (S^1: its two ends in
      increasing angle; S^2: a triangle, counter-clockwise seen from outside);
    - ``centres`` (C, d): cell centres on the manifold (S^2: the direction of
      the centroid int_T x dsigma; S^1: the arc's mid-angle);
    - ``areas`` (C,): cell measures on the manifold, summing to 2 pi / 4 pi;
    - ``face_cells`` (F, 2) int64: owner and neighbour of each face;
    - ``face_midpoints`` (F, d): on the manifold (S^1: the face point itself);
    - ``face_lengths`` (F,): geodesic arc length of the edge (S^2); 1 on S^1;
    - ``face_normals`` (F, d): unit, tangent at the midpoint, normal to the
      face, pointing from owner to neighbour.

    ``level`` is the sphere refinement level (None for a circle),
    ``char_length`` the gmsh characteristic length (S^1: the cell arc length),
    ``source`` the file it came from (for error messages).
    """

    kind: str
    level: int | None
    char_length: float
    vertices: np.ndarray
    cell_vertices: np.ndarray
    centres: np.ndarray
    areas: np.ndarray
    face_cells: np.ndarray
    face_midpoints: np.ndarray
    face_lengths: np.ndarray
    face_normals: np.ndarray
    source: str = "<memory>"

    def __post_init__(self) -> None:
        # Read-only arrays: a loaded mesh may be shared by solvers, none may edit it.
        for name in _ARRAYS:
            dtype = np.int64 if name in _INT_ARRAYS else np.float64
            arr = np.array(getattr(self, name), dtype=dtype, order="C")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def d(self) -> int:
        """Dimension of the ambient space: 2 (circle) or 3 (sphere)."""
        return _DIM[self.kind]

    @property
    def n_cells(self) -> int:
        return len(self.areas)

    @property
    def n_faces(self) -> int:
        return len(self.face_cells)

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def measure(self) -> float:
        """Length of S^1 (2 pi) or area of S^2 (4 pi)."""
        return float(_MEASURE[self.kind])

    @property
    def h(self) -> float:
        """Mesh size: the cell arc length on S^1, sqrt(mean cell area) on S^2."""
        mean = self.measure / self.n_cells
        return float(mean if self.kind == "circle" else np.sqrt(mean))

    def net_outflow(self, face_flux: np.ndarray) -> np.ndarray:
        """(C,) sum over a cell's faces of the outward flux, from (F,) fluxes owner -> neighbour."""
        own, nbr = self.face_cells[:, 0], self.face_cells[:, 1]
        return np.bincount(own, face_flux, self.n_cells) - np.bincount(nbr, face_flux, self.n_cells)

    def check(self) -> MeshGeometry:
        """Validate the geometry; return ``self``, or raise ``ValueError`` naming the problem and source."""

        def fail(problem: str) -> None:
            raise ValueError(f"mesh {self.source} ({self.kind}): {problem}")

        if self.kind not in _DIM:
            fail(f"kind must be 'circle' or 'sphere', got {self.kind!r}")
        d, c, f, v = self.d, len(self.areas), len(self.face_cells), len(self.vertices)
        shapes = {
            "vertices": (v, d),
            "cell_vertices": (c, d),
            "centres": (c, d),
            "areas": (c,),
            "face_cells": (f, 2),
            "face_midpoints": (f, d),
            "face_lengths": (f,),
            "face_normals": (f, d),
        }
        for name, shape in shapes.items():
            arr = getattr(self, name)
            if arr.shape != shape:
                fail(f"{name} has shape {arr.shape}, expected {shape} (C={c}, F={f}, V={v}, d={d})")
            if not np.isfinite(arr).all():
                fail(f"{name} has non-finite values")
        if c < 2 or f < 2:
            fail(f"too small a mesh: {c} cells, {f} faces")

        for name in ("vertices", "centres", "face_midpoints"):
            dev = np.abs(np.linalg.norm(getattr(self, name), axis=1) - 1.0)
            if dev.max() > _UNIT_ATOL:
                i = int(np.argmax(dev))
                fail(f"{name}[{i}] is off the unit sphere by {dev[i]:.2e}")

        if not (self.areas > 0).all():
            i = int(np.argmin(self.areas))
            fail(f"cell {i} has area {self.areas[i]:.3g} <= 0")
        total = float(self.areas.sum())
        if abs(total / self.measure - 1) > _MEASURE_RTOL:
            fail(
                f"cell areas sum to {total!r}, not {self.measure!r} (relative {total / self.measure - 1:.2e})"
            )
        if not (self.face_lengths > 0).all():
            fail(f"face {int(np.argmin(self.face_lengths))} has length <= 0")

        for name, n in (("face_cells", c), ("cell_vertices", v)):
            idx = getattr(self, name)
            if idx.min() < 0 or idx.max() >= n:
                fail(f"{name} has indices outside [0, {n}): min {idx.min()}, max {idx.max()}")
        own, nbr = self.face_cells[:, 0], self.face_cells[:, 1]
        if (own == nbr).any():
            fail(f"face {int(np.flatnonzero(own == nbr)[0])} has the same owner and neighbour")
        faces_per_cell = np.bincount(own, minlength=c) + np.bincount(nbr, minlength=c)
        if faces_per_cell.min() < 2:
            fail(f"cell {int(np.argmin(faces_per_cell))} has {faces_per_cell.min()} faces (< 2)")

        n, m = self.face_normals, self.face_midpoints
        dev = np.abs(np.linalg.norm(n, axis=1) - 1.0)
        if dev.max() > _UNIT_ATOL:
            fail(f"face normal {int(np.argmax(dev))} is not unit (| |n| - 1 | = {dev.max():.2e})")
        tan = np.abs(np.einsum("fi,fi->f", n, m))
        if tan.max() > _UNIT_ATOL:
            fail(
                f"face normal {int(np.argmax(tan))} is not tangent at its midpoint (|n.m| = {tan.max():.2e})"
            )
        side = np.einsum("fi,fi->f", n, self.centres[nbr] - self.centres[own])
        if not (side > 0).all():
            fail(f"face normal {int(np.argmin(side))} does not point from owner to neighbour")

        # Euler characteristic: V - E + C = 2 on S^2; on S^1 vertices, faces and cells are as many.
        if self.kind == "sphere" and v - f + c != 2:
            fail(f"V - E + F = {v} - {f} + {c} = {v - f + c}, not 2: not a closed triangulation of S^2")
        if self.kind == "circle" and not v == f == c:
            fail(f"a circle mesh needs as many vertices, faces and cells; got V={v}, F={f}, C={c}")
        return self


def circle_mesh(M: int) -> MeshGeometry:
    """M equal arcs of S^1: FiPy's ``PeriodicGrid1D(nx=M, dx=2 pi / M)`` in the angle.

    Cell j is centred at angle (j + 1/2) 2 pi / M; face j sits at angle
    j 2 pi / M, between cells j - 1 (owner) and j (neighbour), cyclically, with
    normal the unit tangent (-sin t, cos t) (the direction of increasing angle).
    """
    if isinstance(M, bool) or not isinstance(M, int | np.integer) or M < 2:
        raise ValueError(f"a circle mesh needs an integer M >= 2 cells; got {M!r}")
    M = int(M)
    step = 2 * np.pi / M
    tc = (np.arange(M) + 0.5) * step
    tf = np.arange(M) * step
    j = np.arange(M)
    points = np.stack([np.cos(tf), np.sin(tf)], axis=1)
    return MeshGeometry(
        kind="circle",
        level=None,
        char_length=step,
        vertices=points,
        cell_vertices=np.stack([j, (j + 1) % M], axis=1),
        centres=np.stack([np.cos(tc), np.sin(tc)], axis=1),
        areas=np.full(M, step),
        face_cells=np.stack([(j - 1) % M, j], axis=1),
        face_midpoints=points,
        face_lengths=np.ones(M),
        face_normals=np.stack([-np.sin(tf), np.cos(tf)], axis=1),
        source=f"circle_mesh({M})",
    ).check()


# Gauss-Legendre on [0, 1]: 6 nodes for cells (degree 11), 2 for faces (degree 3).
_GL6_X, _GL6_W = np.polynomial.legendre.leggauss(6)
_GL6_X, _GL6_W = 0.5 * (_GL6_X + 1.0), 0.5 * _GL6_W
_GL2_X = np.array([0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0)])
# Radon's 7-point rule on a triangle (degree 5, positive weights): barycentric coordinates, weights.
_S15 = math.sqrt(15.0)
_A1, _B1 = (6 - _S15) / 21, (9 + 2 * _S15) / 21
_A2, _B2 = (6 + _S15) / 21, (9 - 2 * _S15) / 21
_TRI_BARY = np.array(
    [
        [1 / 3, 1 / 3, 1 / 3],
        [_A1, _A1, _B1],
        [_A1, _B1, _A1],
        [_B1, _A1, _A1],
        [_A2, _A2, _B2],
        [_A2, _B2, _A2],
        [_B2, _A2, _A2],
    ]
)
_TRI_W = np.array([9 / 40] + [(155 - _S15) / 1200] * 3 + [(155 + _S15) / 1200] * 3)


def cell_quadrature(mesh: MeshGeometry) -> tuple[np.ndarray, np.ndarray]:
    """A positive quadrature rule on every true cell: points (C, Q, d) on the manifold, weights (C, Q).

    S^1: Gauss-Legendre with 6 nodes in the angle (degree 11, Q = 6). S^2: Radon's 7-point rule
    (degree 5) on each flat triangle, projected radially onto the sphere with the surface element
    ``h / |p|^3 dA`` (``h`` the distance of the flat triangle's plane from the origin), Q = 7.
    The weights of a cell sum to its measure up to the rule's error (O(h^12), O(h^6) relative):
    divide by their sum for averages that are exact for constants.
    """
    if mesh.kind == "circle":
        # A cell runs counter-clockwise from its first vertex over an arc of length areas[c].
        start = mesh.vertices[mesh.cell_vertices[:, 0]]
        t = np.arctan2(start[:, 1], start[:, 0])[:, None] + mesh.areas[:, None] * _GL6_X
        return np.stack([np.cos(t), np.sin(t)], axis=-1), mesh.areas[:, None] * _GL6_W
    tri = mesh.vertices[mesh.cell_vertices]  # (C, 3 vertices, 3)
    p = np.einsum("qk,ckj->cqj", _TRI_BARY, tri)  # (C, 7, 3) nodes on the flat triangles
    r = np.linalg.norm(p, axis=-1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flat_area = 0.5 * np.linalg.norm(normal, axis=1)
    h = np.abs(np.einsum("ci,ci->c", normal, tri[:, 0])) / (2 * flat_area)
    return p / r[..., None], _TRI_W * (flat_area * h)[:, None] / r**3


def face_quadrature(mesh: MeshGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Points (F, Q, d) on every face and weights (F, Q) summing to its length.

    S^1: the face point, weight 1 (Q = 1). S^2: 2-point Gauss-Legendre in arc length along the
    great-circle edge between the two vertices its cells share (degree 3, Q = 2, weights L/2);
    the face normal is the same at every point of a great-circle edge.
    """
    if mesh.kind == "circle":
        return mesh.face_midpoints[:, None, :].copy(), mesh.face_lengths[:, None].copy()
    cv = mesh.cell_vertices[mesh.face_cells]  # (F, 2 cells, 3 vertices)
    shared = (cv[:, 0, :, None] == cv[:, 1, None, :]).any(axis=2)  # (F, 3) vertices of the owner
    if not (shared.sum(axis=1) == 2).all():
        raise ValueError(f"{mesh.source}: a face whose two cells do not share exactly two vertices")
    ends = mesh.vertices[cv[:, 0][shared].reshape(-1, 2)]  # (F, 2, 3)
    a, b = ends[:, 0], ends[:, 1]
    angle = _arc(a, b)[:, None, None]
    s = _GL2_X[None, :, None]
    # slerp: sin((1 - s) w) a + sin(s w) b, over sin w
    pts = (np.sin((1 - s) * angle) * a[:, None] + np.sin(s * angle) * b[:, None]) / np.sin(angle)
    return normalize(pts), 0.5 * mesh.face_lengths[:, None] * np.ones(2)


def _arc(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Great-circle distance between unit vectors (..., 3); the chord form keeps short arcs accurate."""
    return 2 * np.arcsin(np.minimum(np.linalg.norm(p - q, axis=-1) / 2, 1.0))


def _theta_minus_sin(theta: np.ndarray) -> np.ndarray:
    """theta - sin(theta) without cancellation: its Taylor series below 0.5 (terms to theta^15)."""
    t2 = theta * theta
    series = np.zeros_like(theta)
    for n in range(7, 0, -1):  # Horner in theta^2 of sum_{n>=1} (-1)^(n+1) theta^(2n+1) / (2n+1)!
        series = (-1) ** (n + 1) / math.factorial(2 * n + 1) + t2 * series
    series *= t2 * theta
    return np.where(theta < 0.5, series, theta - np.sin(theta))


def sphere_geometry(
    vertices: np.ndarray,
    triangles: np.ndarray,
    *,
    level: int | None = None,
    char_length: float = float("nan"),
    source: str = "<memory>",
) -> MeshGeometry:
    """Geometry of the geodesic triangulation of S^2 on ``vertices`` (V, 3) and ``triangles`` (C, 3).

    Vertices are projected on the sphere; triangles are reoriented
    counter-clockwise seen from outside. Faces are ordered by (owner,
    neighbour), owner < neighbour. Raises ``ValueError`` if the triangles do
    not form a closed, consistently orientable surface (every edge shared by
    exactly two triangles traversing it in opposite directions).
    """
    x = normalize(np.asarray(vertices, dtype=float))
    tri = np.array(triangles, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3 or tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"{source}: need vertices (V, 3) and triangles (C, 3); got {x.shape}, {tri.shape}")
    n_vertices = len(x)
    triple = np.einsum("ci,ci->c", x[tri[:, 0]], np.cross(x[tri[:, 1]], x[tri[:, 2]]))
    if (triple == 0).any():
        raise ValueError(f"{source}: triangle {int(np.flatnonzero(triple == 0)[0])} is degenerate")
    tri[triple < 0] = tri[triple < 0][:, ::-1]
    p = x[tri]  # (C, 3 vertices, 3)
    q = np.roll(p, -1, axis=1)  # the next vertex: edges p -> q run counter-clockwise

    dots = np.einsum("cki,cki->ck", p, q)
    areas = 2 * np.arctan2(np.abs(triple), 1 + dots.sum(axis=1))
    # int_T x dsigma = 1/2 sum_k (theta_k / sin theta_k) p_k x q_k. The sum is O(h^2) while its terms
    # are O(h): split off the flat part sum_k p_k x q_k = (b - a) x (c - a), computed from differences
    # without cancellation, so that the centres carry errors ~eps / h rather than ~eps / h^2.
    theta = _arc(p, q)
    sin_theta = np.sin(theta)
    flat = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    curved = np.einsum("ck,cki->ci", _theta_minus_sin(theta) / sin_theta, np.cross(p, q))
    centres = normalize(flat + curved)

    # Half-edges: h = 3 c + k runs from tri[c, k] to tri[c, k+1]; a closed oriented
    # surface pairs each with exactly one reversed twin in another triangle.
    start = tri.ravel()
    end = np.roll(tri, -1, axis=1).ravel()
    key = np.minimum(start, end) * n_vertices + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    pairs = order.reshape(-1, 2) if len(order) % 2 == 0 else None
    sk = key[order]
    if (
        pairs is None
        or (sk[0::2] != sk[1::2]).any()
        or (sk[2::2] == sk[1:-1:2]).any()
        or (start[pairs[:, 0]] != end[pairs[:, 1]]).any()
    ):
        raise ValueError(
            f"{source}: the triangles are not a closed oriented surface (an edge is not shared by exactly "
            "two triangles traversing it in opposite directions)"
        )
    cells = pairs // 3
    own, nbr = cells.min(axis=1), cells.max(axis=1)
    ends = np.stack([start[pairs[:, 0]], end[pairs[:, 0]]], axis=1)
    face_order = np.lexsort((nbr, own))
    own, nbr, ends = own[face_order], nbr[face_order], ends[face_order]
    a, b = x[ends[:, 0]], x[ends[:, 1]]
    normals = normalize(np.cross(a, b))
    normals *= np.sign(np.einsum("fi,fi->f", normals, centres[nbr] - centres[own]))[:, None]
    return MeshGeometry(
        kind="sphere",
        level=level,
        char_length=char_length,
        vertices=x,
        cell_vertices=tri,
        centres=centres,
        areas=areas,
        face_cells=np.stack([own, nbr], axis=1),
        face_midpoints=normalize(a + b),
        face_lengths=_arc(a, b),
        face_normals=normals,
        source=source,
    ).check()


def refine_sphere(mesh: MeshGeometry, *, source: str = "<memory>") -> MeshGeometry:
    """The next nested level: every geodesic triangle split into four by its edge midpoints.

    Triangle ``c = (a, b, c)`` (counter-clockwise) gives cells ``4c`` = (a, m_ab, m_ca),
    ``4c + 1`` = (m_ab, b, m_bc), ``4c + 2`` = (m_ca, m_bc, c) and ``4c + 3`` = (m_ab, m_bc, m_ca),
    with ``m_pq = (p + q) / |p + q|`` the midpoint of the great-circle arc (shared by the two
    triangles of the edge). The children's geodesic edges lie on the parent's, so they tile it
    exactly: their areas add up to the parent's to round-off. Vertices: the parent's first,
    then one per edge.
    """
    if mesh.kind != "sphere":
        raise ValueError(f"refine_sphere needs a sphere mesh, got a {mesh.kind} mesh ({mesh.source})")
    tri = mesh.cell_vertices
    n_v = mesh.n_vertices
    ends = np.stack([tri, np.roll(tri, -1, axis=1)], axis=2)  # (C, 3, 2): edges ab, bc, ca
    keys = np.minimum(ends[..., 0], ends[..., 1]) * n_v + np.maximum(ends[..., 0], ends[..., 1])
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    mid = n_v + inverse.reshape(-1, 3)  # vertex index of m_ab, m_bc, m_ca per triangle
    lo, hi = unique // n_v, unique % n_v
    vertices = np.r_[mesh.vertices, normalize(mesh.vertices[lo] + mesh.vertices[hi])]
    a, b, c = tri.T
    m_ab, m_bc, m_ca = mid.T
    children = np.stack(
        [
            np.stack([a, m_ab, m_ca], axis=1),
            np.stack([m_ab, b, m_bc], axis=1),
            np.stack([m_ca, m_bc, c], axis=1),
            np.stack([m_ab, m_bc, m_ca], axis=1),
        ],
        axis=1,
    ).reshape(-1, 3)
    level = None if mesh.level is None else mesh.level + 1
    return sphere_geometry(vertices, children, level=level, char_length=0.5 * mesh.char_length, source=source)


def coarsen_masses(masses: np.ndarray, fine: MeshGeometry, coarse: MeshGeometry) -> np.ndarray:
    """Cell masses of ``fine`` summed into the cells of the nested ``coarse`` mesh: (..., C_coarse).

    Sphere: ``fine`` a refinement of ``coarse`` (levels of one ladder, cell ``4c + j`` in ``c``);
    circle: ``circle_mesh(M)`` into ``circle_mesh(M')`` with ``M' | M``. ``masses`` (..., C_fine).
    """
    masses = np.asarray(masses, dtype=float)
    ratio, rem = divmod(fine.n_cells, coarse.n_cells)
    nested = fine.kind == coarse.kind and rem == 0 and masses.shape[-1] == fine.n_cells
    if nested and fine.kind == "sphere":
        nested = (
            fine.level is not None and coarse.level is not None and ratio == 4 ** (fine.level - coarse.level)
        )
    if not nested:
        raise ValueError(
            f"{fine.source} ({fine.n_cells} cells) is not a nested refinement of {coarse.source} "
            f"({coarse.n_cells} cells)"
        )
    return masses.reshape(*masses.shape[:-1], coarse.n_cells, ratio).sum(axis=-1)


def mesh_quality(mesh: MeshGeometry) -> dict[str, float]:
    """Shape of a sphere mesh's cells: area ratio and the angles of the geodesic triangles.

    ``area_ratio`` = largest / smallest cell area; ``min_angle``, ``max_angle`` in degrees, the
    angles between the great-circle edges at each vertex (they sum to pi + area per cell).
    """
    if mesh.kind != "sphere":
        raise ValueError("mesh_quality is for sphere meshes")
    p = mesh.vertices[mesh.cell_vertices]  # (C, 3, 3)
    angles = []
    for k in range(3):
        v, prev, nxt = p[:, k], p[:, k - 1], p[:, (k + 1) % 3]
        # Tangents at v of the arcs to the two other vertices: the component orthogonal to v.
        t1 = nxt - np.einsum("ci,ci->c", nxt, v)[:, None] * v
        t2 = prev - np.einsum("ci,ci->c", prev, v)[:, None] * v
        cos = np.einsum("ci,ci->c", t1, t2) / (np.linalg.norm(t1, axis=1) * np.linalg.norm(t2, axis=1))
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    ang = np.concatenate(angles)
    return {
        "area_ratio": float(mesh.areas.max() / mesh.areas.min()),
        "min_angle": float(ang.min()),
        "max_angle": float(ang.max()),
    }


def sphere_char_length(level: int) -> float:
    """gmsh characteristic length of sphere ``level``: ``SPHERE_LC0 / 2**level``."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or level < 0:
        raise ValueError(f"sphere mesh level must be an integer >= 0; got {level!r}")
    return SPHERE_LC0 / 2 ** int(level)


def meshes_dir() -> Path:
    """Directory of the mesh files: ``$VLASOV_TF_MESHES`` if set, else ``meshes/`` of the repository,
    else (a non-editable install) the levels 0-2 inside the package; finer levels are refined from
    them on first use and kept there if it is writable, else in memory."""
    env = os.environ.get(MESHES_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{MESHES_ENV}={env!r} is not a directory")
        return path
    if not _REPO_MESHES.is_dir():
        raise FileNotFoundError(
            f"the meshes directory {_REPO_MESHES} does not exist (neither the repository's meshes/ nor "
            f"the copy an installed package carries); set {MESHES_ENV} to the directory that holds the "
            "sphere_L*.h5 files"
        )
    return _REPO_MESHES


def sphere_mesh_path(level: int, directory: str | os.PathLike | None = None) -> Path:
    """``<directory>/sphere_L{level}.h5``; ``directory`` defaults to :func:`meshes_dir`."""
    sphere_char_length(level)  # validates the level
    return Path(directory if directory is not None else meshes_dir()) / f"sphere_L{int(level)}.h5"


def sphere_mesh(level: int) -> MeshGeometry:
    """Load (and check) the sphere mesh of ``level`` from :func:`meshes_dir`; no FiPy, no gmsh.

    A missing level above 0 is refined from the levels below it (numpy only, seconds: level 5
    in ~7 s) and written to the directory for the next run when it is writable; level 0 (the
    gmsh mesh, committed) must exist.
    """
    path = sphere_mesh_path(level)
    if path.is_file() or int(level) == 0 or not sphere_mesh_path(0).is_file():
        return _nested(load_mesh(path), int(level))
    if os.access(path.parent, os.W_OK):
        return _nested(load_mesh(build_sphere_mesh(level, path.parent)), int(level))
    mesh = load_mesh(sphere_mesh_path(0))
    for k in range(1, int(level) + 1):
        below = sphere_mesh_path(k)
        mesh = load_mesh(below) if below.is_file() else refine_sphere(mesh, source=f"{below} (in memory)")
    return _nested(mesh, int(level))


def _nested(mesh: MeshGeometry, level: int) -> MeshGeometry:
    """``mesh`` if it has the cell count of ``level`` of the nested ladder, else a ValueError: a file
    from before the levels were nested (gmsh meshed every level) would compare wrongly."""
    want = SPHERE_LEVEL0_CELLS * 4**level
    if level > 0 and mesh.n_cells != want:
        raise ValueError(
            f"mesh file {mesh.source} has {mesh.n_cells} cells, level {level} of the nested ladder has "
            f"{want}: it was built by an older version (which meshed every level with gmsh). Delete it: "
            f"it is rebuilt from level 0 on first use (or `vlasov-tf mesh --level {level}`)"
        )
    return mesh


def _build_hint(path: Path) -> str:
    match = re.fullmatch(r"sphere_L(\d+)\.h5", path.name)
    level = match.group(1) if match else "K"
    where = "" if path.parent.resolve() == _REPO_MESHES else f" (with {MESHES_ENV}={path.parent})"
    return f"build it with `vlasov-tf mesh --level {level}`{where}"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over name, dtype, shape and little-endian bytes of each array, in ``_ARRAYS`` order."""
    digest = hashlib.sha256()
    for name in _ARRAYS:
        arr = np.ascontiguousarray(arrays[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def save_mesh(mesh: MeshGeometry, path: str | os.PathLike, **attrs: str | float | int) -> Path:
    """Write ``mesh`` (checked first) to the HDF5 file ``path`` atomically; return the path.

    One gzip-compressed dataset per array; attributes ``format_version``,
    ``kind``, ``level`` (-1 for none), ``n_cells``, ``n_faces``,
    ``n_vertices``, ``char_length``, ``sha256`` (see :func:`load_mesh`) and
    ``attrs``. The file appears under its name only once complete.
    """
    mesh.check()
    path = Path(path)
    arrays = {name: getattr(mesh, name) for name in _ARRAYS}
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": mesh.kind,
        "level": -1 if mesh.level is None else int(mesh.level),
        "n_cells": mesh.n_cells,
        "n_faces": mesh.n_faces,
        "n_vertices": mesh.n_vertices,
        "char_length": float(mesh.char_length),
        "sha256": _checksum(arrays),
        **attrs,
    }
    # Not mkstemp: its 0600 mode would outlive os.replace; h5py creates the file under the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # track_times=False: rebuilding an unchanged mesh rewrites identical bytes (quiet git diffs).
        with h5py.File(tmp, "w", track_order=True) as f:
            for name, arr in arrays.items():
                f.create_dataset(
                    name,
                    data=arr,
                    chunks=(min(len(arr), 1 << 16), *arr.shape[1:]),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                    track_times=False,
                )
            f.attrs.update(meta)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def load_mesh(path: str | os.PathLike) -> MeshGeometry:
    """Read a mesh file written by :func:`save_mesh`, verify its checksum and geometry.

    Raises ``FileNotFoundError`` for a missing file (saying how to build it)
    and ``ValueError`` for an unreadable or truncated file, another format
    version, a missing dataset, a checksum mismatch or a failed
    :meth:`MeshGeometry.check`.
    """
    path = Path(path)
    hint = _build_hint(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist; {hint}")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            missing = [name for name in _ARRAYS if name not in f]
            if missing:
                raise ValueError(f"mesh file {path}: dataset(s) {', '.join(missing)} missing; {hint}")
            arrays = {name: f[name][()] for name in _ARRAYS}
    except OSError as err:
        raise ValueError(f"mesh file {path} is unreadable (truncated or corrupted?): {err}; {hint}") from err

    absent = [k for k in ("format_version", "kind", "level", "char_length", "sha256") if k not in attrs]
    if absent:
        raise ValueError(f"mesh file {path}: attribute(s) {', '.join(absent)} missing; {hint}")
    if attrs["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"mesh file {path} has format version {attrs['format_version']}, this code reads "
            f"{FORMAT_VERSION}; {hint}"
        )
    for name, arr in arrays.items():
        want = np.int64 if name in _INT_ARRAYS else np.float64
        if arr.dtype != want:
            raise ValueError(
                f"mesh file {path}: dataset {name} has dtype {arr.dtype}, expected {np.dtype(want)}"
            )
    if _checksum(arrays) != attrs["sha256"]:
        raise ValueError(
            f"mesh file {path}: checksum mismatch (the arrays differ from those written: corrupted or "
            f"edited); {hint}"
        )
    level = int(attrs["level"])
    mesh = MeshGeometry(
        kind=str(attrs["kind"]),
        level=None if level < 0 else level,
        char_length=float(attrs["char_length"]),
        source=str(path),
        **arrays,
    )
    return mesh.check()


@contextlib.contextmanager
def _gmsh_on_path() -> Iterator[None]:
    """Put the interpreter's bin directory (where the gmsh wheel installs ``gmsh``) first on PATH.

    FiPy runs ``gmsh`` from PATH, and a venv's bin is not on PATH when Python is
    started by its full path.
    """
    old = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable), old) if p)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = old


def _merge_coincident(x: np.ndarray, tri: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices and merge those closer than ``tol`` (patch seams)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    used, tri = np.unique(tri, return_inverse=True)
    x = x[used]
    tri = tri.reshape(-1, 3)
    pairs = cKDTree(x).query_pairs(tol, output_type="ndarray")
    if len(pairs):
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(x), len(x)))
        _, label = connected_components(graph, directed=False)
        first = np.unique(label, return_index=True)[1]
        x, tri = x[first], label[tri]
    return x, tri


def _fipy_triangles(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) vertex coordinates and (C, 3) triangles of a FiPy 2D-in-3D mesh, from its faces."""
    x = np.asarray(mesh.vertexCoords, dtype=float).T
    face_vertices = np.ma.getdata(mesh.faceVertexIDs).T.astype(np.int64)  # (F, 2)
    cell_faces = mesh.cellFaceIDs  # (3, C) for triangles
    if cell_faces.shape[0] != 3 or np.ma.getmaskarray(cell_faces).any():
        raise ValueError(
            f"the gmsh mesh is not made of triangles only (cells with {cell_faces.shape[0]} faces)"
        )
    cell_faces = np.ma.getdata(cell_faces).T.astype(np.int64)
    a, b = face_vertices[cell_faces[:, 0]].T
    e = face_vertices[cell_faces[:, 1]]
    third = np.where((e[:, 0] != a) & (e[:, 0] != b), e[:, 0], e[:, 1])
    tri = np.stack([a, b, third], axis=1)
    if ((tri[:, 0] == tri[:, 1]) | (tri[:, 1] == tri[:, 2]) | (tri[:, 0] == tri[:, 2])).any():
        raise ValueError("the gmsh mesh has degenerate triangles")
    return x, tri


def _find_geo(directory: Path) -> Path:
    for candidate in (directory / _GEO_NAME, _REPO_MESHES / _GEO_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"gmsh source {_GEO_NAME} not found in {directory} nor in {_REPO_MESHES}")


def sphere_geo(char_length: float, directory: str | os.PathLike | None = None) -> str:
    """The gmsh source ``meshes/sphere.geo`` with its characteristic length set to ``char_length``."""
    if not (np.isfinite(char_length) and char_length > 0):
        raise ValueError(f"the characteristic length must be finite and > 0; got {char_length}")
    directory = Path(directory) if directory is not None else meshes_dir()
    return f"lc = {float(char_length)!r};\n" + _find_geo(directory).read_text()


def fipy_sphere_surface(geo: str):  # -> (fipy.Gmsh2DIn3DSpace, gmsh version)
    """Mesh ``geo`` (gmsh ``.geo`` text, or the path of a ``.geo``/``.msh`` file) with gmsh through
    ``fipy.Gmsh2DIn3DSpace`` (serial; needs FiPy and gmsh).

    The one place FiPy meets gmsh: the mesh builder and the FiPy baseline
    (:mod:`vlasov_tf.fipy_baseline`) both mesh through it, so they share triangles.
    """
    with _gmsh_on_path():
        import fipy
        from fipy.meshes.gmshMesh import gmshVersion

        version = gmshVersion()
        if not version:
            raise RuntimeError(
                f"gmsh executable not found on PATH (looked first in {os.path.dirname(sys.executable)})"
            )
        return fipy.Gmsh2DIn3DSpace(geo), version


def build_sphere_mesh(level: int, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<directory>/sphere_L{level}.h5``; return its path.

    Level 0: ``meshes/sphere.geo`` meshed with characteristic length ``SPHERE_LC0`` by
    ``fipy.Gmsh2DIn3DSpace`` (needs FiPy and gmsh, serial only); its vertices, projected on
    the sphere, and triangles give the geometry (:func:`sphere_geometry`). Level k >= 1:
    :func:`refine_sphere` of level k - 1, loaded from the same directory (and built first
    if missing); numpy only. Files are written atomically.
    """
    lc = sphere_char_length(level)
    directory = Path(directory) if directory is not None else meshes_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = sphere_mesh_path(level, directory)
    if level > 0:
        parent_path = sphere_mesh_path(level - 1, directory)
        if not parent_path.is_file():
            build_sphere_mesh(level - 1, directory)
        parent = load_mesh(parent_path)
        mesh = refine_sphere(parent, source=f"{path} (being built)")
        return save_mesh(
            mesh,
            path,
            parent_sha256=str(_file_checksum(parent_path)),
            built_by="vlasov_tf.meshes.refine_sphere",
        )
    geo = sphere_geo(lc, directory)
    fmesh, version = fipy_sphere_surface(geo)
    import fipy

    x, tri = _fipy_triangles(fmesh)
    # gmsh writes coordinates with ~17 digits; seam duplicates (if any) are closer than this.
    x, tri = _merge_coincident(x, tri, tol=1e-3 * lc)
    mesh = sphere_geometry(x, tri, level=0, char_length=lc, source=f"{path} (being built)")
    return save_mesh(
        mesh,
        path,
        gmsh_version=str(version),
        fipy_version=str(fipy.__version__),
        geo=geo,
        built_by="vlasov_tf.meshes.build_sphere_mesh",
    )


def _file_checksum(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return str(f.attrs["sha256"])


def write_gmsh(mesh: MeshGeometry, path: str | os.PathLike) -> Path:
    """Write a sphere mesh's vertices and triangles as a gmsh MSH 2.2 ASCII file (for FiPy's reader).

    Node and element numbers are 1-based; each triangle is element type 2 with one physical
    and one elementary tag (1), in the mesh's cell order.
    """
    if mesh.kind != "sphere":
        raise ValueError("write_gmsh is for sphere meshes")
    path = Path(path)
    nodes = np.c_[np.arange(1, mesh.n_vertices + 1), mesh.vertices]
    elems = np.c_[
        np.arange(1, mesh.n_cells + 1),
        np.full((mesh.n_cells, 4), [2, 2, 1, 1]),
        mesh.cell_vertices + 1,
    ]
    with open(path, "w") as f:
        f.write("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n")
        f.write(f"$Nodes\n{mesh.n_vertices}\n")
        np.savetxt(f, nodes, fmt=["%d", "%.17g", "%.17g", "%.17g"])
        f.write(f"$EndNodes\n$Elements\n{mesh.n_cells}\n")
        np.savetxt(f, elems, fmt="%d")
        f.write("$EndElements\n")
    return path
