"""Quadrature rules on the cells and faces of a mesh: what the third-order scheme integrates with.

Cells: Gauss-Legendre with 6 nodes in the angle on S^1 (degree 11); Radon's 7-point rule (degree
5, positive weights) on each flat triangle of S^2, projected radially onto the sphere with its
surface element. Faces: 2-point Gauss-Legendre along each great-circle edge (degree 3). The
grid's field measure (``field_measure = "quadrature"``): 2-point Gauss-Legendre in the angle on
S^1 (degree 3), the 3-point rule of degree 2 on each triangle of S^2 (positive weights).

Design notes: docs/numerics.md §2.4.
"""

from __future__ import annotations

import math

import numpy as np

from vlasov_tf.geometry.measures import normalize
from vlasov_tf.geometry.meshes import MeshGeometry, arc_length

__all__ = ["cell_quadrature", "face_quadrature", "measure_quadrature"]


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
# The 3-point rule of degree 2 (Strang and Fix): the midpoints of the medians' inner halves, equal
# weights; the fewest points of a positive rule of degree 2.
_TRI3_BARY = np.array([[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
_TRI3_W = np.full(3, 1 / 3)


def cell_quadrature(mesh: MeshGeometry) -> tuple[np.ndarray, np.ndarray]:
    """A positive quadrature rule on every true cell: points (C, Q, d) on the manifold, weights (C, Q).

    S^1: Gauss-Legendre with 6 nodes in the angle (degree 11, Q = 6). S^2: Radon's 7-point rule
    (degree 5) on each flat triangle, projected radially onto the sphere with the surface element
    ``h / |p|^3 dA`` (``h`` the distance of the flat triangle's plane from the origin), Q = 7.
    The weights of a cell sum to its measure up to the rule's error (O(h^12), O(h^6) relative):
    divide by their sum for averages that are exact for constants.
    """
    return _cell_rule(mesh, (_GL6_X, _GL6_W), (_TRI_BARY, _TRI_W))


def measure_quadrature(mesh: MeshGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The fewest-point positive rule of degree >= 2 on every cell: points (C, Q, d), weights (C, Q).

    What the grid's field sums its measure at (``field_measure = "quadrature"``): S^1, 2-point
    Gauss-Legendre in the angle (degree 3, Q = 2); S^2, the 3-point rule of degree 2 on each flat
    triangle, projected as in :func:`cell_quadrature` (Q = 3). Degree 2 is what third order needs:
    the quadrature error of a smooth integrand is then O(h^3) over the sphere.
    """
    return _cell_rule(mesh, (_GL2_X, np.full(2, 0.5)), (_TRI3_BARY, _TRI3_W))


def _cell_rule(
    mesh: MeshGeometry, line: tuple[np.ndarray, np.ndarray], triangle: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A rule on [0, 1] (nodes, weights) along each circle cell, or a rule on the triangle
    (barycentric nodes (Q, 3), weights summing to 1) projected onto each sphere cell."""
    if mesh.kind == "circle":
        nodes, weights = line
        # A cell runs counter-clockwise from its first vertex over an arc of length areas[c].
        start = mesh.vertices[mesh.cell_vertices[:, 0]]
        t = np.arctan2(start[:, 1], start[:, 0])[:, None] + mesh.areas[:, None] * nodes
        return np.stack([np.cos(t), np.sin(t)], axis=-1), mesh.areas[:, None] * weights
    bary, weights = triangle
    tri = mesh.vertices[mesh.cell_vertices]  # (C, 3 vertices, 3)
    p = np.einsum("qk,ckj->cqj", bary, tri)  # (C, Q, 3) nodes on the flat triangles
    r = np.linalg.norm(p, axis=-1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flat_area = 0.5 * np.linalg.norm(normal, axis=1)
    h = np.abs(np.einsum("ci,ci->c", normal, tri[:, 0])) / (2 * flat_area)
    return p / r[..., None], weights * (flat_area * h)[:, None] / r**3


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
    angle = arc_length(a, b)[:, None, None]
    s = _GL2_X[None, :, None]
    # slerp: sin((1 - s) w) a + sin(s w) b, over sin w
    pts = (np.sin((1 - s) * angle) * a[:, None] + np.sin(s * angle) * b[:, None]) / np.sin(angle)
    return normalize(pts), 0.5 * mesh.face_lengths[:, None] * np.ones(2)
