"""Sweeps: a case's ensemble over beta (:mod:`vlasov_tf.runs.ensembles`) run into one run file.

A run file (:mod:`vlasov_tf.runs.storage`) holds one job per beta (``sweep/b<index>``, attribute ``beta``):
the positions of all its members (``members * N`` tokens, member-major) and the tables
``clusters`` and ``close`` (one value per member) at every output time. It resumes like any run:
complete betas are skipped, and a beta a kill interrupted is run again and stored from where its
file stops. Betas run in batches of at most ``BATCH_SCORES // (members N^2)`` and an eighth of
them (each batch is stored when done), their members moving together; under MPI the (beta,
member) pairs of a batch are dealt to the ranks in contiguous blocks and rank 0 stores them (the
values do not depend on the number of ranks).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from vlasov_tf.analysis.clusters import linking_distance
from vlasov_tf.memory import BYTES_PER_TOKEN_DIM, check_memory
from vlasov_tf.parallel import Comm, block_range, is_root, on_root, root_only
from vlasov_tf.runs.cases import Case, SweepSpec
from vlasov_tf.runs.ensembles import close_fraction, cluster_counts, ensemble_flow, member_stream, random_qkv
from vlasov_tf.runs.runner import open_run_file
from vlasov_tf.runs.storage import JobLayout, RunFile

__all__ = ["BATCH_SCORES", "check_sweep_memory", "run_sweep", "sweep_layouts"]

_log = logging.getLogger(__name__)

#: Scores (float64 entries of the (M, N, N) arrays) a batch of members may hold: ~32 MB.
BATCH_SCORES = 1 << 22


def _sweep(case: Case) -> SweepSpec:
    """The ``[sweep]`` table of ``case``, which a sweep needs."""
    if case.sweep is None:
        raise ValueError(f"{case.source}: no [sweep] table: `vlasov-tf run` runs this case")
    return case.sweep


def sweep_layouts(case: Case) -> list[JobLayout]:
    """A job per beta: all members' tokens, and their clusters and close pairs per output."""
    spec, n = _sweep(case), case.particles.tokens[0]
    tables = {"clusters": (spec.members,), "close": (spec.members,)}
    tokens = spec.members * n
    return [
        JobLayout(
            f"sweep/b{i:03d}", "particles", attrs={"beta": beta}, tables=tables, tokens=tokens, d=case.d
        )
        for i, beta in enumerate(spec.betas)
    ]


def check_sweep_memory(case: Case, ranks: int = 1) -> None:
    """:class:`~vlasov_tf.memory.TooLarge` naming the ensemble's size when a batch (at least one beta:
    every member's tokens at every output, their scores) would not fit in the memory available."""
    spec, n = _sweep(case), case.particles.tokens[0]
    tokens = spec.members * n
    outputs = len(case.output_times)
    need = tokens * case.d * (BYTES_PER_TOKEN_DIM + 8 * outputs) + 4 * 8 * spec.members * n * n
    check_memory(need / ranks, f"{case.source}: sweep.members {spec.members} x particles.tokens {n} "
                 f"({outputs} outputs){' per rank' if ranks > 1 else ''}")  # fmt: skip


def run_sweep(
    case: Case,
    path: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    comm: Comm | None = None,
) -> Path:
    """Run the sweep of ``case`` (its ``[sweep]`` table) into the run file ``path``; resumable
    (complete betas are skipped, a beta a kill interrupted is run again and stored from where its
    file stops). Under MPI the members of each batch are dealt to the ranks in contiguous
    blocks; rank 0 stores them (the values do not depend on the number of ranks)."""
    path = Path(path)
    spec, n = _sweep(case), case.particles.tokens[0]
    layouts = sweep_layouts(case)
    check_sweep_memory(case, 1 if comm is None else comm.size)
    if is_root(comm):  # as the command line does (`--out`)
        path.parent.mkdir(parents=True, exist_ok=True)
    opened: list[tuple[RunFile, bool]] = []
    on_root(comm, lambda: opened.append(open_run_file(case, path, layouts, resume=resume, overwrite=overwrite,
                                                      comm=comm)))  # fmt: skip
    run = opened[0][0] if opened else None
    try:
        todo = on_root(
            comm, lambda: [i for i, job in enumerate(layouts) if not root_only(run).is_complete(job.key)]
        )
        # Batches bounded by memory, and at least eight of them: each is stored when done.
        per_batch = max(1, min(BATCH_SCORES // (spec.members * n * n), -(-len(layouts) // 8)))
        x_members = np.stack([case.initial_tokens(n, sample=m)[0] for m in range(spec.members)])
        weights = np.full(spec.members * n, 1.0 / n)
        for first in range(0, len(todo), per_batch):
            batch = todo[first : first + per_batch]
            tic = time.perf_counter()
            results = _run_batch(case, batch, x_members, comm)
            if is_root(comm):
                for b, (positions, counts, close) in zip(batch, results, strict=True):
                    _store(root_only(run), layouts[b], weights, positions, counts, close, case.output_times)
                log_batch(np.array([spec.betas[b] for b in batch]), spec.members, time.perf_counter() - tic)
    finally:
        if run is not None:
            run.close()
    return path


def _run_batch(
    case: Case, batch: list[int], x_members: np.ndarray, comm: Comm | None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(positions (n_t, members, N, d), clusters (n_t, members), close (n_t, members)) of each beta
    of ``batch`` on rank 0 (an empty list elsewhere)."""
    spec = _sweep(case)
    members, times = spec.members, case.output_times
    pairs = [(b, m) for b in batch for m in range(members)]
    lo, hi = (0, len(pairs)) if comm is None else block_range(len(pairs), comm.size, comm.rank)
    mine = pairs[lo:hi]
    betas = np.array([spec.betas[b] for b, _ in mine], dtype=np.float64)
    radius = np.array([linking_distance(beta, case.clusters.scale) for beta in betas])
    x0 = x_members[[m for _, m in mine]]
    n_t = len(times)
    positions = np.empty((n_t, *x0.shape))
    counts = np.empty((n_t, len(mine)))
    close = np.empty((n_t, len(mine)))

    def draw(period: int) -> tuple[np.ndarray | None, ...]:
        if spec.parameters == "identity":
            return None, None, None  # the batched field skips the products
        qkv = [random_qkv(spec.parameters, case.d, member_stream(spec.seed, m, period)) for _, m in mine]
        return tuple(np.array([p[i] for p in qkv]).reshape(len(mine), case.d, case.d) for i in range(3))

    def record(i: int, x: np.ndarray) -> None:
        positions[i] = x
        if len(mine):
            counts[i] = cluster_counts(x, radius, case.clusters.trim, case.clusters.min_mass)
            close[i] = close_fraction(x, spec.close)

    if len(mine):
        attention = case.schedule.blocks[0][1].attention
        ensemble_flow(x0, draw, betas, times, spec.steps, spec.redraw, attention, record)
    if comm is not None:
        gathered = comm.gather((positions, counts, close), root=0)
        if comm.rank != 0:
            return []
        positions = np.concatenate([g[0] for g in gathered], axis=1)
        counts = np.concatenate([g[1] for g in gathered], axis=1)
        close = np.concatenate([g[2] for g in gathered], axis=1)
    out = []
    for j in range(len(batch)):
        cols = slice(j * members, (j + 1) * members)
        out.append((positions[:, cols], counts[:, cols], close[:, cols]))
    return out


def _store(run: RunFile, job: JobLayout, weights: np.ndarray, positions: np.ndarray, counts: np.ndarray,
           close: np.ndarray, times: np.ndarray) -> None:  # fmt: skip
    """One beta's outputs into its job, from where a killed run's file stops."""
    run.start_job(job.key, "particles", weights=weights, **job.attrs)
    stored = run.job_info(job.key)["n"]
    for i, t in enumerate(times):
        run.add_row(job.key, "clusters", t, counts[i])
        run.add_row(job.key, "close", t, close[i])
        if i >= stored:
            run.append(job.key, t, positions[i].reshape(-1, positions.shape[-1]))
    run.finish_job(job.key)


def log_batch(betas: np.ndarray, members: int, seconds: float) -> None:
    rate = len(betas) * members / seconds if seconds > 0 else math.inf
    span = f"{betas[0]:g}" if len(betas) == 1 else f"{betas[0]:g} .. {betas[-1]:g}"
    _log.info(f"sweep: beta = {span} done ({len(betas)} x {members} members, {rate:.1f} members/s)")
