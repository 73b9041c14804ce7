"""Run a learning case: data, training with checkpoints and resume, evaluation on tokens and the grid.

:func:`run_learning_case` is what ``vlasov-tf learn`` runs (:func:`learn_command`: the command's
case, run file name, figure and exit status). Into ``<out>/<name>.h5``
(:mod:`.store`): the three splits' inputs and labels (:mod:`.data`), then the training
(:mod:`.training`; a killed run resumes from its last checkpoint when run again), then the
evaluation (:func:`evaluate`), each saved as it is done. Figures are drawn by the command from the
returned results (:func:`vlasov_tf.plots.learning.plot_learning`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vlasov_tf.analysis.wasserstein import wasserstein
from vlasov_tf.geometry.meshes import MeshGeometry, circle_mesh
from vlasov_tf.learning.cases import LearningCase, case_settings
from vlasov_tf.learning.data import SPLITS, label_tokens, split_tokens
from vlasov_tf.learning.network import init_params, to_schedule
from vlasov_tf.learning.store import LearningRun
from vlasov_tf.learning.training import Diverged, TrainState, predict, train
from vlasov_tf.models.base import MeanField
from vlasov_tf.plots.learning import plot_learning
from vlasov_tf.runs.overrides import run_name
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.particles import solve_particles

__all__ = ["CaseMismatch", "evaluate", "learn_command", "run_learning_case", "splits_record", "token_rms"]


class CaseMismatch(ValueError):
    """The run file was made by another case (or other overrides)."""


def splits_record(case: LearningCase) -> dict[str, Any]:
    """What regenerates the data: seed, counts, tokens, the family, the labels (stored as JSON)."""
    return {
        "seed": case.seed,
        "splits": {s: {"count": case.counts[s], "rng": [case.seed, SPLITS[s], "i", "n"]} for s in SPLITS},
        "tokens": case.tokens,
        "family": {"d": case.d, "bumps": list(case.family.bumps), "kappa": list(case.family.kappa),
                   "alpha": case.family.alpha},
        "labels": case.labels,
        "label_layers": case.label_layers if case.labels == "layers" else None,
    }  # fmt: skip


def token_rms(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean square over tokens (and measures) of ``|a_i - b_i|``: (..., d) arrays."""
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=-1))))


def _data(case: LearningCase, log: Callable[[str], object]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for s in SPLITS:
        t0 = time.perf_counter()
        out[s] = split_tokens(
            case.family, case.target, case.T, seed=case.seed, split=s, count=case.counts[s],
            n=case.tokens, labels=case.labels, layers=case.label_layers,
        )  # fmt: skip
        log(
            f"data: {s} {case.counts[s]} measures of {case.tokens} tokens"
            f"   [{time.perf_counter() - t0:.1f} s]"
        )
    return out


def _open_run(
    case: LearningCase,
    path: Path,
    overrides: Mapping[str, Any],
    overwrite: bool,
    log: Callable[[str], object],
) -> LearningRun:
    if path.exists() and not overwrite:
        run = LearningRun.open(path)
        if case_settings(run.case_text, json.loads(run.attrs["overrides"])) != case.settings:
            run.close()
            raise CaseMismatch(
                f"run file {path} was made by another case (its tables and --set values differ): "
                "pass --overwrite to start it afresh, or another --out"
            )
        at = run.state.step if run.state is not None else 0
        log(f"resuming {path} at step {at} of {case.steps}")
        return run
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _data(case, log)
    return LearningRun.create(
        path, case_text=case.text, case_name=case.name, overrides=overrides, arch=case.arch,
        splits=splits_record(case), data=data, overwrite=overwrite,
    )  # fmt: skip


def run_learning_case(
    case: LearningCase,
    out: str | Path = "out",
    *,
    overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    name: str | None = None,
    evaluate_run: bool = True,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Train (or resume) ``case`` into ``<out>/<name>.h5`` (``name``: default the case's) and
    evaluate it; returns the results.

    Results: ``history`` (k, 3), ``test_rms``, ``identity_rms`` (the labels' distance to the
    inputs: the error of doing nothing), ``schedule`` (the learned network), ``path``, and the
    arrays of :func:`evaluate` when the case has ``[evaluation]``. Raises
    :class:`~vlasov_tf.learning.training.Diverged` when the loss becomes NaN (the last checkpoint
    is kept) and :class:`CaseMismatch` when the run file is another case's.
    """
    overrides = dict(overrides or {})
    path = Path(out) / f"{name or case.name}.h5"
    run = _open_run(case, path, overrides, overwrite, log)
    try:
        arch = case.arch
        state = run.state or TrainState(0, init_params(arch, case.seed, case.init_scale), [])
        if state.step < case.steps:
            t0 = time.perf_counter()
            start = state.step
            log(f"training {arch.size()} parameters (L = {arch.layers}, {arch.blocks} blocks, "
                f"H = {arch.heads}, m = {arch.hidden}) for {case.steps} steps, {case.loss} loss, "
                f"on {jax.devices()[0]}")  # fmt: skip
            state = train(
                arch, state, run.data["train"], steps=case.steps, learning_rate=case.learning_rate,
                batch=case.batch, seed=case.seed, validation=run.data["validation"],
                checkpoint_every=case.checkpoint_every, checkpoint=run.checkpoint, log=log,
                loss=case.loss, epsilon=case.epsilon,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
            log(f"trained: {state.step - start} steps in {seconds:.1f} s "
                f"({(state.step - start) / max(seconds, 1e-9):.1f} steps/s)")  # fmt: skip
        elif run.state is None:  # steps = 0: the initial network is the result
            run.checkpoint(state)
        xt, yt = run.data["test"]
        pred = np.asarray(
            predict(arch, {k: jnp.asarray(v) for k, v in state.params.items()}, jnp.asarray(xt))
        )
        res: dict[str, Any] = {
            "path": path,
            "history": state.history,
            "test_rms": token_rms(pred, yt),
            "identity_rms": token_rms(xt, yt),
            "schedule": to_schedule(arch, state.params),
        }
        log(f"test: token RMS error {res['test_rms']:.3e} (doing nothing: {res['identity_rms']:.3e})")
        if evaluate_run and case.evaluation is not None:
            if "tokens" not in run.evaluation:
                run.evaluation = evaluate(case, res["schedule"], log=log)
                run.save()
            else:
                log("evaluation: stored in the run file")
            res |= run.evaluation
            log(format_evaluation(res))
        return res
    finally:
        run.close()


def _grid(case: LearningCase) -> MeshGeometry:
    assert case.evaluation is not None
    if case.geometry == "circle":
        return circle_mesh(case.evaluation.cells)
    from vlasov_tf.geometry.mesh_files import sphere_mesh

    return sphere_mesh(case.evaluation.level)


def _w1(
    case: LearningCase, a: tuple[np.ndarray, np.ndarray | None], b: tuple[np.ndarray, np.ndarray | None]
) -> float:
    """W1 between two weighted point sets: exact on the circle, the sliced W1 (200 directions) on
    S^2 always, so that values at every N and on the grid are of one metric."""
    method = "exact" if case.geometry == "circle" else "sliced"
    return wasserstein(a[0], a[1], b[0], b[1], geometry=case.geometry, method=method)[0]


def evaluate(
    case: LearningCase, learned: MeanField, log: Callable[[str], object] = print
) -> dict[str, np.ndarray]:
    """The learned network against the target on the first test measures, at every token count and
    on the grid.

    For test measure i (its density ``rho_i`` on the grid, its samples of N tokens):

    - ``token_error`` (I, K): token RMS of the learned L-layer network against the target's flow
      (rtol 1e-10) on N_k fresh tokens;
    - ``w1_tokens`` (I, K): W1 of the learned network's output measure to the target's grid
      solution (the measure-level error of the map at N tokens);
    - ``w1_sampling`` (I, K): W1 of the target's own tokens to its grid solution (the floor set
      by sampling N tokens and by the grid);
    - ``w1_grid`` (I,): W1 between the learned network's infinite-depth limit (its Schedule's
      Vlasov flow on the grid) and the target's grid flow: the error between measures.

    ``tokens`` (K,) the counts; ``example_*``: the grid's cell centres and the first measure's
    initial, target and learned densities at T. W1 exact on the circle, sliced (200 directions)
    on S^2.
    """
    assert case.evaluation is not None
    ev = case.evaluation
    mesh = _grid(case)
    counts = np.array(ev.tokens)
    n_meas, K = ev.measures, len(counts)
    out: dict[str, np.ndarray] = {
        k: np.full((n_meas, K), np.nan) for k in ("token_error", "w1_tokens", "w1_sampling")
    }
    out["w1_grid"] = np.full(n_meas, np.nan)
    out["tokens"] = counts.astype(float)
    L = case.arch.layers
    for i in range(n_meas):
        t0 = time.perf_counter()
        mixture = case.family.measure(case.seed, "test", i)
        rho0 = mixture.cell_averages(mesh)
        target_grid = solve_grid(mesh, rho0, case.target, case.T).final
        learned_grid = solve_grid(mesh, rho0, learned, case.T).final
        if i == 0:  # drawn by plots.learning: the first test measure on the grid
            out |= {"example_centres": mesh.centres, "example_initial": rho0,
                    "example_target": target_grid, "example_learned": learned_grid}  # fmt: skip
        grid_pts = (mesh.centres, target_grid * mesh.areas)
        out["w1_grid"][i] = _w1(case, (mesh.centres, learned_grid * mesh.areas), grid_pts)
        for k, n in enumerate(counts):
            x = case.family.tokens(case.seed, "test", i, int(n))
            y_learned = solve_particles(learned, x, method="layers", steps=L).final
            y_target = label_tokens(case.target, x, case.T)
            out["token_error"][i, k] = token_rms(y_learned, y_target)
            out["w1_tokens"][i, k] = _w1(case, (y_learned, None), grid_pts)
            out["w1_sampling"][i, k] = _w1(case, (y_target, None), grid_pts)
        log(f"evaluation: test measure {i}   [{time.perf_counter() - t0:.1f} s]")
    return out


def format_evaluation(res: Mapping[str, Any]) -> str:
    """The evaluation as a table: rows N (and the grid), columns the means over the test measures."""
    lines = [
        "   N        token RMS   W1(learned, target grid)   W1(target tokens, target grid)",
    ]
    for k, n in enumerate(res["tokens"]):
        lines.append(
            f"  {int(n):<8d} {np.mean(res['token_error'][:, k]):10.3e}   "
            f"{np.mean(res['w1_tokens'][:, k]):14.3e}             {np.mean(res['w1_sampling'][:, k]):14.3e}"
        )
    lines.append(
        f"  grid     {'':10s}   {np.mean(res['w1_grid']):14.3e}   (the learned Schedule's Vlasov flow)"
    )
    return "\n".join(lines)


def learn_command(
    case: LearningCase, out: Path, overrides: Mapping[str, Any], *, overwrite: bool = False
) -> int:
    """``vlasov-tf learn``: ``case`` (loaded with ``overrides``, the ``--set`` values) into
    ``<out>/<name>.h5`` (``name``: :func:`~vlasov_tf.runs.overrides.run_name`, so each set of
    overrides has its own file) and its figure ``<out>/<name>.png``; returns the exit status (1 when
    the training diverged, its last checkpoint kept)."""
    name = run_name(SimpleNamespace(name=case.name, overrides=tuple(overrides.items())))
    tic = time.perf_counter()
    try:
        res = run_learning_case(case, out, overrides=overrides, overwrite=overwrite, name=name)
    except Diverged as err:
        sys.stderr.write(f"vlasov-tf: error: {err}\n")
        return 1
    print(f"figure: {plot_learning(res, Path(out) / f'{name}.png', f'{case.name}: {case.description}')}")
    print(f"total {time.perf_counter() - tic:.1f} s")
    return 0
