"""Implicit diffusion on the grid (``[grid] diffusion = "implicit"``): TR-BDF2 on the assembled
operator, Strang-split around the transport's SSP-RK3.

The explicit diffusion (:mod:`vlasov_tf.solvers.diffusion`) bounds the step by ``~ h^2 / sigma``,
which falls below the transport's CFL step as the mesh is refined. Here the diffusion leaves the
transport's fluxes and its step bound, and one step of length ``dt`` is

    m <- D(dt/2) T(dt) D(dt/2) m        (Strang: second order in dt),

``T`` the transport's SSP-RK3 step with its error control unchanged (the controller sees the
transport's embedded estimate; the diffusion's own error is second order in the step the
transport takes, and ``max_dt`` caps it), ``D`` the TR-BDF2 solution of ``dm/dt = L m``:

- ``L`` (C, C) is the explicit scheme's operator, assembled once as a sparse matrix from the
  same fluxes (:func:`diffusion_matrix`: the diffusive face fluxes are linear in rho, through
  the quadratic polynomials' coefficients and their normal derivatives at the face points);
  its columns sum to zero (every face flux leaves one cell and enters the other);
- TR-BDF2 (gamma = 2 - sqrt 2; Bank et al. 1985, Hosea-Shampine 1996) is L-stable and second
  order, and both of its stages solve with the same matrix ``I - (gamma/2) dt L``. Each stage
  is written ``m_new = (known) + c dt L x`` with ``x`` the solver's solution, applied once more
  to ``L``: the stage's mass change is then ``c dt 1^T L x``, zero to round-off whatever the
  solver's residual;
- the solves are BiCGSTAB (hand-written: its dot products are all-reduced over the MPI ranks and
  its matrix products refresh the halo first, which scipy's Krylov solvers cannot do on a
  distributed vector), Jacobi-preconditioned, to the relative residual :data:`SOLVE_RTOL`. An
  incomplete LU (``scipy.sparse.linalg.spilu``) halves the iterations but costs 5x a Jacobi
  iteration per application plus 1-4 s of factorisation at level 3 (measured; docs/numerics.md
  §8), and a direct LU fills 740 (level 3) to 930 (level 4) entries a row: 76 s at level 4.
  Jacobi is also the same on any number of ranks, so serial and parallel runs differ only by
  the dot products' round-off (to about the tolerance, not bit for bit).

Positivity: neither TR-BDF2 nor the second-order operator (not an M-matrix) is positive for every
step (Bolley-Crouzeix: a linear method positive at every step is at most first order); at the
steps the transport takes the undershoot is measured in docs/numerics.md §8.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from scipy import sparse

from vlasov_tf.parallel import Reductions
from vlasov_tf.solvers.diffusion import Diffusion

__all__ = ["GAMMA", "SOLVE_RTOL", "ImplicitDiffusion", "diffusion_matrix"]

#: TR-BDF2's stage fraction: the trapezoidal and BDF2 stages then share one matrix.
GAMMA = 2.0 - np.sqrt(2.0)
#: BiCGSTAB's relative residual (2-norm over all ranks).
SOLVE_RTOL = 1e-10


def diffusion_matrix(diffusion: Diffusion) -> sparse.csr_matrix:
    """(C, C) ``L`` with ``dm/dt = L m`` for cell masses ``m``: exactly the explicit scheme's
    ``-div`` of :meth:`Diffusion.fluxes` of ``m / A`` (to round-off).

    The flux at face f is ``sum_k g_own[f, k] a_own,k + g_nbr[f, k] a_nbr,k`` with ``g = -sigma/2
    sum_q w_fq s_fqk`` (``s``: the monomials' normal slopes) and the coefficients ``a_c =
    coef_c (rho[stencil_c] - rho_c)``: ``L = -S G A diag(1/A_c)``, ``S`` the signed face-cell
    incidence. Columns sum to zero (conservation).
    """
    rec, mesh = diffusion.reconstruction, diffusion.mesh
    n, k, width = rec.coef.shape
    nf = mesh.n_faces
    own, nbr = mesh.face_cells[:, 0], mesh.face_cells[:, 1]
    # A: (C K, C), a.ravel() = A rho.
    rows = np.arange(n * k)
    cols = np.broadcast_to(rec.stencil[:, None, :], (n, k, width)).ravel()
    a_op = sparse.csr_matrix(
        (np.r_[rec.coef.ravel(), -rec.coef.sum(axis=2).ravel()],
         (np.r_[np.repeat(rows, width), rows], np.r_[cols, np.repeat(np.arange(n), k)])),
        shape=(n * k, n),
    )  # fmt: skip
    s_own, s_nbr = rec.normal_slopes()
    half = -0.5 * diffusion.sigma
    g_own = half * np.einsum("fq,fqk->fk", rec.weights, s_own)
    g_nbr = half * np.einsum("fq,fqk->fk", rec.weights, s_nbr)
    face = np.repeat(np.arange(nf), k)
    slot = np.arange(k)
    g_op = sparse.csr_matrix(
        (np.r_[g_own.ravel(), g_nbr.ravel()],
         (np.r_[face, face], np.r_[(own[:, None] * k + slot).ravel(), (nbr[:, None] * k + slot).ravel()])),
        shape=(nf, n * k),
    )  # fmt: skip
    ones, faces = np.ones(nf), np.arange(nf)
    incidence = sparse.csr_matrix((np.r_[ones, -ones], (np.r_[own, nbr], np.r_[faces, faces])), shape=(n, nf))
    return sparse.csr_matrix(-(incidence @ (g_op @ a_op)) @ sparse.diags(1.0 / mesh.areas))


class ImplicitDiffusion:
    """TR-BDF2 steps of ``dm/dt = L m`` (module docstring) on this rank's cells.

    ``diffusion``: the explicit scheme's operator on the (local) mesh; ``reductions``: the
    solver's (serial, or MPI: the first ``n_owned`` cells are this rank's, the rest halo);
    ``tolerances``: the step control's ``(rtol, atol)`` (None: fixed steps), which
    :meth:`strang` applies to the transport's change; ``rtol``: the solves' residual.
    ``iterations``: BiCGSTAB iterations so far (all solves); ``solves``: solves so far.
    """

    def __init__(
        self,
        diffusion: Diffusion,
        reductions: Reductions,
        tolerances: tuple[float, float] | None = None,
        rtol: float = SOLVE_RTOL,
    ) -> None:
        self.reductions, self.rtol, self.tolerances = reductions, rtol, tolerances
        n = reductions.n_owned
        # Only the owned rows are right under MPI (a halo cell's stencil is cut off).
        self.matrix = diffusion_matrix(diffusion)[:n]
        self._diagonal = self.matrix.diagonal()
        self._n_local = diffusion.mesh.n_cells
        self.iterations = 0
        self.solves = 0

    def scaled(self, factor: float) -> ImplicitDiffusion:
        """The same solver for ``factor`` times the noise (the matrix is linear in sigma): a
        benchmark's sigmas share one assembly."""
        out = copy.copy(self)
        out.matrix = self.matrix * factor
        out._diagonal = self._diagonal * factor
        out.iterations = out.solves = 0
        return out

    def apply(self, m: np.ndarray) -> np.ndarray:
        """(n_owned,) ``L m`` for (C_local,) masses with current halos."""
        return self.matrix @ m

    def strang(
        self, m: np.ndarray, dt: float, transport: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``D(dt/2) T(dt) D(dt/2) m`` and its embedded solution, for ``transport(m) = (new,
        embedded)`` one transport step of length ``dt``: the transport's error estimate
        ``new - embedded``, scaled so that the controller's test of it against the whole step's
        change is the transport's test against its own change (the transport's error control,
        unchanged)."""
        half = self.step(m, 0.5 * dt)
        new, low = transport(half)
        out = self.step(new, 0.5 * dt)
        error = new - low
        if self.tolerances is not None:
            # The controller weighs the error against the change of the whole step, which is
            # small where transport and diffusion balance (a stationary state: 17x the steps on
            # the noisy Kuramoto model, measured); weigh it against the transport's own change.
            rtol, atol = self.tolerances
            l1 = self.reductions.l1
            scale = atol * l1(m)
            error *= (scale + rtol * l1(out - m)) / (scale + rtol * l1(new - half))
        return out, out - error

    def step(self, m: np.ndarray, dt: float) -> np.ndarray:
        """(C_local,) masses after one TR-BDF2 step of length ``dt`` (halos refreshed)."""
        n, red = self.reductions.n_owned, self.reductions
        c = 0.5 * GAMMA * dt  # both stages' implicit coefficient
        # Trapezoidal stage to gamma dt: x = (I - c L)^-1 (m + c L m); m1 = m + c L (m + x).
        lm = self.apply(m)
        x = self._solve(m[:n] + c * lm, c)
        m1 = m.copy()
        m1[:n] = m[:n] + c * (lm + self.apply(x))
        red.exchange(m1)
        # BDF2 stage to dt: x = (I - c L)^-1 (w1 m1 - w0 m); m2 = w1 m1 - w0 m + c L x (w1 - w0 = 1).
        w1 = 1.0 / (GAMMA * (2.0 - GAMMA))
        w0 = (1.0 - GAMMA) ** 2 * w1
        known = w1 * m1[:n] - w0 * m[:n]
        x = self._solve(known, c)
        m2 = m1.copy()
        m2[:n] = known + c * self.apply(x)
        red.exchange(m2)
        return m2

    def _solve(self, rhs: np.ndarray, c: float) -> np.ndarray:
        """(C_local,) ``x`` (halos refreshed) with ``(I - c L) x = rhs`` on the owned cells, to the
        relative residual ``rtol``: right-preconditioned BiCGSTAB (van der Vorst 1992)."""
        n, red = self.reductions.n_owned, self.reductions
        inverse_diagonal = 1.0 / (1.0 - c * self._diagonal)

        def precondition(v: np.ndarray) -> np.ndarray:
            return inverse_diagonal * v

        full = np.zeros(self._n_local)

        def operator(v: np.ndarray) -> np.ndarray:
            full[:n] = v
            red.exchange(full)
            return v - c * (self.matrix @ full)

        def dot(a: np.ndarray, b: np.ndarray) -> float:
            # einsum, not BLAS: a threaded ddot spent 11 ms on 17k entries on a loaded machine.
            return red.sum(float(np.einsum("i,i->", a, b)))

        self.solves += 1
        x = rhs.copy()  # the change over a stage is small next to the masses
        r = rhs - operator(x)
        goal = self.rtol * np.sqrt(dot(rhs, rhs))
        r_hat, p, v = r.copy(), np.zeros(n), np.zeros(n)
        rho_old = alpha = omega = 1.0
        for _ in range(1000):
            if np.sqrt(dot(r, r)) <= goal:
                break
            self.iterations += 1
            rho_new = dot(r_hat, r)
            beta = (rho_new / rho_old) * (alpha / omega)
            p = r + beta * (p - omega * v)
            p_hat = precondition(p)
            v = operator(p_hat)
            alpha = rho_new / dot(r_hat, v)
            s = r - alpha * v
            s_hat = precondition(s)
            t = operator(s_hat)
            tt = dot(t, t)
            omega = dot(t, s) / tt if tt > 0 else 0.0
            x += alpha * p_hat + omega * s_hat
            r = s - omega * t
            rho_old = rho_new
            if omega == 0.0:
                break
        else:
            raise FloatingPointError(
                f"the implicit diffusion's solve did not converge in 1000 iterations (residual "
                f"{np.sqrt(dot(r, r)):.3g} > {goal:.3g})"
            )
        full[:n] = x
        red.exchange(full)
        return full.copy()
