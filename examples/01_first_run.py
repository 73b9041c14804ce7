"""
Your first run, and reading its run file
========================================

A *case* says what to solve (geometry, initial measure, model, the discretisations); a *run*
computes every job of it into one HDF5 *run file*. On the command line this is::

    vlasov-tf run cases/circle_clustering.toml --set 'particles.tokens=[300]' ...
    vlasov-tf plot out/circle_clustering-....h5

Here the same from Python, on a shipped case made small enough for a tutorial: the circle, one
softmax head at beta = 4, three bumps that gather into clusters.
"""

import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

from vlasov_tf.plots import density_figure, diagnostics_figure
from vlasov_tf.runs.cases import CASES_DIR, load_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.storage import RunFile

case = load_case(
    CASES_DIR / "circle_clustering.toml",
    overrides={  # the same dotted keys as `--set`
        "particles.tokens": [300],
        "particles.sampling": "quantiles",  # tokens at the quantiles of mu_0: no sampling noise
        "particles.layers": [30],
        "particles.samples": 1,
        "grid.resolutions": [128, 256],
        "case.outputs": 6,
    },
)
print(case.name, case.geometry, "T =", case.T, "outputs at", case.output_times)

# %%
# Run it. The run file is laid out whole when the run starts, every snapshot is on disk when the
# solver moves on, so a killed run resumes (``run_case(..., resume=True)``).
out = Path(tempfile.mkdtemp())
path = run_case(case, out / "first.h5")
print(path.name, sorted(p.name for p in out.iterdir()))

# %%
# Reading the run file with plain h5py
# ------------------------------------
# Each job has its output times (NaN where not computed yet), its snapshots (``densities`` for a
# grid, ``positions`` and ``weights`` for tokens); ``diagnostics/<name>`` holds one value per job
# and output time (the layout: :mod:`vlasov_tf.runs.storage`).
with h5py.File(path, "r") as f:
    f["jobs"].visit(lambda name: print("jobs/" + name) if name.count("/") == 1 else None)
    times = f["jobs/grid/M256/times"][()]
    rho = f["jobs/grid/M256/densities"][()]  # (outputs, cells)
    tokens = f["jobs/particles/N300_ref/positions"][()]  # (outputs, N, 2)
print(times, rho.shape, tokens.shape)

# %%
# The density on the finest grid at each output time, and a histogram of the tokens at T: the
# three bumps have contracted into clusters at the same places on both solvers. (With i.i.d.
# tokens, the shipped case's default, 300 tokens are too few: their fluctuations move the
# clusters, which is what the case's N-study measures.)
theta = (np.arange(rho.shape[1]) + 0.5) * 2 * np.pi / rho.shape[1]
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
for t, r in zip(times, rho, strict=True):
    a.plot(theta, r, label=f"t = {t:g}")
a.set(xlabel="angle", ylabel="density", title="grid M = 256")
a.legend(fontsize=8)
angles = np.mod(np.arctan2(tokens[-1, :, 1], tokens[-1, :, 0]), 2 * np.pi)
b.hist(angles, bins=64, range=(0, 2 * np.pi), density=True, alpha=0.5, label="300 tokens at T")
b.plot(theta, rho[-1], "k", label="grid at T")
b.set(xlabel="angle", title="tokens against the grid at T")
b.legend(fontsize=8)

# %%
# The same file through :class:`~vlasov_tf.runs.storage.RunFile`, and the figures ``vlasov-tf
# plot`` draws (the package's figures are plain matplotlib Figures; ``plt.figure(fig)`` shows one
# here).
with RunFile.open(path, mode="r") as run:
    print(run.jobs(), run.diagnostic_names())
    for job, rows in run.diagnostics("w1_grid").items():  # (t, value) rows
        print(f"W1 to the finest grid at T, {job}: {rows[-1, 1]:.3e}")
    plt.figure(density_figure(case, run))
    plt.figure(diagnostics_figure(case, run))
