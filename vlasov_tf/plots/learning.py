"""The figure of a learning run (``vlasov-tf learn``): training, the grid, the token counts.

Drawn from the results of :func:`vlasov_tf.learning.runner.run_learning_case` (plain arrays: this
module does not import JAX): (a) the training and validation losses against the step; (b) on the
circle, the first test measure on the grid: the initial density, the target's density at T and
the learned network's infinite-depth limit (its Schedule's Vlasov flow); (c) the error against
the number of tokens N: W1 of the learned network's output to the target's grid solution, the
sampling floor (the target's own tokens against its grid solution), the token RMS error, and the
grid's W1 between the learned and the target flows (the mean-field limit the errors fall toward).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vlasov_tf.plots.canvas import new_figure, save_figure

__all__ = ["learning_figure", "plot_learning"]


def learning_figure(res: Mapping[str, Any], title: str = "") -> Figure:
    """Three panels (module docstring); (b) and (c) only when the results hold the evaluation."""
    evaluated = "tokens" in res
    fig = new_figure((15.0 if evaluated else 5.5, 4.2))
    axes = fig.subplots(1, 3 if evaluated else 1, squeeze=False)[0]
    ax = axes[0]
    hist = np.asarray(res["history"]).reshape(-1, 3)
    ax.semilogy(hist[:, 0], hist[:, 1], lw=0.8, label="training loss (batch)")
    val = np.isfinite(hist[:, 2])
    ax.semilogy(hist[val, 0], hist[val, 2], "o-", ms=3, label="validation loss")
    ax.axhline(res["identity_rms"] ** 2, color="grey", ls=":", label="identity map (doing nothing)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("mean squared token error")
    ax.set_title(f"(a) training; test RMS {res['test_rms']:.2e}")
    ax.legend(fontsize=8)
    # The case's description can be longer than the one-panel figure is wide: wrapped, not cut off.
    title = "\n".join(textwrap.wrap(title, 160 if evaluated else 60))
    if not evaluated:
        fig.suptitle(title)
        return fig
    ax = axes[1]
    centres = np.asarray(res["example_centres"])
    if centres.shape[1] == 2:
        theta = np.mod(np.arctan2(centres[:, 1], centres[:, 0]), 2 * np.pi)
        order = np.argsort(theta)
        for key, style, label in (
            ("example_initial", ":", "initial density"),
            ("example_target", "-", "target at T (grid)"),
            ("example_learned", "--", "learned network, infinite depth (grid)"),
        ):
            ax.plot(theta[order], np.asarray(res[key])[order], style, label=label)
        ax.set_xlabel("angle")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    else:  # S^2: densities against the height z (cell averages, as points)
        z = centres[:, 2]
        for key, label in (("example_target", "target at T"), ("example_learned", "learned, infinite depth")):
            ax.plot(z, np.asarray(res[key]), ".", ms=2, label=label)
        ax.set_xlabel("z (cell centres)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    ax.set_title(f"(b) test measure 0: W1 on the grid {res['w1_grid'][0]:.2e}")
    ax = axes[2]
    n = np.asarray(res["tokens"])
    ax.loglog(n, np.mean(res["w1_tokens"], axis=0), "o-", label="W1(learned tokens, target grid)")
    ax.loglog(n, np.mean(res["w1_sampling"], axis=0), "s--", label="W1(target tokens, target grid): sampling")
    ax.loglog(n, np.mean(res["token_error"], axis=0), "^-", label="token RMS error (learned vs target)")
    ax.axhline(np.mean(res["w1_grid"]), color="k", ls=":", label="W1(learned grid, target grid)")
    ax.set_xlabel("tokens per measure N")
    ax.set_ylabel("error (mean over test measures)")
    ax.set_title("(c) from N tokens to the mean-field limit")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_learning(res: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Save :func:`learning_figure` as a PNG at ``path``."""
    return save_figure(learning_figure(res, title), path)
