"""Quadratic reconstruction of cell averages at the flux points of a mesh of S^1 or S^2.

The third-order finite-volume scheme of :class:`vlasov_tf.solvers.finite_volumes.FiniteVolume`
(``reconstruction="quadratic"``) reads the density at the Gauss points of every
face (:func:`vlasov_tf.geometry.quadrature.face_quadrature`) from a quadratic polynomial per cell:

- chart: on S^2 the gnomonic projection at the cell centre ``c``,
  ``xi(x) = (x . e_i / x . c) / h_c`` (``e_i`` an orthonormal basis of the tangent
  plane, ``h_c`` the square root of the cell's area), in which great circles are
  straight lines; on S^1 the angle from the centre over the cell's length;
- polynomial: ``p_c(x) = rho_c + sum_k a_ck (phi_k(xi(x)) - <phi_k>_c)`` with the
  monomials ``phi = (xi_1, xi_2, xi_1^2, xi_1 xi_2, xi_2^2)`` (S^1: ``xi, xi^2``)
  and ``<.>_j`` the mean over cell j (:func:`vlasov_tf.geometry.quadrature.cell_quadrature`):
  the cell's mean of ``p_c`` is ``rho_c`` whatever ``a``, so the scheme stays
  conservative;
- coefficients (k-exact least squares): ``a_c`` minimises
  ``sum_j w_j (<p_c>_j - rho_j)^2`` over the cells ``j`` sharing a vertex with
  ``c`` (about 12 on S^2, the two neighbours on S^1, where it is exact),
  ``w_j = 1 / |<xi>_j|^2`` (``1 / |<xi>_j|^6`` for ``distance_power=3``, the
  ``"quadratic-lowdiss"`` scheme: the nearest cells dominate, smaller face jumps). The means of
  every polynomial of degree 2 are then
  reproduced exactly, so point values are O(h^3) accurate and fluxes by the
  2-point Gauss rule O(h^3) per unit length.

``a`` is linear in the jumps ``rho_j - rho_c``: the (C, K, S) matrices are
built once. Stencils are ordered by the cells' positions, not their indices, so
that an MPI rank's sub-mesh (:class:`vlasov_tf.parallel.LocalMesh`) computes
the serial bits.

The limiter ``"positivity"`` (Zhang and Shu, J. Comput. Phys. 229, 2010) scales
a cell's polynomial towards its mean, ``rho_c + theta_c (p_c - rho_c)``, by the
largest ``theta_c`` in [0, 1] that keeps it non-negative at the cell's flux
points. It touches only cells whose polynomial dips below zero, so smooth
extrema (cluster peaks) keep their third order; the positivity of the update
then comes, as for the linear scheme, from the outflow scaling of
``FiniteVolume.euler_step``.

The same polynomials give the grid's third-order field measure (``field_measure =
"quadrature"``, :meth:`QuadraticReconstruction.point_masses`): each cell's mass split over the
points of :func:`vlasov_tf.geometry.quadrature.measure_quadrature` (2 per cell on S^1, 3 on S^2)
in proportion to the weight times the polynomial there. The polynomial is taken about the rule's
own mean (``phi_k - sum_p w_p phi_k(x_p)``: on S^1 the same polynomial, the rule being exact for
it; on S^2 a shift of O(h^3)), so the point masses of a cell sum to its mass exactly, and its
Zhang-Shu scaling at those points (always on: the kernel sums take weights >= 0) keeps every
point mass >= 0.

Design notes: docs/numerics.md §2.4-2.5.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.geometry.quadrature import cell_quadrature, face_quadrature, measure_quadrature

__all__ = ["QuadraticReconstruction", "vertex_neighbours"]


def vertex_neighbours(mesh: MeshGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Cells sharing a vertex with each cell: indices (C, S) padded with the cell itself, mask (C, S).

    Each row lists its neighbours in the lexicographic order of their centres (an order that does
    not depend on how the cells are numbered), padding last; S = 16 on S^2 unless a cell has
    more neighbours, 2 on S^1.
    """
    n = mesh.n_cells
    cv = mesh.cell_vertices
    rows = np.repeat(np.arange(n), cv.shape[1])
    incidence = sparse.csr_matrix((np.ones(cv.size), (rows, cv.ravel())), shape=(n, mesh.n_vertices))
    adjacency = (incidence @ incidence.T).tocoo()
    keep = adjacency.row != adjacency.col
    r, c = adjacency.row[keep], adjacency.col[keep]
    counts = np.bincount(r, minlength=n)
    # A fixed width where the counts allow it (16 on S^2, 2 on S^1): an MPI rank's sub-mesh then
    # pads its stencils as the whole mesh does, and its least squares give the same bits.
    width = max(int(counts.max()) if n else 0, 2 * (mesh.d - 1) ** 3)
    idx = np.repeat(np.arange(n)[:, None], width, axis=1)
    mask = np.arange(width)[None, :] < counts[:, None]
    order = np.argsort(r, kind="stable")
    idx[mask] = c[order]
    # Sort each row by the neighbours' centres (x, then y, then z); padding (inf) last.
    keys = np.where(mask[..., None], mesh.centres[idx], np.inf)
    perm = np.lexsort(tuple(keys[..., i] for i in reversed(range(mesh.d))), axis=-1)
    return np.take_along_axis(idx, perm, axis=1), np.take_along_axis(mask, perm, axis=1)


def _charts(centres: np.ndarray) -> np.ndarray:
    """(C, d, d) rows: the centre, then an orthonormal basis of the tangent plane there."""
    d = centres.shape[1]
    if d == 2:
        tangent = np.stack([-centres[:, 1], centres[:, 0]], axis=1)[:, None, :]
    else:
        # The coordinate axis least aligned with the centre, made tangent: a basis from the
        # position alone (the same on every rank).
        axis = np.eye(3)[np.argmin(np.abs(centres), axis=1)]
        e1 = axis - np.einsum("ci,ci->c", axis, centres)[:, None] * centres
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        tangent = np.stack([e1, np.cross(centres, e1)], axis=1)
    return np.concatenate([centres[:, None, :], tangent], axis=1)


#: The gnomonic chart holds within this angle of its centre (cos 80 degrees).
_CHART_COS = float(np.cos(np.radians(80.0)))


def _monomials(chart: np.ndarray, size: np.ndarray, x: np.ndarray) -> np.ndarray:
    """phi(xi(x)) (..., P, K) for points x (..., P, d), charts (..., d, d), cell sizes (...).

    S^1: xi is the angle from the centre (exact on the whole circle); S^2: the gnomonic
    coordinates, which need every point within 80 degrees of the centre (ValueError otherwise:
    a mesh too coarse for the quadratic reconstruction).
    """
    proj = np.einsum("...ij,...pj->...pi", chart, x)
    if proj.shape[-1] == 2:
        xi = np.arctan2(proj[..., 1:], proj[..., :1]) / size[..., None, None]
        return np.concatenate([xi, xi * xi], axis=-1)
    if not (proj[..., 0] > _CHART_COS).all():
        raise ValueError(
            "the quadratic reconstruction needs every cell's neighbours within 80 degrees of it: "
            "the mesh is too coarse (use reconstruction='linear')"
        )
    xi = proj[..., 1:] / (proj[..., :1] * size[..., None, None])
    x1, x2 = xi[..., 0], xi[..., 1]
    return np.stack([x1, x2, x1 * x1, x1 * x2, x2 * x2], axis=-1)


def _monomial_slopes(chart: np.ndarray, size: np.ndarray, x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(F, Q, K) derivatives of phi(xi(x)) along the unit tangents ``n`` (F, 1, d) at the points
    ``x`` (F, Q, d) on the sphere, for the charts (F, d, d) and sizes (F,) of :func:`_monomials`.

    With ``p = x . c``, ``q_i = x . e_i`` and their derivatives ``n . c``, ``n . e_i``: S^1,
    ``xi = atan2(q, p) / size``, ``d xi = (p dq - q dp) / ((p^2 + q^2) size)``; S^2 (gnomonic),
    ``xi_i = q_i / (p size)``, ``d xi_i = (p dq_i - q_i dp) / (p^2 size)``.
    """
    proj = np.einsum("fij,fqj->fqi", chart, x)
    dproj = np.einsum("fij,fqj->fqi", chart, np.broadcast_to(n, x.shape))
    p, q, dp, dq = proj[..., :1], proj[..., 1:], dproj[..., :1], dproj[..., 1:]
    scale = size[:, None, None]
    if proj.shape[-1] == 2:
        xi = np.arctan2(q, p) / scale
        dxi = (p * dq - q * dp) / ((p * p + q * q) * scale)
        return np.concatenate([dxi, 2 * xi * dxi], axis=-1)
    xi = q / (p * scale)
    dxi = (p * dq - q * dp) / (p * p * scale)
    x1, x2, d1, d2 = xi[..., 0], xi[..., 1], dxi[..., 0], dxi[..., 1]
    return np.stack([d1, d2, 2 * x1 * d1, d1 * x2 + x1 * d2, 2 * x2 * d2], axis=-1)


class QuadraticReconstruction:
    """The quadratic polynomials of a mesh's cells, evaluated at its face quadrature points.

    points (F, Q, d) and weights (F, Q): :func:`vlasov_tf.geometry.quadrature.face_quadrature` (read-only).
    ``face_values(rho, positive)`` gives the owner's and the neighbour's values there.
    """

    #: Cells per block while building (bounds the (block, S, Q, K) temporaries).
    BLOCK = 16384

    def __init__(self, mesh: MeshGeometry, distance_power: int = 1) -> None:
        """``distance_power``: the least-squares rows are weighted by ``1 / |<xi>_j|^power``
        (1: the landed scheme; 3: :data:`COMPACT_POWER`, nearer cells dominate the fit)."""
        self.mesh = mesh
        self.points, self.weights = face_quadrature(mesh)
        self.points.setflags(write=False)
        self.weights.setflags(write=False)
        self.stencil, mask = vertex_neighbours(mesh)
        cell_pts, cell_w = cell_quadrature(mesh)
        cell_w = cell_w / cell_w.sum(axis=1, keepdims=True)
        sizes = mesh.areas if mesh.d == 2 else np.sqrt(mesh.areas)
        charts = _charts(mesh.centres)
        n, width = self.stencil.shape
        k = 2 if mesh.d == 2 else 5
        self.coef = np.zeros((n, k, width))  # a_c = coef[c] @ (rho[stencil[c]] - rho_c)
        own_mean = np.zeros((n, k))
        for lo in range(0, n, self.BLOCK):
            sl = slice(lo, min(lo + self.BLOCK, n))
            ch, sz = charts[sl], sizes[sl]
            own_mean[sl] = np.einsum("cqk,cq->ck", _monomials(ch, sz, cell_pts[sl]), cell_w[sl])
            nb = self.stencil[sl]
            phi = _monomials(ch[:, None], sz[:, None], cell_pts[nb])  # (B, S, Q, K)
            means = np.einsum("csqk,csq->csk", phi, cell_w[nb]) - own_mean[sl, None, :]
            dist2 = np.einsum("csk,csk->cs", means[..., : mesh.d - 1], means[..., : mesh.d - 1])
            with np.errstate(divide="ignore"):
                # power 1 keeps the sqrt of the landed scheme, whose bits runs were checked against.
                inv = 1.0 / np.sqrt(dist2) if distance_power == 1 else dist2 ** (-0.5 * distance_power)
                w = np.where(mask[sl], inv, 0.0)  # rows of the weighted system
            self.coef[sl] = np.linalg.pinv(w[..., None] * means) * w[:, None, :]
        self._charts, self._sizes = charts, sizes
        self._slopes: tuple[np.ndarray, np.ndarray] | None = None
        self._measure: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        own, nbr = mesh.face_cells[:, 0], mesh.face_cells[:, 1]
        # (F, Q, K) each side: phi at the points minus the cell's mean of phi.
        self._basis_own = _monomials(charts[own], sizes[own], self.points) - own_mean[own][:, None, :]
        self._basis_nbr = _monomials(charts[nbr], sizes[nbr], self.points) - own_mean[nbr][:, None, :]

    def coefficients(self, rho: np.ndarray) -> np.ndarray:
        """(C, K) ``a_c`` of every cell's polynomial for cell averages ``rho`` (C,)."""
        return np.einsum("cks,cs->ck", self.coef, rho[self.stencil] - rho[:, None])

    def normal_derivatives(self, rho: np.ndarray, coefficients: np.ndarray | None = None) -> np.ndarray:
        """(F, Q) ``d p / d n`` at the face points, the mean of the owner's and the neighbour's
        unlimited polynomials (``n``: the face normal, owner to neighbour).

        Each side's derivative is O(h^2) accurate for a smooth density (its polynomial is exact
        for quadratics); the diffusion fluxes (:mod:`vlasov_tf.solvers.diffusion`) are these
        derivatives times the Gauss weights. The derivative bases are built at the first call.
        ``coefficients``: :meth:`coefficients` of ``rho`` when the caller has them already.
        """
        own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
        a = self.coefficients(rho) if coefficients is None else coefficients
        s_own, s_nbr = self.normal_slopes()
        return 0.5 * (np.einsum("fqk,fk->fq", s_own, a[own]) + np.einsum("fqk,fk->fq", s_nbr, a[nbr]))

    def normal_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """(F, Q, K) each: the normal derivatives at the face points of the owner's and of the
        neighbour's monomials (built at the first call; :meth:`normal_derivatives` reads them,
        the implicit diffusion assembles its matrix from them)."""
        if self._slopes is None:
            own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
            n = self.mesh.face_normals[:, None, :]
            self._slopes = (
                _monomial_slopes(self._charts[own], self._sizes[own], self.points, n),
                _monomial_slopes(self._charts[nbr], self._sizes[nbr], self.points, n),
            )
        return self._slopes

    def measure_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(C, P, d) points and (C, P) weights, each cell's summing to 1, where
        :meth:`point_masses` puts the mass (:func:`~vlasov_tf.geometry.quadrature.measure_quadrature`;
        read-only, built at the first call)."""
        return self._measure_rule()[:2]

    def _measure_rule(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._measure is None:
            points, weights = measure_quadrature(self.mesh)
            weights = weights / weights.sum(axis=1, keepdims=True)
            phi = _monomials(self._charts, self._sizes, points)  # (C, P, K)
            basis = phi - np.einsum("cpk,cp->ck", phi, weights)[:, None, :]
            for a in (points, weights, basis):
                a.setflags(write=False)
            self._measure = (points, weights, basis)
        return self._measure

    def point_masses(
        self, rho: np.ndarray, coefficients: np.ndarray | None = None, cells: int | None = None
    ) -> np.ndarray:
        """(n, P) masses ``A_c w_p p_c(x_p)`` at the :meth:`measure_points` of the first ``cells``
        cells (n; all by default) for cell averages ``rho`` (C,).

        Each row sums to ``A_c rho_c`` (the polynomial is taken about the rule's mean) and is >= 0:
        a cell whose polynomial dips below zero at its points is scaled towards its mean by the
        largest ``theta`` in [0, 1] that keeps them >= 0 (Zhang-Shu); a negative mean (round-off)
        counts as zero mass. O(h^3) accurate where the density is smooth and positive.
        """
        n = self.mesh.n_cells if cells is None else cells
        _, weights, basis = self._measure_rule()
        a = self.coefficients(rho) if coefficients is None else coefficients
        mean = np.maximum(rho[:n], 0.0)
        delta = np.einsum("cpk,ck->cp", basis[:n], a[:n])
        low = np.minimum((mean[:, None] + delta).min(axis=1), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = np.where(low < 0, mean / (mean - low), 1.0)
        values = np.maximum(mean[:, None] + theta[:, None] * delta, 0.0)
        return self.mesh.areas[:n, None] * weights[:n] * values

    def face_values(
        self, rho: np.ndarray, positive: bool = True, coefficients: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(owner side (F, Q), neighbour side (F, Q)) values at the face points; ``positive``:
        Zhang-Shu scaling of each cell's polynomial to non-negative values there."""
        own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
        a = self.coefficients(rho) if coefficients is None else coefficients
        d_own = np.einsum("fqk,fk->fq", self._basis_own, a[own])
        d_nbr = np.einsum("fqk,fk->fq", self._basis_nbr, a[nbr])
        if positive:
            low = np.zeros_like(rho)  # the most negative excursion rho_c + delta < 0 per cell
            np.minimum.at(low, own, (rho[own, None] + d_own).min(axis=1))
            np.minimum.at(low, nbr, (rho[nbr, None] + d_nbr).min(axis=1))
            with np.errstate(divide="ignore", invalid="ignore"):
                # A round-off negative mean (see FiniteVolume.euler_step) gets theta = 0.
                theta = np.where(low < 0, np.where(rho > 0, rho / (rho - low), 0.0), 1.0)
            d_own, d_nbr = theta[own, None] * d_own, theta[nbr, None] * d_nbr
            # theta puts the lowest value at zero up to round-off (-1e-21): make it zero.
            return np.maximum(rho[own, None] + d_own, 0.0), np.maximum(rho[nbr, None] + d_nbr, 0.0)
        return rho[own, None] + d_own, rho[nbr, None] + d_nbr
