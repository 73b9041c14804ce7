"""What every figure shares: an Agg canvas without pyplot (figures work headless and inside other
programs), saving as PNG, and the colour scale of density maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

__all__ = [
    "DYNAMIC_RANGE",
    "MAX_TOKENS_SHOWN",
    "density_norm",
    "grid_label",
    "log_if_wide",
    "new_figure",
    "norm_label",
    "save_figure",
    "shown_times",
    "time_index",
    "token_label",
    "token_subset",
]

#: Colour range of the logarithmic density maps: the floor is the largest density over max / this.
DYNAMIC_RANGE = 1e4


def new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def log_if_wide(ax, values: Sequence[np.ndarray], decades: float = 3.0) -> None:
    """A logarithmic y axis on ``ax`` when the drawn values are positive and span more than
    ``decades`` decades (an energy that grows without bound, as tokens in R^d fly apart, would
    otherwise flatten every other curve onto the axis)."""
    vals = np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size and vals.min() > 0 and vals.max() > 10.0**decades * vals.min():
        ax.set_yscale("log")


def density_norm(values: Sequence[np.ndarray], dynamic_range: float = DYNAMIC_RANGE) -> Normalize:
    """One colour norm for density maps at several times (the values of all of them).

    - Logarithmic (``LogNorm``) when the largest value exceeds 100 times the median (clusters):
      from ``max / dynamic_range`` (or the smallest positive value if larger) to the largest
      value, so that clusters thousands of times denser than the background and the background
      itself are both visible; lower values take the floor's colour;
    - linear when the values span less than a factor 30 (a nearly uniform density, whose
      variations a log scale would hide);
    - otherwise a power law ``PowerNorm(gamma=0.4)`` from 0 (smooth bumps of moderate contrast:
      their shapes stay visible, and so does a background ten times lower).
    """
    from matplotlib.colors import LogNorm, Normalize, PowerNorm

    vals = np.concatenate([np.ravel(v) for v in values])
    vmax = float(vals.max()) if vals.size else 1.0
    positive = vals[vals > 0]
    if vmax <= 0 or not positive.size:
        return Normalize(0.0, max(vmax, 1.0))
    vmin = float(positive.min())
    if vmax < 30.0 * vmin:
        return Normalize(vmin, vmax)
    if vmax > 100.0 * float(np.median(vals)):
        return LogNorm(max(vmin, vmax / dynamic_range), vmax)
    return PowerNorm(0.4, 0.0, vmax)


def norm_label(norm: Normalize) -> str:
    """How a colour norm of :func:`density_norm` maps values, for a colour bar's label."""
    from matplotlib.colors import LogNorm, PowerNorm

    if isinstance(norm, LogNorm) and norm.vmin and norm.vmax:
        return f"log scale, floor max/{norm.vmax / norm.vmin:.6g}: lower values take its colour"
    if isinstance(norm, PowerNorm):
        return f"power scale, γ = {norm.gamma:g}"
    return "linear scale"




# -- the jobs and times a figure shows --------------------------------------------

#: Tokens drawn over a density map at most (evenly spaced in their labels).
MAX_TOKENS_SHOWN = 3000


def shown_times(case) -> list[int]:
    """The first, middle and last output times (indices)."""
    n = len(case.output_times)
    return sorted({0, n // 2, n - 1})


def time_index(times: np.ndarray, t: float) -> int:
    """The index of the time in ``times`` (n,) nearest to ``t``."""
    return int(np.argmin(np.abs(np.asarray(times) - t)))


def token_subset(n: int, most: int = MAX_TOKENS_SHOWN) -> np.ndarray:
    """At most ``most`` of ``n`` token indices, evenly spaced in their labels (all when n <= most)."""
    return np.linspace(0, n - 1, min(n, most)).round().astype(int)


def grid_label(job) -> str:
    """A grid job's resolution in words: ``M = 512`` (circle cells) or ``level 3`` (sphere mesh)."""
    return f"M = {job.resolution}" if job.key.startswith("grid/M") else f"level {job.resolution}"


def token_label(job, case=None) -> str:
    """A token job in words: ``N = 1000, L = 100`` or ``N = 1000, continuous flow`` (the case's
    reference, :attr:`~vlasov_tf.runs.cases.Case.reference`, when given: a noisy case's)."""
    reference = "continuous flow" if case is None else case.reference
    return f"N = {job.tokens}, " + (f"L = {job.layers}" if job.layers is not None else reference)
