"""The bifurcation diagram of a noise scan (:mod:`vlasov_tf.runs.transitions`): the stationary order
parameter against sigma, up and down the scan, the tokens' ensembles, and the theory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vlasov_tf.models.base import deterministic
from vlasov_tf.plots.canvas import new_figure, save_figure
from vlasov_tf.runs.transitions import SETTLED, Branches

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_transition", "transition_figure"]


def transition_figure(case, branches: Branches) -> Figure:
    """``r = |int x dmu|`` at the end of each relaxation against sigma: the grid scanned up (from the
    initial measure) and down (from the top), the tokens' members (mean and standard deviation),
    the explicit stationary branch where there is one and the critical noise of linear theory."""
    b = branches
    fig = new_figure((8, 5.2))
    ax = fig.subplots()
    spec = case.transition
    where = f"level {spec.resolution}" if case.geometry == "sphere" else f"M = {spec.resolution}"
    ax.plot(b.noise, b.up, "-", color="C0", zorder=2)
    ax.plot(b.noise, b.down, "--", color="C3", zorder=2)
    for r, drift, marker, colour, label in (
        (b.up, b.drift_up, "^", "C0", f"grid ({where}), scanned up"),
        (b.down, b.drift_down, "v", "C3", "grid, scanned down"),
    ):
        ok = drift < SETTLED
        ax.plot(b.noise[ok], r[ok], marker, color=colour, label=label, zorder=3)
        if not ok.all():
            ax.plot(b.noise[~ok], r[~ok], marker, color=colour, mfc="none", zorder=3,
                    label=f"{label.split(',')[-1].strip()}: not settled (|dr| >= {SETTLED:g})")  # fmt: skip
    if b.tokens is not None:
        sd = b.tokens.std(axis=1, ddof=1) if b.tokens.shape[1] > 1 else None
        label = f"tokens: {spec.members} x {spec.tokens}, {spec.layers} noisy layers (mean, sd)"
        ax.errorbar(b.noise, b.tokens.mean(axis=1), yerr=sd, fmt="o", color="k", ms=4, capsize=3, label=label)
    if b.explicit is not None:
        ax.plot(b.noise, b.explicit, "-", color="0.5", lw=3, alpha=0.5, label="explicit stationary states")
    if b.critical is not None:
        ax.axvline(b.critical, color="C2", ls=":", label=f"linear theory: sigma_c = {b.critical:.3g}")
    ax.set_xlabel("noise sigma (generator sigma Laplace)")
    ax.set_ylabel("order parameter r = |int x dmu| at T")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"{case.name}: stationary states against the noise ({deterministic(case.model).label}, "
        f"T = {case.T:g} per sigma)\n"
        f"hysteresis (where both settled) max |r_up - r_down| = {b.hysteresis:.2g}",
        fontsize=10,
    )
    return fig


def plot_transition(case, branches: Branches, path: Path) -> Path:
    """Save :func:`transition_figure` as a PNG at ``path``."""
    return save_figure(transition_figure(case, branches), path)
