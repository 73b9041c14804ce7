"""The figures of a stored run file, as ``vlasov-tf plot`` (and ``run``, after its jobs) draws them."""

from __future__ import annotations

from pathlib import Path

from vlasov_tf.plots.clusters import plot_clusters, plot_phase
from vlasov_tf.plots.kinetic import plot_kinetic
from vlasov_tf.plots.kinetic_sphere import plot_kinetic_sphere
from vlasov_tf.plots.run_figures import plot_crossval
from vlasov_tf.plots.transitions import plot_transition
from vlasov_tf.runs.cases import Case, parse_case
from vlasov_tf.runs.ensembles import phase_maps
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.runs.transitions import read_branches

__all__ = ["case_of_run", "plot_run"]


def case_of_run(run: RunFile, source: str | Path) -> Case:
    """The case as it was run: the stored case text with the stored overrides on top (``source``,
    the run file's name, is what errors name)."""
    overrides = dict(run.overrides or []) or None
    return parse_case(run.case_text, source=str(source), overrides=overrides)


def plot_run(case: Case, run: RunFile, out: Path, stem: str) -> list[Path]:
    """Save the figures of an open run file in ``out``: a sweep's phase maps
    (``<stem>.phase.png``), a noise scan's bifurcation diagram (``<stem>.transition.png``), a kinetic
    run's phase space and energy (``<stem>.phase.png``, ``<stem>.energy.png``, ``<stem>.particles.png``;
    on the sphere ``<stem>.sphere.png``), else
    the cross-validation figure (``<stem>.png``) and the clusters (``<stem>.clusters.png``).
    Every geometry a case can have is drawn (S^1, S^2, S^{d-1} with d > 3, R^d). Returns the
    paths."""
    if any(key.startswith("sweep/") for key in run.jobs()):
        return [plot_phase(case, phase_maps(run), out / f"{stem}.phase.png")]
    if any(key.startswith("transition/") for key in run.jobs()):
        return [plot_transition(case, read_branches(case, run), out / f"{stem}.transition.png")]
    if any(key.startswith("kinetic/") for key in run.jobs()):
        return plot_kinetic(case, run, out, stem)
    if any(key.startswith("kinetic_sphere/") for key in run.jobs()):
        return plot_kinetic_sphere(case, run, out, stem)
    return [
        plot_crossval(case, run, out / f"{stem}.png"),
        plot_clusters(case, run, out / f"{stem}.clusters.png"),
    ]
