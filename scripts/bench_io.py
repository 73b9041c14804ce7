"""What storing a run costs: the run file (vlasov_tf.runs.storage.RunFile) against plain h5py appends.

A grid job of S snapshots of C float64 cell averages (default 100 x 1e5: 80 MB). Rows:

- plain h5py: a chunked dataset extended by one row per snapshot, flushed at the end (no
  durability: a kill may leave the file unreadable) -- the baseline;
- RunFile create: the whole layout written once (NaN fill, one view per snapshot for XDMF);
- RunFile append, sync=False: every snapshot committed in place (safe against a killed process);
- RunFile append, sync=True (the default): plus two fdatasyncs a snapshot (safe against a
  machine that dies);
- as the runner writes (sync=True and False): per snapshot also its clusters' table row and two batches of
  diagnostics (clusters and wall time, steps), each with its CRC-32 since format version 3;
- reading every snapshot back with RunFile (CRC-checked) and with h5py; checking the whole file
  (``RunFile.verify``: every array against its checksum).

    python scripts/bench_io.py [--cells 100000] [--snapshots 100]

Prints seconds and the ratio to the baseline, best of 3; the files go to a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.runs.storage import JobLayout, RunFile


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--snapshots", type=int, default=100)
    a = ap.parse_args()
    C, S = a.cells, a.snapshots
    mesh = circle_mesh(C)
    rng = np.random.default_rng(0)
    states = rng.random((S, C))
    times = np.linspace(0.0, 1.0, S)
    tmp = Path(tempfile.mkdtemp())
    jobs = [JobLayout("grid/M", "grid", mesh=mesh, tables={"clusters": (8, 4)})]
    diagnostics = ["clusters", "wall_s", "steps", "rejected_steps"]

    def plain() -> None:
        with h5py.File(tmp / "plain.h5", "w") as f:
            d = f.create_dataset("densities", (0, C), maxshape=(None, C), chunks=(1, C), dtype="f8")
            for i in range(S):
                d.resize(i + 1, axis=0)
                d[i] = states[i]

    def create() -> RunFile:
        return RunFile.create(
            tmp / "run.h5", "", "bench", jobs=jobs, times=times, diagnostics=diagnostics, overwrite=True
        )

    def run(sync: bool, runner: bool = False) -> None:
        with create() as rf:
            rf.sync = sync
            rf.start_job("grid/M", "grid", mesh=mesh)
            for t, s in zip(times, states, strict=True):
                if runner:
                    rf.add_row("grid/M", "clusters", t, s[:32].reshape(8, 4))
                    rf.add_diagnostics([("clusters", "grid/M", t, 3.0), ("wall_s", "grid/M", t, 0.1)])
                    rf.add_diagnostics([("steps", "grid/M", t, 10.0), ("rejected_steps", "grid/M", t, 0.0)])
                rf.append("grid/M", t, s)

    def read_runfile() -> None:
        with RunFile.open(tmp / "run.h5", mode="r") as rf:
            assert np.array_equal(rf.job_state("grid/M")[1], states)

    def verify() -> None:
        with RunFile.open(tmp / "run.h5", mode="r") as rf:
            rf.verify()

    def read_h5py() -> None:
        with h5py.File(tmp / "run.h5", "r") as f:
            f["jobs/grid/M/densities"][()]

    base = best(plain)
    t_create = best(lambda: create().close())
    rows = [
        ("plain h5py appends (no durability)", base),
        ("RunFile create (layout, NaN fill)", t_create),
        ("RunFile create + appends, sync=False", best(lambda: run(False))),
        ("RunFile create + appends, sync=True", best(lambda: run(True))),
        ("read back: RunFile (CRC checked)", best(read_runfile)),
        ("create + appends as the runner, sync=True", best(lambda: run(True, runner=True))),
        ("create + appends as the runner, sync=False", best(lambda: run(False, runner=True))),
        ("read back: h5py", best(read_h5py)),
        ("RunFile.verify (every checksum)", best(verify)),
    ]
    print(f"{S} snapshots of {C} float64 ({S * C * 8 / 2**20:.0f} MiB), best of 3")
    print(f"{'':40s} {'seconds':>8s} {'/ plain':>8s}")
    for name, sec in rows:
        print(f"{name:40s} {sec:8.3f} {sec / base:8.2f}")


if __name__ == "__main__":
    main()
