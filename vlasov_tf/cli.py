"""The ``vlasov-tf`` command line: what each subcommand does, and the entry point. The arguments are
:mod:`vlasov_tf.cli_arguments`; the work is in :mod:`vlasov_tf.runs.runner`,
:mod:`vlasov_tf.runs.studies`, :mod:`vlasov_tf.interpolation.runner` and :mod:`vlasov_tf.plots`.

Subcommands
-----------
``study [CASE] [--full]``
    The cross-validation (the README's main job): run a case with both solvers
    into ``out/<name>.h5``, print W1 rate tables in L, N and h, save a figure.
``run CASE [--solver grid|particles|both] [--resume] [--set KEY=VALUE ...] [--name NAME]``
    Run a case file into one HDF5 run file (and its XDMF companions); ``--set``
    overrides case entries (recorded in the run file, and in its default name). Under
    ``mpiexec -n P`` (or ``srun``) every solver runs on the P ranks and rank 0
    writes the file; an error on any rank aborts the job with its message.
``sweep CASE``
    An ensemble over beta (the case's ``[sweep]`` table, :mod:`vlasov_tf.runs.sweeps`) into
    ``out/<name>-sweep.h5``: (beta, t) maps of the number of clusters and the fraction of close
    pairs over the members, printed and drawn.
``transition CASE``
    Stationary states against the noise (the case's ``[transition]`` table,
    :mod:`vlasov_tf.runs.transitions`) into ``out/<name>-transition.h5``: the grid's order
    parameter scanned up and down in sigma, token ensembles, the critical noise of linear
    theory; printed and drawn (the bifurcation diagram).
``kinetic CASE``
    Second-order tokens (the case's ``[kinetic]`` table, :mod:`vlasov_tf.runs.kinetic_runs`) into
    ``out/<name>-kinetic.h5``: the phase-space grids and the second-order tokens, printed as orders
    in h, L and N, conservation and the HMF theory, drawn as f(theta, v), the energy exchange and
    the tokens' distances; on the sphere (serial) the tangent-bundle grid against the tokens
    (:mod:`vlasov_tf.runs.kinetic_sphere_runs`); ``study`` of a kinetic case runs the same.
``plot RUNFILE``
    Figures of a stored run (or sweep, or transition scan); ``run`` draws the same ones unless
    ``--no-plot``.
``particles [CASE]``
    Depth convergence on the circle (default ``cases/circle_clustering.toml``): L-layer
    Transformers against the continuous-time flow; a table of errors and orders, and a figure.
``interpolate [CASE] [--out DIR] [--levels K ...] [--layers L ...]``
    The interpolating Transformer of the first seed paper (:mod:`vlasov_tf.interpolation`) for
    an interpolation case (default: the shipped ``cases/interpolation.toml``): build it, check
    it with both solvers, print the switch count, the norms against the paper's bounds and the
    W2 tables, save ``<out>/<name>.png``.
``learn [CASE] [--out DIR] [--set KEY=VALUE ...] [--overwrite]``
    Fit a deep Transformer to the solution map of a target flow (:mod:`vlasov_tf.learning`, needs
    the ``learn`` extra: JAX and optax) into ``<out>/<name>.h5``, resumed from its last checkpoint
    when run again; prints the test error and the evaluation, saves ``<out>/<name>.png``.
``cases [NAME]``
    The shipped cases with their descriptions; with NAME, that case's text (to redirect into a
    file and edit). Every command that takes a case file also takes a shipped case's bare name.
``mesh``
    Build the sphere meshes of :mod:`vlasov_tf.geometry.mesh_files` (gmsh through FiPy) into
    ``meshes/sphere_L{level}.h5``, once, serially, for runs that load them.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np

from vlasov_tf import cli_arguments
from vlasov_tf.geometry.mesh_files import build_sphere_mesh, load_mesh
from vlasov_tf.geometry.meshes import SPHERE_LEVELS, mesh_quality
from vlasov_tf.interpolation.cases import load_interpolation_case
from vlasov_tf.interpolation.runner import run_interpolation_case
from vlasov_tf.kernels import num_threads
from vlasov_tf.logs import configure, log_file
from vlasov_tf.parallel import CollectiveExit, abort_on_error, is_root, on_root, world
from vlasov_tf.plots import (
    plot_clusters,
    plot_crossval,
    plot_depth_convergence,
    plot_interpolation,
    plot_phase,
    plot_transition,
)
from vlasov_tf.plots.movies import save_movie
from vlasov_tf.plots.run_files import case_of_run, plot_run
from vlasov_tf.runs.cases import CASES_DIR, Case, case_summary, load_case, shipped_cases
from vlasov_tf.runs.depth_study import (
    check_depth_study,
    depth_convergence,
    depth_study_beta,
    format_report,
)
from vlasov_tf.runs.ensembles import phase_maps
from vlasov_tf.runs.kinetic_runs import SPHERE_SERIAL, full_kinetic, kinetic_report, run_kinetic
from vlasov_tf.runs.overrides import parse_overrides, run_name
from vlasov_tf.runs.runner import CaseMismatch, run_case
from vlasov_tf.runs.stability import format_lipschitz, lipschitz_estimate
from vlasov_tf.runs.storage import RunFile, RunFileError
from vlasov_tf.runs.studies import (
    crossval_tables,
    format_clusters,
    format_phase,
    format_tables,
    full_study,
    grid_against_deep,
)
from vlasov_tf.runs.sweeps import run_sweep
from vlasov_tf.runs.transitions import format_branches, read_branches, run_transition

_log = logging.getLogger(__name__)
T = TypeVar("T")


__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (:mod:`vlasov_tf.cli_arguments`) with this module's handlers."""
    return cli_arguments.build_parser(HANDLERS)



def _cmd_particles(args: argparse.Namespace) -> int:
    case = _load(args)
    try:
        check_depth_study(args.tokens, args.layers)
        depth_study_beta(case)
    except ValueError as err:
        _refuse(str(err))
    tic = time.perf_counter()
    res = depth_convergence(case, args.tokens, args.layers, seed=args.seed, progress=args.progress)
    print(format_report(res))
    tic_plot = time.perf_counter()
    path = plot_depth_convergence(res, args.out / "particles_depth_convergence.png")
    t_plot = time.perf_counter() - tic_plot
    print(f"figure: {path}")
    s = res.seconds
    print(
        f"wall time: {time.perf_counter() - tic:.1f} s (reference {s['reference']:.1f} s, reference check "
        f"{s['reference_check']:.1f} s, {len(res.layers)} depths {s['layers']:.1f} s, figure {t_plot:.1f} s; "
        f"{num_threads()} threads)"
    )
    return 0


def _cmd_cases(args: argparse.Namespace) -> int:
    if args.name is not None:
        name = Path(args.name)
        if name.parent != Path(".") or not (CASES_DIR / f"{name.stem}.toml").is_file() or (
            name.suffix not in ("", ".toml")
        ):
            known = ", ".join(p.stem for p in shipped_cases())
            _refuse(f"no shipped case {args.name!r} (shipped: {known})")
        sys.stdout.write((CASES_DIR / f"{name.stem}.toml").read_text(encoding="utf-8"))
        return 0
    paths = shipped_cases()
    width = max((len(p.stem) for p in paths), default=0)
    print(f"{'case':<{width}}  {'command':<11}  description")
    for path in paths:
        command, description = case_summary(path)
        print(f"{path.stem:<{width}}  {command:<11}  {description}")
    print(f"\n({len(paths)} cases in {CASES_DIR}; `vlasov-tf cases NAME > mine.toml` to start your own)")
    return 0


def _cmd_mesh(args: argparse.Namespace) -> int:
    levels = SPHERE_LEVELS if args.all else sorted(set(args.level))
    print(
        f"{'level':>5} {'cells':>8} {'faces':>8} {'h':>8} {'max/min area':>12} {'angles (deg)':>12} "
        f"{'tri/vertex':>10} {'build (s)':>9} {'size (MB)':>9}  file"
    )
    for level in levels:
        tic = time.perf_counter()
        path = build_sphere_mesh(level, args.dir)
        seconds = time.perf_counter() - tic
        mesh = load_mesh(path)
        valence = np.bincount(mesh.cell_vertices.ravel())
        q = mesh_quality(mesh)
        angles = f"{q['min_angle']:.1f}-{q['max_angle']:.1f}"
        print(
            f"{level:>5} {mesh.n_cells:>8} {mesh.n_faces:>8} {mesh.h:>8.5f} {q['area_ratio']:>12.3f} "
            f"{angles:>12} {f'{valence.min()}-{valence.max()}':>10} "
            f"{seconds:>9.1f} {path.stat().st_size / 1e6:>9.2f}  {path}",
            flush=True,
        )
    return 0


def _cmd_interpolate(args: argparse.Namespace) -> int:
    case = _read(args, lambda: load_interpolation_case(args.case))
    if args.levels and case.d != 3:
        _refuse(f"--levels: the grid check runs on S^2 meshes (d = 3); {args.case} has case.d = {case.d}")
    tic = time.perf_counter()
    res = run_interpolation_case(case, levels=args.levels, layers=args.layers)
    print(f"figure: {plot_interpolation(res['interp'], res, args.out / f'{case.name}.png')}")
    print(f"total {time.perf_counter() - tic:.1f} s")
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    try:
        from vlasov_tf.learning.cases import load_learning_case
        from vlasov_tf.learning.runner import learn_command
    except ImportError as err:
        _refuse(f"`learn` needs the 'learn' extra (JAX, optax): pip install 'vlasov_tf[learn]' ({err})")
    overrides = _read(args, lambda: parse_overrides(args.set))
    case = _read(args, lambda: load_learning_case(args.case, overrides or None))
    return learn_command(case, args.out, overrides, overwrite=args.overwrite)


def _refuse(message: str) -> NoReturn:
    """A user's mistake the parser could not see (a bad case, an existing file): one line, exit 2
    (argparse's own errors come with the usage). Under MPI every rank finds it alike: rank 0 says
    it, and the ranks exit together (:class:`~vlasov_tf.parallel.CollectiveExit`)."""
    if is_root(world()):
        sys.stderr.write(f"vlasov-tf: error: {message}\n")
    raise CollectiveExit(2)


def _read(args: argparse.Namespace, load: Callable[[], T]) -> T:
    """``load()`` of a case file; a bad one is one line, exit 2 (``--debug``: the traceback)."""
    try:
        return load()
    except (ValueError, FileNotFoundError) as err:
        if args.debug:
            raise
        _refuse(str(err))


def _load(args: argparse.Namespace) -> Case:
    """The case of ``args.case`` with the ``--set`` overrides."""
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        _refuse("--resume and --overwrite contradict each other: pass one")
    return _read(args, lambda: load_case(args.case, overrides=parse_overrides(args.set) or None))


def _run(args: argparse.Namespace, case, solvers: tuple[str, ...] = ("grid", "particles"), *,
         sweep: bool = False, transition: bool = False, kinetic: bool = False) -> Path:  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = run_name(case, args.name)
    if getattr(args, "full", False) and args.name is None:
        stem += "-full"  # its own file: the main job's run of the same case is kept beside it
    if sweep and args.name is None:
        stem += "-sweep"  # beside the case's own run
    if transition and args.name is None:
        stem += "-transition"
    if kinetic and args.name is None:
        stem += "-kinetic"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", stem):
        _refuse(f"--name {stem!r}: use letters, digits, '.', '_' and '-' only")
    path = args.out / f"{stem}.h5"
    # Rank 0 looks: by the time another rank looked, rank 0 may have created the file.
    if on_root(args.comm, path.exists) and not (args.resume or args.overwrite):
        _refuse(f"{path} exists: pass --resume to continue it or --overwrite to replace it")
    tic = time.perf_counter()
    rank, size = (0, 1) if args.comm is None else (args.comm.rank, args.comm.size)
    # The log beside the run file: appended to by every session of the run (resumes included).
    log = path.with_suffix(".log")
    new_log = not on_root(args.comm, log.exists)
    # A run replacing another (--overwrite) logs beside the old log until it has replaced the run
    # file (RunFile.create): a new run that stops before leaves the old run and its log together.
    replacing = args.overwrite and rank == 0 and path.is_file() and log.is_file()
    pending_log = log.with_name(f".{log.name}.new")
    old_inode = path.stat().st_ino if replacing else None
    try:
        with log_file(pending_log if replacing else log, rank, size, fresh=args.overwrite):
            if sweep:
                run_sweep(case, path, resume=args.resume, overwrite=args.overwrite, comm=args.comm)
            elif transition:
                run_transition(case, path, resume=args.resume, overwrite=args.overwrite, comm=args.comm)
            elif kinetic:
                run_kinetic(case, path, resume=args.resume, overwrite=args.overwrite, comm=args.comm)
            else:
                run_case(
                    case,
                    path,
                    resume=args.resume,
                    overwrite=args.overwrite,
                    solvers=solvers,
                    progress=args.progress,
                    comm=args.comm,
                    diagnostics=getattr(args, "diagnostics", True),
                )
            ranks = "" if args.comm is None else f" on {size} ranks"
            _log.info(f"run file: {path} ({time.perf_counter() - tic:.1f} s{ranks})")
    except BaseException as err:
        if rank == 0 and new_log and not path.exists():
            log.unlink(missing_ok=True)  # a run that left no file leaves no log either
        if isinstance(err, CaseMismatch):
            _refuse(str(err))
        raise
    finally:
        if replacing and pending_log.exists():
            if path.exists() and path.stat().st_ino != old_inode:  # the new run took the name
                os.replace(pending_log, log)
            else:  # the old run stays: its log with the new attempt's records after them
                with log.open("a", encoding="utf-8") as f:
                    f.write(pending_log.read_text(encoding="utf-8"))
                pending_log.unlink()
    return path


def _cmd_run(args: argparse.Namespace) -> int:
    case = _load(args)
    if case.sweep is not None:
        _log.info(f"{args.case}: its [sweep] table is for `vlasov-tf sweep`; `run` runs the case itself")
    if case.kinetic is not None:
        _log.info(f"{args.case}: its [kinetic] table is for `vlasov-tf kinetic`; `run` runs the first-order "
                  "case")  # fmt: skip
        steps, layers = case.particles.reference_steps, case.particles.layers
        if case.model.noise > 0 and args.solver != "grid" and (not steps or any(steps % n for n in layers)):
            # parse_case leaves a kinetic case's noisy first-order tokens unchecked (check_noisy_particles).
            _refuse(f"{args.case}: `run` of a noisy case needs particles.reference_steps, a multiple of "
                    "every particles.layers (the noisy reference); or run the [kinetic] table: `vlasov-tf "
                    "kinetic`")  # fmt: skip
    solvers = ("grid", "particles") if args.solver == "both" else (args.solver,)
    path = _run(args, case, solvers)
    if args.plot and is_root(args.comm):
        with RunFile.open(path, mode="r") as run:
            for figure in plot_run(case, run, path.parent, path.stem):
                print(f"figure: {figure}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    case = _load(args)
    if case.kinetic is not None:
        return _kinetic(args, _read(args, lambda: full_kinetic(case)) if args.full else case)
    if args.full:
        case = full_study(case)
    path = _run(args, case, ("grid", "particles"))
    if not is_root(args.comm):
        return 0
    with RunFile.open(path, mode="r") as run:
        print()
        print(format_tables(crossval_tables(case, run)))
        line = grid_against_deep(case, run)
        if line:
            print(line)
        if case.model.noise == 0:  # the estimate follows the continuous-time ODE, which noise lacks
            print(format_lipschitz(lipschitz_estimate(case)))
        print(format_clusters(case, run))
        print(f"figure: {plot_crossval(case, run, path.with_suffix('.png'))}")
        print(f"figure: {plot_clusters(case, run, path.with_suffix('.clusters.png'))}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    case = _load(args)
    if case.sweep is None:
        _refuse(f"{args.case}: no [sweep] table (betas, members, parameters, ...) to run")
    path = _run(args, case, sweep=True)
    if is_root(args.comm):
        with RunFile.open(path, mode="r") as run:
            maps = phase_maps(run)
        print(format_phase(case, maps))
        print(f"figure: {plot_phase(case, maps, path.with_suffix('.phase.png'))}")
    return 0


def _cmd_transition(args: argparse.Namespace) -> int:
    case = _load(args)
    if case.transition is None:
        _refuse(f"{args.case}: no [transition] table (noise, resolution, tokens, ...) to scan")
    path = _run(args, case, transition=True)
    if is_root(args.comm):
        with RunFile.open(path, mode="r") as run:
            branches = read_branches(case, run)
        print(format_branches(branches))
        print(f"figure: {plot_transition(case, branches, path.with_suffix('.transition.png'))}")
    return 0


def _cmd_kinetic(args: argparse.Namespace) -> int:
    case = _load(args)
    if case.kinetic is None:
        _refuse(f"{args.case}: no [kinetic] table (friction, velocity_box, velocity_cells, ...) to run")
    return _kinetic(args, case)


def _kinetic(args: argparse.Namespace, case) -> int:
    """Run the kinetic jobs, print the kinetic study, draw its figures."""
    if case.geometry == "sphere" and args.comm is not None and args.comm.size > 1:
        _refuse(f"{args.case}: {SPHERE_SERIAL}")
    path = _run(args, case, kinetic=True)
    if is_root(args.comm):
        with RunFile.open(path, mode="r") as run:
            print(kinetic_report(case, run))
            for figure in plot_run(case, run, path.parent, path.stem):
                print(f"figure: {figure}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    with RunFile.open(args.runfile, mode="r") as run:  # reading never writes
        case = case_of_run(run, args.runfile)
        done = sum(run.is_complete(key) for key in run.jobs())
        if done < len(run.jobs()):
            print(f"note: {args.runfile} is incomplete ({done} of {len(run.jobs())} jobs complete): the "
                  "figures show what is stored; `--resume` the run to finish it")  # fmt: skip
        out = args.out or args.runfile.parent
        if args.movie:
            movie = out / f"{args.runfile.stem}.{args.movie}"
            print(f"movie: {save_movie(case, run, movie, fps=args.fps, job=args.job)}")
            return 0
        if args.job is not None:
            _refuse("--job chooses the job of a --movie: pass --movie too")
        for path in plot_run(case, run, out, args.runfile.stem):
            print(f"figure: {path}")
    return 0


#: What each subcommand runs (its parser: :func:`vlasov_tf.cli_arguments.build_parser`).
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "particles": _cmd_particles,
    "cases": _cmd_cases,
    "mesh": _cmd_mesh,
    "run": _cmd_run,
    "study": _cmd_study,
    "sweep": _cmd_sweep,
    "transition": _cmd_transition,
    "kinetic": _cmd_kinetic,
    "interpolate": _cmd_interpolate,
    "learn": _cmd_learn,
    "plot": _cmd_plot,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM sends at a job's time limit, and ``kill``): handled as Ctrl-C is."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vlasov-tf``; returns the exit status (argparse exits with 2 on bad usage).

    SIGTERM is handled as Ctrl-C: what was stored is kept, the writer lock removed, exit 143."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)  # signal handlers are for the main thread only
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    comm = world()
    with abort_on_error(comm):
        args = build_parser().parse_args(argv)
        if comm is not None and args.handler not in (_cmd_run, _cmd_study, _cmd_sweep, _cmd_transition,
                                                     _cmd_kinetic):  # fmt: skip
            _refuse(
                f"only `run`, `study`, `sweep`, `transition` and `kinetic` run under MPI ({comm.size} "
                "ranks): start it serially"
            )
        args.comm = comm
        configure(*((0, 1) if comm is None else (comm.rank, comm.size)), debug=args.debug)
        if comm is not None or args.debug:
            return args.handler(args)  # under MPI abort_on_error reports it (and stops every rank)
        try:
            return args.handler(args)
        except KeyboardInterrupt as err:
            # What was stored stays (every snapshot is on disk when its append returns).
            what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
            sys.stderr.write(f"vlasov-tf: {what}; what was stored is kept: continue with --resume\n")
            return 143 if isinstance(err, Terminated) else 130
        except USER_ERRORS as err:
            # What a user can cause (bad files and values, missing meshes, unwritable paths, a
            # field beyond the float range, a step size that collapses): one line, exit status 2.
            sys.stderr.write(f"vlasov-tf: error: {err}\n")
            return 2


#: Exceptions that mean bad input rather than a bug (``--debug`` shows their traceback).
USER_ERRORS = (ValueError, OSError, OverflowError, FloatingPointError, RunFileError)


if __name__ == "__main__":
    sys.exit(main())
