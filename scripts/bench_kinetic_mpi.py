"""Strong scaling of the kinetic phase-space grid under MPI, and a cost model for a cluster.

What it measures
----------------
:func:`vlasov_tf.solvers.kinetic_grid.solve_kinetic_grid` on ``Ntheta x Nv`` cells (default 256 x
512) of the HMF model (constant interaction kernel K = 1) from a perturbed Maxwellian, ``--steps``
Strang steps (an output at each, so rank 0 stamps every step), serially (the baseline) and under
``mpiexec -n P`` for each P of ``--ranks``, one thread per rank. The script is its own driver: run
plainly it starts itself as workers (``--worker``). Each worker also times, on one rank, the parts
of a step: the two half streams and the v remap per cell (``a``, seconds per cell and step), the
force (the model's dense sum of the Ntheta centres at each rank's own: ``b Ntheta^2 / P``),
and under MPI the halo exchange and the allgather of the marginal (``c``). The driver checks that
every P-rank final f equals the serial one (to round-off), prints the table, fits

    t_step(P) = a Ntheta Nv / P + b Ntheta^2 / P + 2 (lat + 8 H Nv / bw) + lat log2(P) + 8 Ntheta / bw

(H = ceil(V dt / dtheta) + 2 halo columns each side; lat, bw the latency and bandwidth) and
predicts the step for cluster sizes with InfiniBand-like constants (lat = 2 us, bw = 10 GB/s).

    python scripts/bench_kinetic_mpi.py [--theta 256] [--v 512] [--steps 10] [--ranks 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def problem(nt: int, nv: int):
    from vlasov_tf.analysis.kinetic_theory import VelocityLaw
    from vlasov_tf.kernels.zonal import Constant
    from vlasov_tf.models.interaction import Interaction
    from vlasov_tf.solvers.kinetic_grid import PhaseGrid

    g = PhaseGrid(nt, nv, 4.0)
    rho = (1 + 0.3 * np.cos(g.theta)) / (2 * np.pi)
    f0 = rho[:, None] * VelocityLaw.maxwellian(0.3).cell_averages(g.v_faces)[None, :]
    return Interaction(d=2, kernel=Constant(1.0)), g, f0


def worker(args: argparse.Namespace) -> None:
    from vlasov_tf.solvers.kinetic_grid import kinetic_force, remap_columns, stream_rows

    comm = None
    if not args.serial:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    model, g, f0 = problem(args.theta, args.v)
    dt = args.dt
    stamps: list[float] = []
    times = np.arange(args.steps + 2) * dt
    from vlasov_tf.solvers.kinetic_grid import solve_kinetic_grid

    sol = solve_kinetic_grid(model, f0, g, float(times[-1]), dt=dt, t_eval=times, comm=comm,
                             callback=lambda t, f, lost: stamps.append(time.perf_counter()))  # fmt: skip
    rank = 0 if comm is None else comm.rank
    if rank != 0:
        return
    step = float(np.median(np.diff(stamps[1:])))  # the first step warms up
    # The parts, on one rank: stream (two halves) + remap per cell, the force, the halo copy.
    halo = int(np.ceil(g.V * 0.5 * dt / g.dtheta)) + 2
    ext = np.concatenate([f0[-halo:], f0, f0[:halo]])
    shift = g.v * 0.5 * dt / g.dtheta
    tic = time.perf_counter()
    for _ in range(3):
        stream_rows(ext, shift, halo)
        stream_rows(ext, shift, halo)
        feet = g.v_faces[None, :] - 0.01 * dt + 0 * f0[:, :1]
        remap_columns(f0, feet, g.v_faces)
    a = (time.perf_counter() - tic) / 3 / f0.size
    rho = f0.sum(axis=1) * g.dv
    tic = time.perf_counter()
    for _ in range(3):
        kinetic_force(model, 0.0, g, rho)
    b = (time.perf_counter() - tic) / 3 / args.theta**2
    digest = hashlib.sha256(sol.f[-1].tobytes()).hexdigest()
    print(json.dumps({"P": 0 if comm is None else comm.size, "step": step, "a": a, "b": b, "halo": halo,
                      "digest": digest, "sum": float(np.abs(sol.f[-1]).sum())}))  # fmt: skip


def drive(args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "VLASOV_TF_NUM_THREADS": "1"}
    base = [sys.executable, __file__, "--worker", "--theta", str(args.theta), "--v", str(args.v),
            "--steps", str(args.steps), "--dt", str(args.dt)]  # fmt: skip
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    runs = {}
    for label, cmd in [("serial", [*base, "--serial"])] + [
        (f"P={p}", [mpiexec, "-n", str(p), *base]) for p in args.ranks
    ]:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=True).stdout
        runs[label] = json.loads(out.strip().splitlines()[-1])
    load = os.getloadavg()[0]
    print(f"kinetic grid {args.theta} x {args.v} = {args.theta * args.v} cells, dt = {args.dt}, "
          f"{args.steps} steps; {os.cpu_count()} cores, load average {load:.1f}")  # fmt: skip
    serial = runs["serial"]
    print(f"{'run':>8} {'step s':>9} {'speed-up':>9} {'efficiency':>10} {'f(T) = serial':>14}")
    for label, r in runs.items():
        p = max(r["P"], 1)
        same = "bitwise" if r["digest"] == serial["digest"] else f"rel {r['sum'] / serial['sum'] - 1:.0e}"
        print(f"{label:>8} {r['step']:9.4f} {serial['step'] / r['step']:9.2f} "
              f"{serial['step'] / (p * r['step']):10.2f} {same:>14}")  # round-off: 1e-16  # fmt: skip
    a, b, halo = serial["a"], serial["b"], serial["halo"]
    print(f"cost model: a = {a:.3g} s per cell and step (streams + remap), b = {b:.3g} s per force pair "
          f"(Ntheta^2 / P a rank), halo H = {halo} columns")  # fmt: skip
    lat, bw = 2e-6, 1e10
    print("predicted step on a cluster (lat = 2 us, bw = 10 GB/s, one core a rank at this core's speed):")
    print(f"{'Ntheta x Nv':>14} " + " ".join(f"{f'P={p}':>9}" for p in (16, 64, 256, 1024)))
    for nt, nv in ((1024, 1024), (4096, 4096), (16384, 8192)):
        h = int(np.ceil(4.0 * 0.5 * args.dt / (2 * np.pi / nt))) + 2  # V = 4, half steps
        row = []
        for p in (16, 64, 256, 1024):
            if p > nt:
                row.append(f"{'-':>9}")
                continue
            t = a * nt * nv / p + b * nt**2 / p + 2 * (lat + 8 * h * nv / bw) + lat * np.log2(p) + 8 * nt / bw
            row.append(f"{t:9.3g}")
        print(f"{f'{nt} x {nv}':>14} " + " ".join(row))
    print("the fixed terms (halo latency, the allgather of the Ntheta marginal) bound the step from below "
          "at large P")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--theta", type=int, default=256)
    p.add_argument("--v", type=int, default=512)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dt", type=float, default=0.05)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    worker(args) if args.worker else drive(args)


if __name__ == "__main__":
    main()
