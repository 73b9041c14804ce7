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
masses be summed into coarser cells (:func:`coarsen_masses`). The levels' files
(``meshes/sphere_L{level}.h5``: built, written, loaded, checked) are
:mod:`vlasov_tf.geometry.mesh_files`; the cells' and faces' quadrature rules
:mod:`vlasov_tf.geometry.quadrature`.

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

Design notes: docs/numerics.md §2.1; docs/design.md §7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlasov_tf.geometry.measures import normalize
from vlasov_tf.memory import BYTES_PER_CIRCLE_CELL, BYTES_PER_SPHERE_CELL, check_memory

__all__ = [
    "INTEGER_ARRAYS",
    "MESH_ARRAYS",
    "SPHERE_LC0",
    "SPHERE_LEVEL0_CELLS",
    "SPHERE_LEVELS",
    "MeshGeometry",
    "PhaseMesh",
    "arc_length",
    "circle_mesh",
    "coarsen_masses",
    "mesh_quality",
    "refine_sphere",
    "sphere_char_length",
    "sphere_geometry",
]

#: gmsh characteristic length of sphere level 0; each level halves the edges (4x the cells).
SPHERE_LC0 = 0.18
#: The nested refinement ladder: 1080, 4320, 17280, 69120, 276480, 1105920 cells.
SPHERE_LEVELS = (0, 1, 2, 3, 4, 5)
#: Cells of level 0 (the gmsh mesh); level K has 4^K times as many.
SPHERE_LEVEL0_CELLS = 1080

#: The arrays of a :class:`MeshGeometry` (the fields a mesh file stores).
MESH_ARRAYS = (
    "vertices",
    "cell_vertices",
    "centres",
    "areas",
    "face_cells",
    "face_midpoints",
    "face_lengths",
    "face_normals",
)
#: Those of them that hold indices.
INTEGER_ARRAYS = frozenset({"cell_vertices", "face_cells"})
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
        for name in MESH_ARRAYS:
            dtype = np.int64 if name in INTEGER_ARRAYS else np.float64
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

        normals, mids = self.face_normals, self.face_midpoints
        dev = np.abs(np.linalg.norm(normals, axis=1) - 1.0)
        if dev.max() > _UNIT_ATOL:
            fail(f"face normal {int(np.argmax(dev))} is not unit (| |n| - 1 | = {dev.max():.2e})")
        tan = np.abs(np.einsum("fi,fi->f", normals, mids))
        if tan.max() > _UNIT_ATOL:
            fail(
                f"face normal {int(np.argmax(tan))} is not tangent at its midpoint (|n.m| = {tan.max():.2e})"
            )
        side = np.einsum("fi,fi->f", normals, self.centres[nbr] - self.centres[own])
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
    check_memory(M * BYTES_PER_CIRCLE_CELL, f"circle_mesh({M}): {M} cells")
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


def arc_length(p: np.ndarray, q: np.ndarray) -> np.ndarray:
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
    theta = arc_length(p, q)
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
        face_lengths=arc_length(a, b),
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
    check_memory(4 * mesh.n_cells * BYTES_PER_SPHERE_CELL, f"refine_sphere: {4 * mesh.n_cells} cells")
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




@dataclass(frozen=True)
class PhaseMesh:
    """The phase space S^1 x [-V, V] as a run file stores it: ``n_theta`` x ``n_v`` quadrilaterals in
    the (theta, v) plane, theta in [0, 2 pi] (the seam at 0 = 2 pi drawn twice), cell ``i n_v + j``
    the ``(i, j)`` cell of :class:`~vlasov_tf.solvers.kinetic_grid.PhaseGrid` (row-major, as its
    arrays flatten). The four arrays a run file keeps of a mesh, and its name fields; no faces
    (the kinetic grid's fluxes are its own)."""

    n_theta: int
    n_v: int
    V: float

    kind = "phase"
    level = None

    @property
    def char_length(self) -> float:
        return 2 * np.pi / self.n_theta

    @property
    def source(self) -> str:
        return f"phase_mesh({self.n_theta}, {self.n_v}, {self.V!r})"

    @property
    def vertices(self) -> np.ndarray:
        """((n_theta + 1)(n_v + 1), 2) points (theta, v), row-major in theta."""
        th = np.linspace(0.0, 2 * np.pi, self.n_theta + 1)
        v = np.linspace(-self.V, self.V, self.n_v + 1)
        return np.stack(np.meshgrid(th, v, indexing="ij"), axis=-1).reshape(-1, 2)

    @property
    def cell_vertices(self) -> np.ndarray:
        """(n_theta n_v, 4) counter-clockwise in the (theta, v) plane."""
        i, j = np.meshgrid(np.arange(self.n_theta), np.arange(self.n_v), indexing="ij")
        w = self.n_v + 1
        corners = [i * w + j, (i + 1) * w + j, (i + 1) * w + j + 1, i * w + j + 1]
        return np.stack([c.ravel() for c in corners], axis=1).astype(np.int64)

    @property
    def centres(self) -> np.ndarray:
        """(n_theta n_v, 2) cell centres (theta, v)."""
        return self.vertices[self.cell_vertices].mean(axis=1)

    @property
    def areas(self) -> np.ndarray:
        """(n_theta n_v,) ``dtheta dv``."""
        return np.full(self.n_theta * self.n_v, (2 * np.pi / self.n_theta) * (2 * self.V / self.n_v))

    @property
    def n_cells(self) -> int:
        return self.n_theta * self.n_v
