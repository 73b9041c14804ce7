"""
The Python API: a schedule, both solvers side by side, distances
================================================================

The solvers take a model and a measure and return arrays. Here: a custom schedule of two blocks
of attention (different parameters on [0, 1] and [1, 2.5]), the same initial measure given to the
particle solver (:func:`~vlasov_tf.solvers.particles.solve_particles`: tokens, continuous time
and a deep Transformer of L layers) and to the finite-volume grid
(:func:`~vlasov_tf.solvers.finite_volumes.solve_grid`), and the Wasserstein distances between
them (:mod:`vlasov_tf.analysis.wasserstein`).
"""

import matplotlib.pyplot as plt
import numpy as np

import vlasov_tf as vt
from vlasov_tf.analysis.wasserstein import wasserstein_circle
from vlasov_tf.geometry.initial import VmfMixture
from vlasov_tf.geometry.measures import angles_to_circle
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.solvers.finite_volumes import solve_grid

# %%
# A schedule: (duration, parameters) blocks. The first block is one head with Q = K = V = I at
# beta = 3; the second rotates the queries (Q a rotation by 0.6 rad) at beta = 5, which makes the
# clusters drift.
c, s = np.cos(0.6), np.sin(0.6)
rotate = np.array([[c, -s], [s, c]])
first = vt.Params.identity(2, beta=3.0)
second = vt.Params.qkv(rotate[None], np.eye(2)[None], np.eye(2)[None], beta=5.0)
schedule = vt.Schedule(((1.0, first), (1.5, second)))
print("T =", schedule.T, "switches at", schedule.switch_times(schedule.T))

# %%
# One initial measure, given to both solvers: its density at the grid's cell centres, and N
# tokens sampled from it.
mu0 = VmfMixture(2, means=angles_to_circle(np.array([0.5, 2.0, 4.0])), kappas=np.array([3.0, 4.0, 2.0]),
                 proportions=np.array([0.3, 0.3, 0.4]))
mesh = circle_mesh(512)
rho0 = mu0.density(mesh.centres)
tokens = mu0.sample(2000, np.random.default_rng(0))
times = np.linspace(0, schedule.T, 6)

grid = solve_grid(mesh, rho0, schedule, t_eval=times)
flow = vt.solve_particles(schedule, tokens, method="adaptive", t_eval=times)  # continuous time
deep = vt.solve_particles(schedule, tokens, method="layers", steps=50, t_eval=times)  # L = 50
print(grid.densities.shape, flow.positions.shape, "grid mass drift", np.ptp(grid.mass))

# %%
# Distances at each output time: the tokens (continuous flow) against the grid (its cell masses at
# the cell centres) measure the sampling error, about N^(-1/2); the deep Transformer against the
# continuous flow is the depth error, about 1/L.
masses = grid.densities * mesh.areas  # (outputs, cells)
w1_tokens = [wasserstein_circle(flow.positions[i], None, mesh.centres, masses[i]) for i in range(len(times))]
w1_depth = [wasserstein_circle(deep.positions[i], None, flow.positions[i], None) for i in range(len(times))]
for t, a, b in zip(times, w1_tokens, w1_depth, strict=True):
    print(f"t = {t:4.2f}: W1(tokens, grid) = {a:.3e}   W1(L = 50, continuous) = {b:.3e}")

# %%
# The grid's density and the tokens' histogram at each output time.
angle = np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0]) % (2 * np.pi)
order = np.argsort(angle)
fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True, layout="constrained")
for ax, i in zip(axes.flat, range(len(times)), strict=True):
    x = np.arctan2(flow.positions[i][:, 1], flow.positions[i][:, 0]) % (2 * np.pi)
    ax.hist(x, bins=80, range=(0, 2 * np.pi), density=True, alpha=0.4, label="2000 tokens")
    ax.plot(angle[order], grid.densities[i][order], "k", lw=1, label="grid")
    ax.set_title(f"t = {times[i]:.2f}" + (" (switch at 1.0)" if i == 2 else ""))
axes[0, 0].legend(fontsize=8)
for ax in axes[1]:
    ax.set_xlabel("angle")
