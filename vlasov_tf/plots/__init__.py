"""Figures: each ``*_figure`` function returns a matplotlib Figure, each ``plot_*`` saves it as a PNG.

By subject: one run (:mod:`.run_figures`: densities, diagnostics, the cross-validation figure),
convergence studies (:mod:`.convergence`), clusters and phase diagrams (:mod:`.clusters`), noise
scans' bifurcation diagrams (:mod:`.transitions`), the interpolating Transformer
(:mod:`.interpolation`), learning runs (:mod:`.learning`); the shared canvas and colour scales
(:mod:`.canvas`), the orthographic views of S^2 (:mod:`.sphere_views`), tokens where no sphere
view exists (:mod:`.token_views`: S^{d-1} with d > 3, R^d), the figures of a stored run file as
``vlasov-tf plot`` draws them (:mod:`.run_files`) and its animation (:mod:`.movies`).
"""

from vlasov_tf.plots.canvas import density_norm
from vlasov_tf.plots.clusters import clusters_figure, phase_figure, plot_clusters, plot_phase
from vlasov_tf.plots.convergence import convergence_figure, depth_convergence_figure, plot_depth_convergence
from vlasov_tf.plots.interpolation import interpolation_figure, plot_interpolation
from vlasov_tf.plots.learning import learning_figure, plot_learning
from vlasov_tf.plots.movies import save_movie
from vlasov_tf.plots.run_figures import (
    crossval_figure,
    density_figure,
    diagnostics_figure,
    mode_growth_figure,
    plot_crossval,
)
from vlasov_tf.plots.run_files import plot_run
from vlasov_tf.plots.transitions import plot_transition, transition_figure

__all__ = [
    "clusters_figure",
    "convergence_figure",
    "crossval_figure",
    "density_figure",
    "density_norm",
    "depth_convergence_figure",
    "diagnostics_figure",
    "interpolation_figure",
    "learning_figure",
    "mode_growth_figure",
    "phase_figure",
    "plot_clusters",
    "plot_crossval",
    "plot_depth_convergence",
    "plot_interpolation",
    "plot_learning",
    "plot_phase",
    "plot_run",
    "plot_transition",
    "save_movie",
    "transition_figure",
]
