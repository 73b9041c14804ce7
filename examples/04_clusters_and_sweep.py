"""
Clusters, and a sweep over beta
===============================

Tokens under attention gather into clusters whose number depends on the inverse temperature
beta. :func:`~vlasov_tf.analysis.clusters.find_clusters` finds them at a linking distance (the
kernel's width ``beta^(-1/2)`` times a scale); a run stores them at every output, and a *sweep*
(``vlasov-tf sweep``) runs an ensemble of token sets for each of many betas and maps the number
of clusters over (beta, t).
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import vlasov_tf as vt
from vlasov_tf.analysis.clusters import find_clusters, linking_distance
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.plots import phase_figure
from vlasov_tf.runs.cases import CASES_DIR, load_case
from vlasov_tf.runs.ensembles import phase_maps
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.runs.sweeps import run_sweep

# %%
# Clusters of one flow
# --------------------
# 300 uniform tokens on S^2 at beta = 9 (one head, Q = K = V = I). At t = 0 they are one cloud
# connected at the linking distance; they then gather into a few clusters, which merge much later
# (metastability).
beta = 9.0
x0 = uniform_sphere(300, 3, np.random.default_rng(3))
times = np.array([0.0, 2.0, 5.0, 15.0])
sol = vt.solve_particles(vt.Schedule.constant(vt.Params.identity(3, beta), times[-1]), x0,
                         method="rk4", steps=600, t_eval=times)
radius = linking_distance(beta)
fig = plt.figure(figsize=(13, 3.6), layout="constrained")
for i, t in enumerate(times):
    found, label = find_clusters(sol.positions[i], None, radius)
    print(f"t = {t:4.1f}: {found.count} clusters, masses {np.round(found.masses, 3)}")
    ax = fig.add_subplot(1, len(times), i + 1, projection="3d")
    x = sol.positions[i]
    ax.scatter(*x.T, c=np.where(label < 0, -1, label), cmap="tab10", s=6, vmin=-1, vmax=9)
    ax.set_title(f"t = {t:g}: {found.count} clusters")
    ax.set_axis_off()
    ax.set_box_aspect((1, 1, 1))

# %%
# A sweep over beta
# -----------------
# The shipped ``phase_diagram`` case (64 tokens on S^7, 24 betas x 16 members) made smaller: 8
# betas, 6 members, to T = 6. ``run_sweep`` writes one run file, resumable like a run. A cluster
# holds at least 5% of the tokens (the case's ``[clusters] min_mass``): at large beta the tokens
# stay apart for longer than T and no group is that large yet.
case = load_case(
    CASES_DIR / "phase_diagram.toml",
    overrides={"sweep.betas": {"from": 0.5, "to": 60.0, "count": 8}, "sweep.members": 6,
               "sweep.steps": 120, "case.T": 6.0, "case.outputs": 13},
)
path = run_sweep(case, Path(tempfile.mkdtemp()) / "phase.h5")
with RunFile.open(path, mode="r") as run:
    maps = phase_maps(run)
for b, counts in zip(maps.betas, maps.clusters_mean, strict=True):
    print(f"beta = {b:6.2f}: mean number of clusters at T = {counts[-1]:.2f}")
plt.figure(phase_figure(case, maps))
