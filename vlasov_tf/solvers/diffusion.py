"""Diffusion on the grid: ``sigma Laplace`` of the cell density by face fluxes (noisy models).

The McKean-Vlasov equation ``d/dt rho + div(rho X) = sigma Laplace rho`` adds to every face of
the finite-volume scheme the diffusive flux, owner to neighbour,

    D_f = - sigma sum_q w_fq (d rho / d n)(x_fq),

with the normal derivative at the face's flux points the mean of the two cells' quadratic
polynomials (:meth:`~vlasov_tf.solvers.reconstruction.QuadraticReconstruction.normal_derivatives`,
unlimited; exact for quadratics, so O(h^2) per point). The transport and the diffusion fluxes
are added before the forward-Euler stage of SSP-RK3, so

- the scheme stays conservative (each face flux leaves one cell and enters the other);
- it stays positive: the stage's outflow scaling (``FiniteVolume.euler_step``) bounds the sum;
- one error control covers both (the embedded Heun solution sees the diffusion too);
- the step is explicit, bounded per cell by ``sigma sum_f L_f / delta_f`` (``delta_f`` the arc
  between the two cells' centres) added to the transport's outflow in the CFL bound
  (:meth:`Diffusion.outflow_rates`): the operator's spectral radius is within twice that rate
  (S^1 uniform: exactly twice, ``4 sigma / h^2``; level-0 S^2: 0.4 times), so SSP-RK3 is
  stable at CFL numbers <= 1.

The eigenvalues of the discrete operator approach ``-k^2`` (S^1) and ``-l (l + 1)`` (S^2) at
second order; tests/test_noise.py checks the heat equation's decay rates and the orders.

Design notes: docs/numerics.md §8 (noise).
"""

from __future__ import annotations

import numpy as np

from vlasov_tf.geometry.meshes import MeshGeometry, arc_length
from vlasov_tf.solvers.reconstruction import QuadraticReconstruction

__all__ = ["Diffusion"]


class Diffusion:
    """``sigma Laplace`` on one mesh (module docstring): fluxes (F, Q) at the reconstruction's face
    points, and each cell's diffusive outflow rate for the step bound.

    ``reconstruction``: the transport scheme's quadratic reconstruction when it has one (shared:
    the derivative bases are built once); otherwise one is built here.
    """

    def __init__(
        self, mesh: MeshGeometry, sigma: float, reconstruction: QuadraticReconstruction | None = None
    ) -> None:
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"the noise sigma must be finite and > 0; got {sigma}")
        self.mesh, self.sigma = mesh, float(sigma)
        self.reconstruction = reconstruction if reconstruction is not None else QuadraticReconstruction(mesh)
        own, nbr = mesh.face_cells[:, 0], mesh.face_cells[:, 1]
        coupling = mesh.face_lengths / arc_length(mesh.centres[own], mesh.centres[nbr])
        n = mesh.n_cells
        self._rates = self.sigma * (np.bincount(own, coupling, n) + np.bincount(nbr, coupling, n))

    def fluxes(self, rho: np.ndarray, coefficients: np.ndarray | None = None) -> np.ndarray:
        """(F, Q) diffusive fluxes owner -> neighbour at the face points for cell averages (C,)
        (``coefficients``: the reconstruction's of ``rho``, when the transport computed them)."""
        rec = self.reconstruction
        return (-self.sigma) * rec.weights * rec.normal_derivatives(rho, coefficients)

    def outflow_rates(self) -> np.ndarray:
        """(C,) ``sigma sum_{faces of c} L_f / delta_f``: the cell's share of the explicit step bound."""
        return self._rates
