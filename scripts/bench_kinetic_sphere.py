"""Cost of a step of the kinetic phase-space grid on S^2, and its compiled streaming against numpy.

Usage::

    python scripts/bench_kinetic_sphere.py            # levels 0, 1 at n_v = 16, 24 (~3 min on 2 busy cores)
    python scripts/bench_kinetic_sphere.py --quick    # levels 0, 1 at n_v = 16

One Strang step of :func:`vlasov_tf.solvers.kinetic_sphere.solve_kinetic_sphere`: a streaming step
(two Heun stages of per-face rotations, numba) and two force-friction remaps with the Lohe field
(constant kernel, the model's sums on the cell centres). Baseline in the same run: the same
streaming stage with the rotations done by whole-array numpy passes
(:func:`vlasov_tf.solvers.velocity_remap.rotate`), the first version's engine. Times are the best
of ``--repeat`` after an untimed warm-up (which compiles); "dt" is the positivity bound's step at
cfl 0.9 for V = 3.
"""

from __future__ import annotations

import argparse

import numpy as np
from benchlib import best

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.models.sums import Sums
from vlasov_tf.solvers.kinetic_sphere import Streaming, tangent_frames
from vlasov_tf.solvers.velocity_remap import VelocityGrid, affine_step, rotate


def numpy_stage(stream: Streaming, mass: np.ndarray) -> np.ndarray:
    """The streaming rate with numpy's rotations (the baseline)."""
    mesh, grid = stream.mesh, stream.grid
    o, n = mesh.face_cells.T
    shape = (mesh.n_faces, grid.n, grid.n)
    to_n, _ = rotate((mass[o] * stream.rates[0]).reshape(shape), stream.theta, grid)
    to_o, _ = rotate((mass[n] * stream.rates[1]).reshape(shape), -stream.theta, grid)
    gain = np.zeros_like(mass)
    np.add.at(gain, n, to_n.reshape(mesh.n_faces, -1))
    np.add.at(gain, o, to_o.reshape(mesh.n_faces, -1))
    return gain - stream.out_rate * mass


def row(level: int, n_v: int, repeat: int) -> str:
    """One line of the table: level ``level`` at ``n_v`` velocity cells per component."""
    model = Interaction(d=3, kernel=Constant(1.0))
    sums = Sums.by_method("auto")
    mesh = sphere_mesh(level)
    grid = VelocityGrid(3.0, n_v)
    frames = tangent_frames(mesh)
    stream = Streaming(mesh, grid, frames)
    mass = np.random.default_rng(0).random((mesh.n_cells, n_v * n_v))
    cube = mass.reshape(-1, n_v, n_v)

    def force_step() -> None:
        field = model.evaluate(0.0, mesh.centres, mass.sum(axis=1), mesh.centres, True, sums)
        affine_step(cube, grid, np.einsum("cai,ci->ca", frames, field), 0.5, 1e-3)

    t_stream = best(lambda: stream.step(mass, 1e-3), repeat)
    t_force = best(force_step, repeat)
    t_numpy = best(lambda: numpy_stage(stream, mass), repeat)
    t_stage = best(lambda: stream.rate(mass), repeat)
    return (
        f"| {level} | {mesh.n_cells} | {n_v} | {mass.size:.2e} | {t_stream + 2 * t_force:.3f} | "
        f"{t_stream:.3f} | {t_force:.3f} | {t_numpy:.3f} | {t_stage:.3f} | {t_numpy / t_stage:.1f} | "
        f"{0.9 / stream.max_rate:.1e} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="levels 0, 1 at n_v = 16")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cases = [(0, 16), (1, 16)] if args.quick else [(0, 16), (0, 24), (1, 16), (1, 24)]
    print(
        "| level | cells | n_v | unknowns | step s | streaming s | force s | numpy stage s "
        "| compiled stage s | ratio | dt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for level, n_v in cases:
        print(row(level, n_v, args.repeat), flush=True)


if __name__ == "__main__":
    main()
