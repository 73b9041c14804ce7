"""Orthographic views of S^2: projections, the visible cells of a mesh, the choice of view axis, and
one hemisphere drawn as a disc (:func:`draw_disc`).

The figures of :mod:`vlasov_tf.plots.run_figures` show the sphere as two discs, seen from +v and -v: no seam,
no singular pole, every cell in one of the two discs (:func:`visible_cells`), shapes and areas
true near the centre of a disc. This module is the geometry of those views (numpy) and their
drawing (matplotlib, imported when a disc is drawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from vlasov_tf.geometry.meshes import MeshGeometry

__all__ = [
    "PREFER_Z",
    "RIM_WIDTH",
    "choose_view",
    "draw_disc",
    "orthographic", "rim_mass", "view_basis", "visible_cells",
]

#: Width (in <x, v>, i.e. about radians) of the band around the rim whose mass :func:`choose_view`
#: keeps small.
RIM_WIDTH = 0.2
#: :func:`choose_view` keeps v = +z (the north pole at the centre of the first disc) unless another
#: axis has less mass near the rim by more than this fraction of the total mass.
PREFER_Z = 0.03


def view_basis(view: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, v): a right-handed orthonormal frame of the image plane seen from ``view``.

    ``v`` is the unit view direction (towards the viewer), ``up`` the projection of +z on the
    image plane (north up; +y when v = +-z), ``right = up x v``, so that ``right x up = v``:
    the sphere is seen from outside, not mirrored. ``view`` and ``-view`` share ``up``; their
    ``right`` are opposite.
    """
    v = np.asarray(view, dtype=float)
    v = v / np.linalg.norm(v)
    for axis in (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])):
        up = axis - (axis @ v) * v
        if np.linalg.norm(up) > 1e-6:
            break
    up /= np.linalg.norm(up)
    return np.cross(up, v), up, v


def orthographic(points: np.ndarray, view: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic projection of (n, 3) points seen from ``view``: (xy (n, 2), depth (n,)).

    ``xy`` are the coordinates on the image plane (:func:`view_basis`), inside the unit disc for
    points on the sphere; ``depth = <x, v>`` is >= 0 on the visible hemisphere. The projection
    is an isometry near the centre of the disc and squeezes radially towards the rim (a cap at
    angle a from v lands at radius sin a): nothing is cut, no pole or seam is singular.
    """
    right, up, v = view_basis(view)
    x = np.asarray(points, dtype=float)
    return np.column_stack([x @ right, x @ up]), x @ v


def visible_cells(mesh: MeshGeometry, view: Sequence[float] | np.ndarray) -> np.ndarray:
    """Indices of the cells whose centres face the viewer (``<centre, v> >= 0``).

    The cells of ``view`` and ``-view`` together are every cell of the mesh; a cell that
    straddles the rim is drawn whole, its far vertices projected just inside the rim, so the
    drawn triangles cover the disc without a gap.
    """
    _, _, v = view_basis(view)
    return np.flatnonzero(mesh.centres @ v >= 0)


def _fibonacci_hemisphere(n: int) -> np.ndarray:
    """(n, 3) nearly evenly spread unit vectors with z > 0 (a Fibonacci lattice, equal areas)."""
    i = np.arange(n) + 0.5
    z = i / n
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def rim_mass(
    points: np.ndarray, weights: np.ndarray, views: np.ndarray, width: float = RIM_WIDTH
) -> np.ndarray:
    """Mass near the rim of each view: ``sum_i w_i exp(-<x_i, v>^2 / (2 width^2))`` for (m, 3) ``views``."""
    c = np.asarray(points, dtype=float) @ np.atleast_2d(views).T
    return np.asarray(weights, dtype=float) @ np.exp(-0.5 * (c / width) ** 2)


def _subsample(
    points: np.ndarray, weights: np.ndarray, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` points drawn with probabilities ``weights`` (equal weights), or all of them."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if len(points) <= n:
        return points, w / w.sum()
    idx = np.random.default_rng(seed).choice(len(points), size=n, p=w / w.sum())
    return points[idx], np.full(n, 1.0 / n)


def choose_view(
    clouds: Sequence[tuple[np.ndarray, np.ndarray]], n_candidates: int = 400
) -> tuple[np.ndarray, str]:
    """The view axis v of the two discs (seen from +v and -v) and a phrase saying how it was chosen.

    ``clouds``: weighted point clouds (cell centres and masses, or tokens; :func:`crossval_figure`
    passes the density at T, when the clusters have formed). In orthographic view a cluster near
    the rim is squeezed into a sliver and split between the two discs, so v minimises the mass
    near the rim (:func:`rim_mass`, averaged over the clouds) among ``n_candidates`` nearly
    uniform axes. The north-south axis v = +z is kept (pole at the centre, north up in the other
    views) unless it has more than :data:`PREFER_Z` more mass near the rim than the best axis.
    The sign of v puts the larger mass in the +v disc.
    """
    sub = [_subsample(np.asarray(p, dtype=float), np.asarray(w, dtype=float), 4000) for p, w in clouds]
    z = np.array([0.0, 0.0, 1.0])
    cand = np.vstack([z, _fibonacci_hemisphere(n_candidates)])
    score = np.mean([rim_mass(p, w, cand) for p, w in sub], axis=0)
    best = int(np.argmin(score))
    if score[0] <= score[best] + PREFER_Z:
        return z, "+z (north pole)"
    v = cand[best]
    if np.mean([w @ (p @ v > 0) for p, w in sub]) < 0.5:
        v = -v
    return v, "the axis with the least mass near the rim"


def draw_disc(
    ax: Axes,
    mesh: MeshGeometry | None,
    rho: np.ndarray | None,
    view: np.ndarray,
    norm,
    tokens: np.ndarray | None,
    cmap: str = "viridis",
):
    """One hemisphere: the visible cells coloured by ``rho``, the visible tokens, the rim, equator, poles."""
    from matplotlib.patches import Circle

    pc = None
    if mesh is not None and rho is not None:
        cells = visible_cells(mesh, view)
        tri = mesh.cell_vertices[cells]
        used, inv = np.unique(tri.ravel(), return_inverse=True)
        xy, _ = orthographic(mesh.vertices[used], view)
        floor = norm.vmin if norm.vmin is not None else 0.0
        pc = ax.tripcolor(
            xy[:, 0],
            xy[:, 1],
            inv.reshape(tri.shape),
            facecolors=np.maximum(rho[cells], floor),
            norm=norm,
            cmap=cmap,
            edgecolors="none",
            antialiased=False,  # no hairline seams between the triangles
        )
    # Equator (dashed) and the poles, for orientation.
    phi = np.linspace(0.0, 2.0 * np.pi, 361)
    xy, depth = orthographic(np.column_stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)]), view)
    xy[depth < 0] = np.nan
    ax.plot(xy[:, 0], xy[:, 1], color="w", lw=0.6, ls="--", alpha=0.5)
    for pole, name in (((0.0, 0.0, 1.0), "N"), ((0.0, 0.0, -1.0), "S")):
        (pxy,), (pd,) = orthographic(np.array([pole]), view)
        if pd >= 0:
            ax.plot(*pxy, "+", color="w", ms=7, mew=1.0)
            ax.annotate(name, pxy, xytext=(3, 3), textcoords="offset points", color="w", fontsize=8)
    if tokens is not None:
        xy, depth = orthographic(tokens, view)
        xy = xy[depth >= 0]
        ax.plot(xy[:, 0], xy[:, 1], "o", mfc="#ff2020", mec="w", mew=0.25, ms=2.2, alpha=0.8)
    ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, lw=0.8, color="0.2"))
    ax.set_xlim(-1.04, 1.04)
    ax.set_ylim(-1.04, 1.04)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return pc
