"""Figures of convergence studies: rate tables (log-log, with the expected slopes) and the depth study
of ``vlasov-tf particles``."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlasov_tf.geometry.measures import circle_to_angles
from vlasov_tf.plots.canvas import new_figure, save_figure
from vlasov_tf.runs.depth_study import DepthConvergence
from vlasov_tf.runs.studies import RateTable, fitted_order

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


__all__ = [
    "convergence_figure",
    "depth_convergence_figure",
    "draw_tables",
    "plot_depth_convergence",
]


_AXIS_NAMES = {"layers": "layers L", "tokens": "tokens N", "grid": "mesh size h", "grid_l1": "mesh size h"}


def _draw_table(ax: Axes, tab: RateTable) -> None:
    x, err = np.asarray(tab.x, dtype=float), np.asarray(tab.error, dtype=float)
    one = len(x) < 2 or not np.isfinite(tab.rate)
    label = "measured (one point: no rate)" if one else f"measured: fitted rate {tab.rate:.2f}"
    ax.loglog(x, err, "o-", color="C0", label=label, zorder=3)
    if tab.spread is not None:
        sd = np.asarray(tab.spread, dtype=float)
        ax.errorbar(
            x,
            err,
            yerr=[np.minimum(sd, 0.9 * err), sd],
            fmt="none",
            ecolor="C0",
            capsize=4,
            label=f"± 1 sd over {tab.samples} samples",
        )
    if tab.se is not None:
        se = 2 * np.asarray(tab.se, dtype=float)
        ax.errorbar(
            x * 1.04,
            err,
            yerr=[np.minimum(se, 0.9 * err), se],
            fmt="none",
            ecolor="C3",
            elinewidth=2.5,
            alpha=0.6,
            label="± 2 sliced standard errors",
        )
    sign = 1 if tab.name.startswith("grid") else -1
    # The expected slope through the most accurate point (over a factor 2 each side for one point).
    xs = x if not one else x[-1] * np.array([0.5, 2.0])
    ax.loglog(
        xs,
        err[-1] * (xs / x[-1]) ** (sign * tab.expected),
        "k--",
        lw=1,
        label=f"expected rate {tab.expected:g}",
    )
    lo, hi = ax.get_ylim()
    if np.floor(np.log10(hi)) > np.floor(np.log10(lo)) or np.log10(lo) % 1 == 0:
        ax.minorticks_off()
    else:  # no power of ten in view: matplotlib then labels the minor ticks (2e-1, 3e-1, ...)
        from matplotlib.ticker import NullLocator

        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(x, [f"{v:.3g}" for v in x])
    ax.set_xlabel(_AXIS_NAMES.get(tab.name, tab.name))
    ax.set_ylabel(f"{tab.metric} at T")
    title = "\n".join(textwrap.wrap(tab.label, 48)) + ("\none point: no rate" if one else "")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


def draw_tables(sub: Figure | SubFigure, tables: Sequence[RateTable]) -> None:
    axes = sub.subplots(1, max(len(tables), 1), squeeze=False)[0]
    for ax, tab in zip(axes, tables, strict=False):
        _draw_table(ax, tab)
    if not tables:
        axes[0].text(
            0.5,
            0.5,
            "no convergence table: the run has one resolution of everything",
            ha="center",
            va="center",
            transform=axes[0].transAxes,
        )
        axes[0].set_axis_off()


def convergence_figure(tables: Sequence[RateTable]) -> Figure:
    """One log-log panel per rate table (:func:`vlasov_tf.runs.studies.crossval_tables`).

    The measured distances at T, the fitted rate (or "one point: no rate"), the expected slope
    through the most accurate point, error bars of one sample standard deviation (``spread``)
    and of two sliced standard errors (``se``) where the table has them.
    """
    fig = new_figure((4.2 * max(len(tables), 1), 4.2))
    draw_tables(fig, tables)
    return fig


def depth_convergence_figure(res: DepthConvergence, n_show: int = 200) -> Figure:
    """Two panels: token angles along the reference; errors against depth.

    ``n_show`` tokens (evenly spread over the labels) are drawn on the left.
    """
    from matplotlib.collections import LineCollection

    fig = new_figure((12, 4.8))
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
    return fig


def plot_depth_convergence(res: DepthConvergence, path: Path, n_show: int = 200) -> Path:
    """Save :func:`depth_convergence_figure` as a PNG at ``path``."""
    return save_figure(depth_convergence_figure(res, n_show), path, dpi=120)


