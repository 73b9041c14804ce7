"""Figures. Each function takes a result object and a path and writes a PNG.

Drawn on an Agg canvas with matplotlib's object-oriented API: no pyplot
global state and no GUI backend, so they work on headless machines and
inside other programs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .measures import circle_to_angles
from .studies import DepthConvergence, fitted_order

__all__ = ["plot_depth_convergence"]


def plot_depth_convergence(res: DepthConvergence, path: Path, n_show: int = 200) -> Path:
    """Save a two-panel PNG: token angles along the reference; errors against depth.

    ``n_show`` tokens (evenly spread over the labels) are drawn on the left.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_traj, ax_err = fig.subplots(1, 2, width_ratios=(1.15, 1))

    idx = np.linspace(0, res.n_tokens - 1, min(n_show, res.n_tokens)).round().astype(int)
    theta = np.unwrap(circle_to_angles(res.reference[:, idx]), axis=0)  # (n_times, n_show)
    two_pi = 2 * np.pi
    # Copies shifted by +-2 pi make a token that crosses angle 0 leave one
    # edge of the band [0, 2 pi] and re-enter at the other, without a jump.
    segments = [
        np.column_stack([res.times, theta[:, j] + k * two_pi]) for k in (-1, 0, 1) for j in range(len(idx))
    ]
    colors = np.tile(theta[0] % two_pi / two_pi, 3)
    # viridis rather than a cyclic map: those fade to white at one end, hiding tokens there.
    lines = LineCollection(segments, cmap="viridis", linewidths=0.6, alpha=0.8)
    lines.set_array(colors)
    ax_traj.add_collection(lines)
    ax_traj.set_xlim(0, res.T)
    ax_traj.set_ylim(0, two_pi)
    ax_traj.set_yticks(np.arange(5) * np.pi / 2, ["0", "π/2", "π", "3π/2", "2π"])
    ax_traj.set_xlabel("time t")
    ax_traj.set_ylabel("token angle θ")
    ax_traj.set_title(f"reference trajectories ({len(idx)} of {res.n_tokens} tokens; colour: initial angle)")

    L = res.layers
    ax_err.loglog(L, res.w1, "o-", label="W1 on the circle at T")
    ax_err.loglog(L, res.max_error, "s-", label="max token error at T")
    # Slope -1 in L (order 1 in h), anchored a factor 2 below the W1 curve at the deepest L.
    anchor = 0.5 * res.w1[-1] * L[-1]
    ax_err.loglog(L, anchor / L, "k--", lw=1, label="∝ h = T/L (order 1)")
    ax_err.set_xticks(L, [str(v) for v in L])
    ax_err.minorticks_off()
    ax_err.set_xlabel("number of layers L (step h = T/L)")
    ax_err.set_ylabel("error (radians)")
    ax_err.set_title(f"deep Transformer vs continuous flow (fitted order {fitted_order(res.h, res.w1):.2f})")
    ax_err.grid(True, which="major", alpha=0.3)
    ax_err.legend()

    fig.suptitle(
        f"Q = K = V = I softmax attention on S¹: N = {res.n_tokens}, β = {res.beta:g}, T = {res.T:g}"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
