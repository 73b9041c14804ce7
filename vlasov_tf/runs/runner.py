"""Cross-validation of the two solvers: a case's jobs, run into one file (then its diagnostics).

A case (:mod:`vlasov_tf.runs.cases`) defines

- grid jobs ``grid/<res>``: the finite-volume solution on each mesh resolution
  (circle: M cells, ``grid/M1024``; sphere: level K, ``grid/K2``);
- particle jobs ``particles/N<N>_L<L>``: a deep Transformer of L layers acting on
  N tokens sampled from rho_0, and ``particles/N<N>_ref``: the same tokens moved
  by the continuous-time flow (RK4 with ``reference_steps``, or DOP853 when 0);
  with ``particles.samples = S > 1`` also ``particles/N<N>s<s>_ref`` (s = 1 .. S-1):
  independent token sets under the continuous flow, for the spread of the N-study.

The run file (:class:`vlasov_tf.runs.storage.RunFile`) is laid out for every job of the
case (:func:`job_layouts`) and every diagnostic (:data:`~vlasov_tf.runs.diagnostics.DIAGNOSTICS`)
before anything is computed; every snapshot is written to it the moment a solver reaches an
output time, so a crash loses at most the interval in progress; ``resume=True`` skips finished
jobs and restarts the others from their last stored snapshot (the solvers resume bit-exactly,
see their ``t0``).

The diagnostics (:mod:`vlasov_tf.runs.diagnostics`: mass, energy, the distances between the
jobs, clusters, steps and timings) are computed on the stored snapshots once the jobs are done;
the clusters, steps and timings are written as the run goes.

The run file also keeps the case's settings and overrides (a resume must match them:
:func:`check_same_case`) and its provenance (:func:`vlasov_tf.runs.storage.provenance`).

Tokens come from :meth:`Case.initial_tokens` (a stream keyed to (seed, N), or
deterministic quantiles): every depth L sees the same N tokens.

Under MPI (``comm``) every rank runs every job's solver on its share; rank 0
alone opens the run file, stores the snapshots (gathered in global order),
decides what a resume skips and where it restarts (broadcast to the others),
and computes the diagnostics. A run file records the number of ranks it was
started on (its provenance) and resumes on any.

Design notes: docs/design.md §1 and §5; docs/numerics.md §5.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vlasov_tf.geometry.meshes import SPHERE_LEVEL0_CELLS
from vlasov_tf.memory import BYTES_PER_CELL, BYTES_PER_TOKEN_DIM, available_memory, check_memory
from vlasov_tf.parallel import Comm, is_root, on_root, root_only
from vlasov_tf.runs.cases import Case, case_settings, settings_difference
from vlasov_tf.runs.diagnostics import (
    DIAGNOSTICS,
    RUN_DIAGNOSTICS,
    Job,
    clusters_of,
    compute_diagnostics,
    run_jobs,
)
from vlasov_tf.runs.storage import JobLayout, RunFile, provenance
from vlasov_tf.solvers.causal_grid import solve_causal_grid
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.particles import solve_particles
from vlasov_tf.solvers.time_loop import Callback, StepCounts

_log = logging.getLogger(__name__)

__all__ = [
    "BYTES_PER_CELL",
    "BYTES_PER_TOKEN_DIM",
    "MAX_DEEP_PAIRS",
    "MAX_DEEP_TOKEN_LAYERS",
    "CaseMismatch",
    "available_memory",
    "case_jobs",
    "check_disk",
    "check_same_case",
    "check_sizes",
    "job_layouts",
    "open_run_file",
    "run_case",
]


#: Deep-Transformer runs costing more token pairs than this (N^2 L) are left out when their
#: sums are dense (d >= 4 or euclidean: at ~1e9 pairs/s on 2 cores 1e12 is about 20 minutes).
#: The continuous-time reference of every N still runs.
MAX_DEEP_PAIRS = 1e12
#: On S^1 and S^2 (spectral sums, linear in N) the limit is on token-layers N L instead, a few
#: minutes on 2 cores: on S^2 1e8 (N = 1e6 with L <= 100, N = 1e5 with L <= 1000), on the circle
#: 1e9 (N = 1e5 with L <= 1e4; its transforms are one-dimensional).
MAX_DEEP_TOKEN_LAYERS = {"circle": 1e9, "sphere": 1e8}


def case_jobs(case: Case, solvers: tuple[str, ...] = ("grid", "particles")) -> list[Job]:
    """The jobs of ``case`` in run order: grids coarse to fine, then particles by N, reference first.

    Deep runs with ``N^2 L > MAX_DEEP_PAIRS`` are left out where the sums are dense (d >= 4,
    euclidean, or ``particles.field_method`` "dense" or "taylor"), with
    ``N L > MAX_DEEP_TOKEN_LAYERS[geometry]`` where they are spectral (S^1, S^2); after each N's
    reference and depths come its other samples' references.
    """
    jobs = []
    if "grid" in solvers and case.grid is not None:
        tag = "M" if case.geometry == "circle" else "K"
        jobs += [Job(f"grid/{tag}{r}", "grid", resolution=r) for r in sorted(case.grid.resolutions)]
    if "particles" in solvers:
        spectral = (
            case.geometry in ("circle", "sphere")
            and case.d in (2, 3)
            and case.particles.field_method in ("auto", "spectral")
        )
        limit = MAX_DEEP_TOKEN_LAYERS.get(case.geometry, 0.0)
        for n in sorted(case.particles.tokens):
            jobs.append(Job(f"particles/N{n}_ref", "particles", tokens=n))
            jobs += [
                Job(f"particles/N{n}_L{L}", "particles", tokens=n, layers=L)
                for L in sorted(case.particles.layers)
                if (n * L <= limit if spectral else n * n * L <= MAX_DEEP_PAIRS)
            ]
            jobs += [
                Job(f"particles/N{n}s{s}_ref", "particles", tokens=n, sample=s)
                for s in range(1, case.particles.samples)
            ]
    return jobs


def job_layouts(case: Case) -> list[JobLayout]:
    """What the run file allocates for ``case``: every job of both solvers (a run of one solver can
    be resumed with the other)."""
    out = []
    tables = {"clusters": (case.clusters.max_clusters, case.d + 2)}  # clusters.Clusters.table
    for job in case_jobs(case):
        attrs = {k: v for k, v in job.attrs.items() if k != "kind"}
        if job.kind == "grid":
            mesh = job.mesh(case)
            grid_tables = tables
            if case.mask == "causal":  # the slices' densities, to resume from (the snapshot: their sum)
                grid_tables = tables | {"slices": (case.slices, mesh.n_cells)}
            out.append(JobLayout(job.key, job.kind, mesh=mesh, attrs=attrs, tables=grid_tables))
        else:
            out.append(JobLayout(job.key, job.kind, tokens=job.tokens, d=case.d, attrs=attrs, tables=tables))
    return out


def _run_job(
    case: Case,
    job: Job,
    run: RunFile | None,
    progress: bool,
    comm: Comm | None = None,
) -> None:
    """One job; ``run`` is None on the ranks other than 0. Logs its timings when done."""
    stored = on_root(comm, lambda: root_only(run).job_state(job.key))
    mesh = job.mesh(case) if job.kind == "grid" else None
    weights: np.ndarray | None = None
    if mesh is not None:
        start = case.initial.cell_averages(mesh)
    else:
        assert job.tokens is not None  # a particle job
        start, weights = case.initial_tokens(job.tokens, job.sample or 0)
    attrs = {k: v for k, v in job.attrs.items() if k != "kind"}
    on_root(comm, lambda: root_only(run).start_job(job.key, job.kind, mesh=mesh, weights=weights, **attrs))
    causal = job.kind == "grid" and case.mask == "causal"
    if causal:  # equal slices of s, each with the initial density's share
        start = np.tile(start / case.slices, (case.slices, 1))
    t0 = 0.0
    if stored is not None and len(stored[0]):
        t0, start = float(stored[0][-1]), stored[1][-1]
        if causal:
            t_rows, rows = on_root(comm, lambda: root_only(run).table(job.key, "slices"))
            start = rows[int(np.flatnonzero(t_rows == t0)[0])]
        _log.info(f"{job.key}: resuming at t = {t0:g} ({len(stored[0])} snapshots stored)")

    tic = time.perf_counter()
    clock = [tic]
    counts = {"snapshots": 0, "steps": 0, "rejected": 0}
    if mesh is not None and mesh.char_length > case.linking_distance:
        _log.warning(f"{job.key}: cells ({mesh.char_length:.3g}) wider than the clusters' linking "
                     f"distance {case.linking_distance:.3g}: its clusters will fragment")  # fmt: skip

    def store(t: float, state: np.ndarray) -> None:
        out = root_only(run)
        if causal:  # the slices to resume from; the snapshot is their sum (the x-marginal)
            if stored is None or not len(stored[0]) or t > t0:
                out.add_row(job.key, "slices", t, state)
            state = state.sum(axis=0)
        if stored is None or not len(stored[0]) or t > t0:  # the snapshot at t0 is already stored
            # Before the snapshot, as the step counts: a resume restarts after the last snapshot.
            found = clusters_of(case, state, mesh=mesh, weights=weights)
            now = time.perf_counter()  # the output's wall time includes its clusters
            out.add_row(job.key, "clusters", t, found.table(case.clusters.max_clusters))
            # Wall seconds since the previous output (or the job's start): timings per job, kept
            # across a resume.
            wall = now - clock[0]
            out.add_diagnostics([("clusters", job.key, t, found.count), ("wall_s", job.key, t, wall)])
            out.append(job.key, t, state)
            counts["snapshots"] += 1
            _log.debug(f"{job.key}: t = {t:g} stored ({now - clock[0]:.2f} s)")
            clock[0] = now

    def count_steps(t: float, taken: int, rejected: int) -> None:
        if t > t0:  # at t0 a resumed run has taken nothing yet: keep what is stored
            root_only(run).add_diagnostics(
                [("steps", job.key, t, taken), ("rejected_steps", job.key, t, rejected)]
            )
            counts["steps"] += taken
            counts["rejected"] += rejected

    times = case.output_times
    # The step counts before the snapshot (a run killed between the two recounts them).
    to_file = Callback(store)
    trackers = [StepCounts(count_steps), to_file]
    if mesh is not None:
        grid = case.grid
        assert grid is not None  # case_jobs has grid jobs only then
        scheme = grid.scheme
        if causal:
            # Fixed CFL steps, as causal jobs have always taken: [grid] rtol and atol apply to
            # the unmasked grid only (with them, a causal run file's results would change).
            solve_causal_grid(mesh, start, case.model, T=case.T, t_eval=times, t0=t0, progress=progress,
                              scheme=replace(scheme, rtol=None), trackers=trackers)  # fmt: skip
        else:
            solve_grid(mesh, start, case.model, case.T, t_eval=times, t0=t0, progress=progress, comm=comm,
                       scheme=scheme, trackers=trackers)  # fmt: skip
    else:
        assert job.tokens is not None  # a particle job
        ref_steps = case.particles.reference_steps
        noisy = case.model.noise > 0
        steps: int | None
        if job.layers is not None:
            method, steps = "layers", job.layers
        elif noisy:  # no continuous-time ODE: the noisy Transformer of reference_steps layers
            method, steps = "layers", ref_steps
        else:
            method, steps = ("rk4", ref_steps) if ref_steps else ("adaptive", None)
        solve_particles(
            case.model,
            start,
            weights,
            T=case.T,
            method=method,
            steps=steps,
            t_eval=times,
            sphere=case.geometry != "euclidean",
            field_method=case.particles.field_method,
            norm=case.particles.norm,
            causal_s=case.token_positions(job.tokens),
            progress=progress,
            trackers=[to_file],
            t0=t0,
            comm=comm,
            # Every depth of one token set shares the reference's Brownian path (coupled kicks).
            noise_seed=(case.particles.seed, job.tokens, job.sample or 0),
            noise_grid=ref_steps if noisy else None,
        )
    on_root(comm, lambda: root_only(run).finish_job(job.key))
    taken = f", {counts['steps']} steps ({counts['rejected']} rejected)" if job.kind == "grid" else ""
    seconds = time.perf_counter() - tic
    _log.info(f"{job.key}: done in {seconds:.1f} s ({counts['snapshots']} snapshots{taken})")


def run_case(
    case: Case,
    path: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    solvers: tuple[str, ...] = ("grid", "particles"),
    progress: bool = False,
    comm: Comm | None = None,
    diagnostics: bool = True,
) -> Path:
    """Run every job of ``case`` into the HDF5 file ``path`` (and its XDMF companions), then the diagnostics.

    ``comm``: run every solver on the ranks of this mpi4py communicator (module docstring).
    ``diagnostics=False`` skips the distances, mass and energy afterwards (the steps and timings
    written as the jobs run stay); ``vlasov-tf study`` or
    :func:`~vlasov_tf.runs.diagnostics.compute_diagnostics` add them later.
    """
    path = Path(path)
    root = is_root(comm)
    if case.mask == "causal" and comm is not None:
        raise ValueError(f"{case.source}: causal attention (model.mask) runs serially, without mpiexec")

    # What can be checked before the run file is touched: sizes against the memory, then the
    # meshes (a missing or damaged level must not cost an existing run file under overwrite).
    if "particles" not in solvers and case.grid is None:
        why = "R^d has no grid solver" if case.geometry == "euclidean" else "no [grid] table"
        raise ValueError(f"{case.source}: the grid solver alone was asked for; the case has no grid ({why})")
    check_sizes(case, solvers, 1 if comm is None else comm.size)
    layouts = job_layouts(case)
    if root:  # as the command line does (`--out`): the directory the user named
        path.parent.mkdir(parents=True, exist_ok=True)
    opened: list[tuple[RunFile, bool]] = []  # the writer's file stays on rank 0
    on_root(comm, lambda: opened.append(open_run_file(case, path, layouts, DIAGNOSTICS, resume=resume,
                                                      overwrite=overwrite, comm=comm)))  # fmt: skip
    run, created = opened[0] if opened else (None, False)
    try:
        jobs = case_jobs(case, solvers)
        complete = on_root(comm, lambda: [root_only(run).is_complete(job.key) for job in jobs])
        for job, done in zip(jobs, complete, strict=True):
            if done:
                _log.info(f"{job.key}: complete, skipped")
                continue
            _log.info(f"{job.key}: running")
            _run_job(case, job, run, progress, comm)
        if diagnostics:
            if root:
                reader = root_only(run)
                _log.info(f"diagnostics of {len(run_jobs(reader))} jobs at {len(case.output_times)} times")
            else:
                reader = RunFile.open(path, mode="r")
            try:
                compute_diagnostics(case, reader, comm)
            finally:
                if not root:
                    reader.close()
    except BaseException:
        # A run that fails before computing anything (past its initial snapshots) leaves no file
        # behind, so that the next plain run is not refused for an empty one.
        if run is not None and created and not _computed(run):
            run.discard()
            run = None
        raise
    finally:
        if run is not None:
            run.close()
    return path


def check_sizes(case: Case, solvers: tuple[str, ...] = ("grid", "particles"), ranks: int = 1) -> None:
    """ValueError, with the estimate, for a job whose share per rank would not fit in memory.

    Before anything is allocated: a circle of 1e9 cells or 1e9 tokens ended in numpy's memory
    error after trying to take many GiB.
    """
    sizes = []
    # Every snapshot stays in memory too (the solvers return them): 8 bytes a value an output.
    outputs = len(case.output_times)
    if "grid" in solvers and case.grid is not None:
        for res in case.grid.resolutions:
            cells = res if case.geometry == "circle" else SPHERE_LEVEL0_CELLS * 4**res
            need = cells * (BYTES_PER_CELL + 8 * outputs)
            sizes.append(("grid.resolutions", f"{res} ({cells} cells, {outputs} outputs)", need))
    if "particles" in solvers:
        for n in case.particles.tokens:
            need = n * case.d * (BYTES_PER_TOKEN_DIM + 8 * outputs)
            sizes.append(("particles.tokens", f"{n} ({outputs} outputs)", need))
    hint = " (run it on more ranks)" if case.geometry != "euclidean" else ""
    for key, what, need in sizes:
        per = " per rank" if ranks > 1 else ""
        check_memory(need / ranks, f"{case.source}: {key} {what}{per}", hint=hint)


def open_run_file(
    case: Case,
    path: Path,
    layouts: list[JobLayout],
    diagnostics: tuple[str, ...] = (),
    *,
    resume: bool,
    overwrite: bool,
    comm: Comm | None = None,
) -> tuple[RunFile, bool]:
    """(the run file of ``case`` at ``path``, whether it was made now): with ``resume`` an existing
    one, after :func:`check_same_case`, with what fails its checksum made to be redone; else a new one
    laid out for ``layouts`` and
    ``diagnostics``, after :func:`check_disk`. The case's settings, overrides and provenance go
    with it."""
    settings = case_settings(case)
    if resume and path.exists():
        run = RunFile.open(path)
        try:
            check_same_case(run, case, settings)
            # What fails its checksum is redone, not taken for done (the jobs from before it).
            for line in run.redo_damaged(layouts, with_job=RUN_DIAGNOSTICS):
                _log.warning(line)
        except BaseException:
            run.close()
            raise
        return run, False
    check_disk(path, layouts, len(case.output_times))
    run = RunFile.create(
        path,
        case.text,
        case.name,
        jobs=layouts,
        times=case.output_times,
        diagnostics=diagnostics,
        settings=settings,
        overrides=case.overrides,
        provenance=provenance(1 if comm is None else comm.size),
        overwrite=overwrite,
    )
    return run, True


def check_disk(path: Path, layouts: list[JobLayout], outputs: int) -> None:
    """OSError naming the sizes when the disk under ``path`` cannot hold the run file (it is
    allocated whole when created)."""
    need = outputs * sum(layout.nbytes for layout in layouts)
    folder = path.parent if path.parent.exists() else Path(".")
    free = shutil.disk_usage(folder).free
    if need > free:
        raise OSError(
            f"{path}: the run file needs {need / 2**30:.2f} GiB ({outputs} outputs of {len(layouts)} "
            f"jobs), the disk has {free / 2**30:.2f} GiB free"
        )


def _computed(run: RunFile) -> bool:
    """Whether any job of ``run`` stored a snapshot after its start (t > 0)."""
    for key in run.jobs():
        stored = run.job_state(key)
        assert stored is not None  # a key of run.jobs()
        times = stored[0]
        if len(times) and float(times.max()) > 0:
            return True
    return False


class CaseMismatch(ValueError):
    """A resume with a case (or overrides, or defaults) other than the one the run file was run with."""


def check_same_case(run: RunFile, case: Case, settings: dict[str, str] | None = None) -> None:
    """Raise :class:`CaseMismatch`, naming the first difference, unless ``case`` is what ``run`` ran.

    The run file's settings (:func:`vlasov_tf.runs.cases.case_settings`) against the case's now; a
    file written before settings were recorded is compared by its case text and overrides.
    """
    stored = run.settings
    if stored is None:
        same = run.case_text == case.text and not case.overrides
        diff = None if same else "its case text (a file older than recorded settings: the text must be equal)"
    else:
        diff = settings_difference(stored, case_settings(case) if settings is None else settings)
    if diff is not None:
        raise CaseMismatch(
            f"{run.path}: cannot resume with another case: {diff}. Resume with the case it was run "
            "with (its text is in the run file), or start afresh with --overwrite"
        )
