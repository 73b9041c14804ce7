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

__all__ = ["DYNAMIC_RANGE", "density_norm", "new_figure", "norm_label", "save_figure"]

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


