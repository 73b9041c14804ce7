"""Run an interpolation case: build the Transformer, check it with both solvers, report.

:func:`run_interpolation_case` is what ``vlasov-tf interpolate`` runs (the command then draws
:func:`vlasov_tf.plots.plot_interpolation` from the returned results; figures are not made here,
so that this package does not import the plots, which import it). The printed report: the
switch count and the parameters' size against the paper's bounds, the W2 of each input to its
target for the construction's tokens, each input alone through the schedule, fresh samples,
the discrete Transformer at each depth, and the input densities on S^2 meshes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.interpolation.cases import InterpolationCase, check_interpolation_memory
from vlasov_tf.interpolation.checks import depth_study, grid_w2, particle_w2
from vlasov_tf.interpolation.construction import build_interpolation

_log = logging.getLogger(__name__)

__all__ = ["run_interpolation_case"]


def run_interpolation_case(
    case: InterpolationCase,
    *,
    levels: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Build the construction for ``case`` and check it (particles, fresh samples, depth, grid).

    ``levels``, ``layers``: the S^2 mesh levels of the grid check and the depths of the discrete
    Transformer (default: the case's; ``levels=()`` skips the grid). Each result goes to ``log``
    as a line once computed. Returns the :class:`Interpolation` (``"interp"``) and every number
    logged: ``w2_construction``, ``w2_rerun``, ``w2_fresh`` (N,); ``depth_layers`` (K,),
    ``depth_table`` (K, N), ``depth`` (int or None); ``grid_levels``, ``grid_w2`` (lists, one
    entry (N,) per level): what :func:`vlasov_tf.plots.plot_interpolation` draws.
    """
    levels_run = case.levels if levels is None else tuple(levels)
    check_interpolation_memory(case.source, case.tokens, len(case.inputs), case.d, levels_run)
    t0 = time.perf_counter()
    measures = case.measures()
    interp = build_interpolation(measures, case.targets, case.T, case.eps, rng=case.seed)
    log(interp.summary())
    log(f"construction: {interp.rk4_steps} RK4 steps, {time.perf_counter() - t0:.1f} s")
    res: dict[str, Any] = {"interp": interp, "w2_construction": interp.w2()}

    t1 = time.perf_counter()
    rerun = particle_w2(interp, measures)
    fresh = case.measures(np.random.default_rng(case.seed + 1))
    res["w2_rerun"], res["w2_fresh"] = rerun, particle_w2(interp, fresh)
    log(
        f"W2, each input alone through the schedule (RK4, {interp.rk4_steps} steps): "
        + ", ".join(f"{v:.3g}" for v in rerun)
        + f"   (eps = {case.eps:g})"
    )
    log(
        "W2, fresh samples of the inputs (not seen by the construction): "
        + ", ".join(f"{v:.3g}" for v in res["w2_fresh"])
        + f"   [{time.perf_counter() - t1:.1f} s]"
    )
    far = [i for i, v in enumerate(res["w2_fresh"]) if v > 2 * case.eps]
    if far:  # the schedule moved the samples it was built on, not the measures
        values = ", ".join(f"{res['w2_fresh'][i]:.3g}" for i in far)
        _log.warning(
            f"{case.source}: fresh samples of input(s) {', '.join(map(str, far))} end "
            f"{values} from their targets, beyond 2 eps = "
            f"{2 * case.eps:g}: the schedule separates the {case.tokens} samples it was built on, not "
            "the input measures (inputs too alike for so few tokens); do not trust this construction"
        )

    layers = case.layers if layers is None else tuple(layers)
    t1 = time.perf_counter()
    table, depth = depth_study(interp, measures, layers)
    res["depth_layers"], res["depth_table"], res["depth"] = np.array(layers), table, depth
    log("discrete Transformer (one residual layer per step, method 'layers'):")
    log("        L   " + "  ".join(f"W2[{i}]" for i in range(interp.N)))
    for L, row in zip(layers, table, strict=True):
        log(f"  {L:7d}   " + "  ".join(f"{v:.3g}" for v in row))
    log(
        f"  depth needed for W2 <= eps on every input: {depth if depth else '> ' + str(max(layers))}"
        f" ({interp.switches + 1} blocks)   [{time.perf_counter() - t1:.1f} s]"
    )

    levels = case.levels if levels is None else tuple(levels)
    res["grid_levels"], res["grid_w2"] = [], []
    if levels:
        log("grid (solve_grid, one run per input density, same schedule):")
        for level in levels:
            t1 = time.perf_counter()
            mesh = sphere_mesh(level)
            dens = [c.cell_averages(mesh) for c in case.inputs]
            w2 = grid_w2(interp, mesh, dens, cfl=case.cfl, max_dt=case.max_dt)
            res["grid_levels"].append(level)
            res["grid_w2"].append(w2)
            log(
                f"  level {level} ({mesh.n_cells} cells, h = {mesh.h:.3g}): W2 "
                + ", ".join(f"{v:.3g}" for v in w2)
                + f"   [{time.perf_counter() - t1:.1f} s]"
            )
    return res
