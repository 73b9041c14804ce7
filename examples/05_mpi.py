"""
MPI: the same run on two ranks
==============================

Every solver splits its work across the ranks of ``mpiexec`` (the grid by domain decomposition,
the tokens in blocks; the diagnostics deal the output times), and the values are the serial
ones. The command is the serial one behind ``mpiexec -n P``::

    mpiexec -n 2 vlasov-tf run cases/circle_clustering.toml --out out/

Here a small circle case runs on two ranks and then serially, and the two run files are compared
snapshot by snapshot.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from vlasov_tf.runs.storage import RunFile

work = Path(tempfile.mkdtemp())
case = work / "small.toml"
case.write_text("""
[case]
name = "small"
geometry = "circle"
T = 3.0
outputs = 4

[initial]
family = "vmf_mixture"
angles = [0.5, 2.5, 4.5]
kappas = [2.0, 3.0, 4.0]

[model]
beta = 4.0

[particles]
tokens = 600
layers = 30

[grid]
resolutions = [256, 512]
""")

bindir = Path(sys.executable).parent  # mpiexec and vlasov-tf come with the package's environment
mpiexec = shutil.which("mpiexec", path=str(bindir)) or "mpiexec"
cli = [sys.executable, "-m", "vlasov_tf.cli"]
one_thread = {**os.environ, "VLASOV_TF_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
args = ["run", str(case), "--name", "small", "--no-plot"]  # this page draws its own figure
parallel = subprocess.run([mpiexec, "-n", "2", *cli, *args, "--out", str(work / "mpi")],
                          capture_output=True, text=True, env=one_thread, check=True)
print(parallel.stdout[-1500:])
subprocess.run([*cli, *args, "--out", str(work / "serial")], capture_output=True, text=True,
               env=one_thread, check=True)

# %%
# The largest difference between the two runs' snapshots, job by job (round-off: the ranks add
# their partial sums in another order).
with RunFile.open(work / "mpi" / "small.h5", mode="r") as mpi, \
        RunFile.open(work / "serial" / "small.h5", mode="r") as serial:
    for job in serial.jobs():
        a, b = mpi.job_state(job), serial.job_state(job)
        print(f"{job:22s} max |mpi - serial| = {np.abs(a[1] - b[1]).max():.1e}")
    times, rho = mpi.job_state("grid/M512")

plt.figure(figsize=(6, 3.5), layout="constrained")
theta = (np.arange(rho.shape[1]) + 0.5) * 2 * np.pi / rho.shape[1]
for t, r in zip(times, rho, strict=True):
    plt.plot(theta, r, label=f"t = {t:g}")
plt.xlabel("angle")
plt.ylabel("density")
plt.title("grid M = 512 on 2 ranks")
plt.legend()
