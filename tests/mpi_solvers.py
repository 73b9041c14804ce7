"""Solver runs for tests/test_parallel.py: ``mpiexec -n P python tests/mpi_solvers.py OUT [serial]``.

With ``serial`` it runs the same problems without a communicator. Rank 0 saves
every result to the npz file OUT. Problems: a general two-block schedule
(random B, V, a perceptron) on the S^2 grid, a zonal head on S^2 by spectral
sums, a zonal head on a uniform circle grid (FFT serially, the spectral or dense
sums under MPI), a prescribed rotation on S^2,
a resume from the serial run's middle snapshot, the three particle
integrators on a general two-block schedule, and an interaction model (spectral and
dense zonal sums) and a user's model (the measure gathered) on the grid and for tokens, and a
noisy interaction model on the grid (both reconstructions) and for tokens; the grid's quadrature
field measure (dense and spectral sums); ``field_accuracy = "flux"`` (its budget binding at beta =
1000) and a row budget's cut-off alone.
"""

import sys

import numpy as np

from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.kernels.zonal import ExpDifference, Exponential
from vlasov_tf.models.attention import Head, Params, Perceptron, Schedule
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.particles import solve_particles


class Kuramoto:
    """A user's model: identical Lohe oscillators, X = K P_x int y dmu (it sums the whole measure)."""

    d = 3

    def __init__(self, K: float) -> None:
        self.K = K

    def velocity(self, t, points, weights, queries):
        m = self.K * (weights @ points)
        return m - (queries @ m)[:, None] * queries


def schedule(rng: np.random.Generator, d: int, scale: float = 1.0) -> Schedule:
    W, U = rng.normal(size=(d, 4)), rng.normal(size=(4, d))
    general = Params(
        heads=(Head(B=2.0 * scale * rng.normal(size=(d, d)), V=scale * rng.normal(size=(d, d))),),
        perceptron=Perceptron(W=scale * W, U=U, b=rng.normal(size=4)),
    )
    return Schedule(((0.1, general), (0.1, Params.identity(d, 3.0))))


def ring_error(comm, rng: np.random.Generator) -> float:
    """Largest per-row error of RingSums against the dense sum over uneven blocks: rank 1's block
    is empty, the last rank's (P >= 3) has zero weights, and every rank has its own queries."""
    y = uniform_sphere(301, 3, rng)
    w = rng.random(301)
    queries = uniform_sphere(90, 3, rng)
    B = 3.0 * rng.normal(size=(3, 3))
    if comm is None:
        return 0.0
    from mpi4py import MPI

    from vlasov_tf.kernels import exp_kernel_sums
    from vlasov_tf.parallel import RingSums

    p, r = comm.size, comm.rank
    blocks = np.array_split(np.arange(301), p)
    if p >= 2:
        blocks[0], blocks[1] = np.r_[blocks[0], blocks[1]], blocks[1][:0]
    if p >= 3:
        w[blocks[-1]] = 0.0
    q = np.array_split(queries, p)[r]
    mine = blocks[r]
    shift, sums = RingSums(comm).dense(q @ B.T, y[mine], w[mine], y[mine])
    d_shift, dense = exp_kernel_sums(q @ B.T, y, w, y)
    err = (np.abs(sums * np.exp(shift - d_shift)[:, None] - dense) / dense[:, -1:]).max(initial=0.0)
    return comm.allreduce(float(err), op=MPI.MAX)


def budget_allocation(comm, rng: np.random.Generator) -> np.ndarray:
    """The rows a RowBudget serves (kernels/row_tolerance.py), 4000 rows of random needs and
    weights (some of no weight, some of no normaliser) split unevenly over the ranks: the cut-off
    from the histogram summed over the ranks, the serial run's exactly (rank 0 gathers)."""
    from vlasov_tf.kernels.row_tolerance import RowBudget

    n = 4000
    norm = np.where(rng.random(n) < 0.02, -1.0, rng.uniform(0.5, 2.0, n))
    err = 10.0 ** rng.uniform(-13, 0, n)
    c = np.where(rng.random(n) < 0.05, 0.0, rng.exponential(1.0, n))
    budget = RowBudget(c, 1e-3, np.full(n, 1e-10))
    if comm is None:
        return np.isinf(budget.allocate(norm, err, 1e-10))
    from vlasov_tf.parallel import RingSums

    # Rank r holds a block of size proportional to r + 1.
    edges = np.r_[0, n * np.cumsum(np.arange(1, comm.size + 1)) // (comm.size * (comm.size + 1) // 2)]
    rows = np.arange(edges[comm.rank], edges[comm.rank + 1])
    mine = RowBudget(c[rows], budget.budget, budget.row_tol[rows])
    served = np.isinf(mine.allocate(norm[rows], err[rows], 1e-10, split=RingSums(comm)))
    parts = comm.gather((rows, served), root=0)
    out = np.zeros(n, dtype=bool)
    for r, s in parts or []:
        out[r] = s
    return out


def main() -> None:
    out, serial = sys.argv[1], sys.argv[2:] == ["serial"]
    comm = None
    if not serial:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    rng = np.random.default_rng(7)
    res: dict[str, np.ndarray] = {}
    times = [0.0, 0.1, 0.2]

    sphere = sphere_mesh(0)
    rho0 = np.exp(2.0 * sphere.centres[:, 2] + sphere.centres[:, 0])
    sched = schedule(rng, 3)
    res["grid_general"] = solve_grid(sphere, rho0, sched, t_eval=times, comm=comm).densities
    res["grid_resumed"] = solve_grid(
        sphere,
        np.load(out.replace(".npz", "_mid.npy")) if not serial else rho0,
        sched,
        t_eval=times,
        t0=0.1 if not serial else 0.0,
        comm=comm,
    ).densities[-1:]

    # Zonal heads on S^2: spectral sums, their coefficients summed over the ranks; with the
    # mass in a cap, some faces need the dense fix-up (the ring).
    cap = np.exp(10.0 * (sphere.centres[:, 2] - 1.0))
    res["grid_spectral"] = solve_grid(
        sphere, cap, Schedule.constant(Params.identity(3, 6.0), 0.2), field_method="spectral", comm=comm
    ).densities

    # A general head (no zonal structure): the spectral sums with Chebyshev nodes in |B x|.
    # field_accuracy = "flux": the budget's weights from the owners' exchanged bounds, its sum
    # over the ranks (each face on its owner cell's rank); rows served beyond tol clipped with the
    # values' bound over every rank.
    tight = np.exp(40.0 * (sphere.centres[:, 2] - 1.0)) + np.exp(40.0 * (sphere.centres[:, 0] - 1.0))
    res["grid_flux_accuracy"] = solve_grid(
        sphere, tight, Schedule.constant(Params.identity(3, 20.0), 0.1), field_method="spectral", comm=comm,
        field_accuracy="flux",
    ).densities  # fmt: skip
    # At beta = 1000 the budget binds on this coarse mesh (40% of the flux points fixed up at t = 0,
    # the rest served beyond tol): the cut-off from the histogram summed over the ranks.
    # Fixed steps: the rows the budget serves beyond tol carry the expansion's round-off, which
    # depends on how the keys are split over the ranks; under error control that may move the
    # controller's step choice (at beta = 100 under the first budget, tol M: on 4 ranks 10 field
    # evaluations instead of 7, 1.5e-8 apart, the time-stepping error), while the fluxes themselves
    # agree to round-off.
    res["grid_flux_budget"] = solve_grid(
        sphere, tight, Schedule.constant(Params.identity(3, 1000.0), 0.05), field_method="spectral",
        comm=comm, field_accuracy="flux", rtol=None, max_dt=0.005,
    ).densities  # fmt: skip
    res["grid_general_spectral"] = solve_grid(
        sphere, rho0, sched, t_eval=times, comm=comm, field_method="spectral"
    ).densities

    circle = circle_mesh(256)
    t = np.arctan2(circle.centres[:, 1], circle.centres[:, 0])
    zonal = Schedule.constant(Params.identity(2, 4.0), 0.3)
    res["grid_circle"] = solve_grid(circle, 1.0 + 0.5 * np.cos(t), zonal, comm=comm).densities

    axis = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    res["grid_rotation"] = solve_grid(sphere, rho0, lambda _t, x: np.cross(axis, x), 0.5, comm=comm).densities
    # The third-order scheme: vertex-neighbour stencils reach the second halo layer.
    res["grid_rotation_quadratic"] = solve_grid(
        sphere, cap, lambda _t, x: np.cross(axis, x), 0.5, comm=comm, reconstruction="quadratic"
    ).densities
    # The low-dissipation variant: its own weights and flux, the same stencils.
    res["grid_rotation_lowdiss"] = solve_grid(
        sphere, cap, lambda _t, x: np.cross(axis, x), 0.5, comm=comm, reconstruction="quadratic-lowdiss"
    ).densities
    res["grid_general_quadratic"] = solve_grid(
        sphere, rho0, sched, t_eval=times, comm=comm, reconstruction="quadratic"
    ).densities

    # The quadrature field measure: each rank sums the points of its owned cells (the ring, or the
    # spectral coefficients summed over the ranks), their masses from the vertex-halo stencils.
    res["grid_quadrature_measure"] = solve_grid(
        sphere, rho0, sched, t_eval=times, comm=comm, field_measure="quadrature"
    ).densities
    res["grid_quadrature_spectral"] = solve_grid(
        sphere, cap, Schedule.constant(Params.identity(3, 6.0), 0.2), field_method="spectral", comm=comm,
        field_measure="quadrature",
    ).densities  # fmt: skip

    x0 = uniform_sphere(300, 3, rng)
    w0 = rng.random(300)
    sched = schedule(rng, 3, scale=0.3)  # a gentle field: DOP853 at rtol 1e-11 in a few hundred steps
    for method, steps in (("layers", 12), ("rk4", 6), ("adaptive", None)):
        sol = solve_particles(sched, x0, w0, method=method, steps=steps, t_eval=times, comm=comm)
        res[f"particles_{method}"] = sol.positions
    for method, steps in (("rk4", 6), ("adaptive", None)):  # spectral sums of split tokens
        sol = solve_particles(
            sched, x0, w0, method=method, steps=steps, t_eval=times, comm=comm, field_method="spectral"
        )
        res[f"particles_{method}_spectral"] = sol.positions

    # Interaction models: zonal sums split across ranks (spectral: coefficients summed; dense: the
    # keys gathered), a normaliser, a rotation; a user's model sums the gathered measure itself.
    pair = Interaction(3, ExpDifference(a=1.0, alpha=4.0, r=0.5, rho=1.0), Exponential(1.0),
                       omega=np.array([[0.0, -0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))  # fmt: skip
    for method in ("spectral", "dense"):
        res[f"grid_interaction_{method}"] = solve_grid(
            sphere, rho0, pair, 0.2, t_eval=times, comm=comm, field_method=method
        ).densities
    res["grid_user"] = solve_grid(sphere, rho0, Kuramoto(1.5), 0.2, t_eval=times, comm=comm).densities
    p0 = w0 / w0.sum()  # a probability: an unnormalised field scales with the mass
    for method, steps in (("rk4", 6), ("adaptive", None)):
        sol = solve_particles(pair, x0, p0, T=0.2, method=method, steps=steps, t_eval=times, comm=comm)
        res[f"particles_interaction_{method}"] = sol.positions
    user = solve_particles(Kuramoto(1.5), x0, p0, T=0.2, steps=6, method="rk4", comm=comm)
    res["particles_user"] = user.positions

    # Noise: the grid's diffusion reads quadratic polynomials (the vertex halo, also under the
    # linear scheme); the tokens' kicks are keyed to the global token index (5000 tokens: two
    # streams of 4096, split across the ranks), coupled to a finer run (noise_grid).
    noisy = with_noise(pair, 0.2)
    for recon in ("quadratic", "linear"):
        res[f"grid_noisy_{recon}"] = solve_grid(
            sphere, rho0, noisy, 0.2, t_eval=times, comm=comm, reconstruction=recon
        ).densities
    # The implicit diffusion: BiCGSTAB with all-reduced dots and halo-refreshed matrix products.
    res["grid_noisy_implicit"] = solve_grid(
        sphere, rho0, with_noise(pair, 2.0), 0.2, t_eval=times, comm=comm, diffusion="implicit"
    ).densities
    x1 = uniform_sphere(5000, 3, rng)
    sol = solve_particles(
        noisy, x1, T=0.2, steps=8, t_eval=times, comm=comm, noise_seed=(3, 1), noise_grid=16
    )
    res["particles_noisy"] = sol.positions

    res["ring_error"] = np.array(ring_error(comm, rng))
    res["budget_allocation"] = budget_allocation(comm, rng)

    if comm is None or comm.rank == 0:
        np.savez(out, **res)
        if serial:
            np.save(out.replace(".npz", "_mid.npy"), res["grid_general"][1])


if __name__ == "__main__":
    main()
