"""
A learned Transformer
=====================

``vlasov-tf learn`` fits a deep Transformer of the project's own form to the solution map
``mu_0 -> mu_T`` of a *target* model (the guide page :doc:`/guide/learning`). Here, in under a
minute (JAX's compilation included): the target is identical Kuramoto oscillators with a
rotation on the circle, ``X[mu](x) = P_x int y dmu(y) + 0.5 J x`` (an interaction model, not a
Transformer), up to T = 1. A tiny network (8 layers in 2 blocks, one head, a perceptron of width
4: 72 parameters) learns it from 32 measures of 32 tokens in 300 Adam steps. The learned network
is stored as a :class:`~vlasov_tf.models.attention.Schedule`, which the particle solver runs at
any token count and the grid solver runs as its infinite-depth limit, the Vlasov flow of the
learned parameters.
"""

import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np

import vlasov_tf as vt
from vlasov_tf.analysis.wasserstein import wasserstein
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.learning.cases import parse_learning_case
from vlasov_tf.learning.runner import run_learning_case
from vlasov_tf.learning.store import load_schedule
from vlasov_tf.solvers.finite_volumes import solve_grid

tic = time.perf_counter()
case = parse_learning_case("""
[case]
name = "tiny_kuramoto"
geometry = "circle"
T = 1.0
[model]                       # the target
type = "interaction"
kernel = { name = "constant", c = 1.0 }
frequency = 0.5
[learning]
layers = 8
blocks = 2
heads = 1
hidden = 4
tokens = 32
train = 32
validation = 8
test = 8
steps = 300
learning_rate = 0.02
batch = 8
checkpoint_every = 100
[learning.family]             # the initial measures: 1 to 3 von Mises bumps
bumps = [1, 3]
kappa = [2.0, 20.0]
""")
res = run_learning_case(case, tempfile.mkdtemp())
print(f"data and training: {time.perf_counter() - tic:.1f} s")

# %%
# The run file holds the data, the checkpoints and the learned network; ``load_schedule`` gives
# the network back as a Schedule. On each of six test measures (never seen in training), the
# learned network runs on N fresh samples (``method="layers"``: the 8-layer network itself) and
# the target moves the same samples (RK4, 40 steps: exact to about 1e-8); both are compared in W1
# with the target's grid solution (512 cells). Two limits of the learned network: the same
# 8-layer network run on the grid's cell centres weighted by the initial cell masses (a
# quadrature of the network's mean-field map: the limit N -> infinity of its tokens), and the
# learned parameters' Vlasov flow on the grid (``solve_grid``: infinitely many layers).
learned = load_schedule(res["path"])
L = case.arch.layers
mesh = circle_mesh(512)
counts = np.array([32, 128, 512, 2048, 8192, 32768])
measures = range(6)
w1_learned = np.zeros((len(measures), len(counts)))  # learned tokens to the target's grid solution
w1_to_limit = np.zeros_like(w1_learned)  # learned tokens to the network's own mean-field limit
w1_target = np.zeros_like(w1_learned)  # the target's tokens to its grid solution
w1_network_limit = np.zeros(len(measures))
w1_flow_limit = np.zeros(len(measures))
for i in measures:
    rho0 = case.family.measure(case.seed, "test", i).cell_averages(mesh)
    mass0 = rho0 * mesh.areas
    target = solve_grid(mesh, rho0, case.target, case.T).final
    flow = solve_grid(mesh, rho0, learned, case.T).final
    network = vt.solve_particles(learned, mesh.centres, mass0, method="layers", steps=L).final
    grid_target = (mesh.centres, target * mesh.areas)
    w1_flow_limit[i] = wasserstein(mesh.centres, flow * mesh.areas, *grid_target, geometry="circle")[0]
    w1_network_limit[i] = wasserstein(network, mass0, *grid_target, geometry="circle")[0]
    for k, n in enumerate(counts):
        x = case.family.tokens(case.seed, "test", i, int(n))
        y_learned = vt.solve_particles(learned, x, method="layers", steps=L).final
        y_target = vt.solve_particles(case.target, x, T=case.T, method="rk4", steps=40).final
        w1_learned[i, k] = wasserstein(y_learned, None, *grid_target, geometry="circle")[0]
        w1_to_limit[i, k] = wasserstein(y_learned, None, network, mass0, geometry="circle")[0]
        w1_target[i, k] = wasserstein(y_target, None, *grid_target, geometry="circle")[0]
    if i == 1:  # drawn below: three bumps
        example = (rho0, target, flow, network, mass0)
print(f"data, training and evaluation: {time.perf_counter() - tic:.1f} s")
print("N       learned->target  learned->its limit  target tokens->target   (W1, mean of 6 measures)")
for k, n in enumerate(counts):
    print(f"{n:<7d} {w1_learned[:, k].mean():12.4f} {w1_to_limit[:, k].mean():17.4f}"
          f" {w1_target[:, k].mean():20.4f}")
print(f"the 8-layer network's mean-field limit to the target: {w1_network_limit.mean():.4f}; "
      f"its infinite-depth limit (grid) to the target: {w1_flow_limit.mean():.4f}")

# %%
# Left, test measure 1 (three bumps): the target moves and sharpens the bumps; the learned network's
# mean-field limit (the 8-layer map of the weighted cell centres, binned) and its infinite-depth
# flow lie on the target. Right, W1 to the target's grid solution against N.
rho0, target, flow, network, mass0 = example
theta = np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0])
order = np.argsort(theta)
fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax.plot(theta[order], rho0[order], color="0.6", label="initial")
ax.plot(theta[order], target[order], label="target at T (grid)")
ax.plot(theta[order], flow[order], "--", label="learned flow, infinite depth (grid)")
bins = np.linspace(-np.pi, np.pi, 129)
hist, _ = np.histogram(np.arctan2(network[:, 1], network[:, 0]), bins, weights=mass0)
ax.stairs(hist / np.diff(bins), bins, color="k", lw=0.8, label="learned 8 layers, mean-field (binned)")
ax.set(xlabel="angle", ylabel="density", title="(a) test measure 1 at T = 1")
ax.legend(fontsize=7)
bx.loglog(counts, w1_learned.mean(0), "o-", label="learned tokens to target")
bx.loglog(counts, w1_to_limit.mean(0), "s-", label="learned tokens to their mean-field limit")
bx.loglog(counts, w1_target.mean(0), "^-", color="0.5", label="target's tokens to target (sampling)")
bx.axhline(w1_network_limit.mean(), color="C0", ls=":", label="learned mean-field limit to target")
bx.axhline(w1_flow_limit.mean(), color="C3", ls="--", label="learned flow (grid) to target")
bx.loglog(counts, 0.5 * counts**-0.5, color="k", lw=0.6, label="N^-1/2")
bx.set(xlabel="tokens N", ylabel="W1 (mean of 6 test measures)", title="(b) the error against N")
bx.legend(fontsize=7)

# %%
# What this shows: the learned network's error, as a map of measures, falls with N toward its
# mean-field limit (about 0.03 here). The distance of the learned tokens to their own limit falls
# roughly like N^-1/2, as the target's tokens approach the target (the two curves are nearly one:
# both are the sampling error of the same samples); what is left at large N is the error of the
# learned map itself, which the sampling hides below N of a few hundred. The learned parameters'
# Vlasov flow (infinitely many layers) is as close to the target as the 8-layer network is.
#
# What it does not show: that this limit error falls to zero. After 300 steps with 72 parameters
# and 32 training measures it is about 0.03 (the token RMS on the test set, printed above, is of
# the same size); the guide's study (:doc:`/guide/learning`) shows how it falls with depth, width
# and data, on the shipped case (600 steps). One seed and six test measures: the means carry the
# fluctuations of one sample each (the bump at N = 2048), not a trend.
