"""The ``vlasov-tf`` command line's arguments: every subcommand's parser, and the defaults they name.

:mod:`vlasov_tf.cli` holds what each subcommand does (its handler) and the entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from vlasov_tf import __version__
from vlasov_tf.geometry.meshes import SPHERE_LEVELS
from vlasov_tf.interpolation.cases import MAX_GRID_LEVEL
from vlasov_tf.runs.cases import CASES_DIR
from vlasov_tf.runs.depth_study import DEFAULT_LAYERS

__all__ = [
    "DEFAULT_INTERPOLATION_CASE",
    "DEFAULT_LEARNING_CASE",
    "DEFAULT_PARTICLES_CASE",
    "DEFAULT_STUDY_CASE",
    "build_parser",
    "positive_int",
    "token_count",
]

#: The case of ``vlasov-tf study`` without arguments (the README's main job).
DEFAULT_STUDY_CASE = CASES_DIR / "sphere_clustering.toml"
#: The case of ``vlasov-tf particles`` without arguments: the main job's circle counterpart.
DEFAULT_PARTICLES_CASE = CASES_DIR / "circle_clustering.toml"
#: The case of ``vlasov-tf interpolate`` without arguments.
DEFAULT_INTERPOLATION_CASE = CASES_DIR / "interpolation.toml"
#: The case of ``vlasov-tf learn`` without arguments.
DEFAULT_LEARNING_CASE = CASES_DIR / "learn_kuramoto.toml"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def token_count(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"at least 2 tokens are needed, got {value}")
    return value


def build_parser(handlers: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The parser of every subcommand; ``handlers`` maps a subcommand's name to the function that
    runs it (set as ``args.handler``, with ``args.parser``)."""
    parser = argparse.ArgumentParser(
        prog="vlasov-tf", description="Mean-field (Vlasov) equation of deep Transformers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (default: one line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "particles",
        help="depth convergence of a deep Transformer to the continuous flow (circle)",
        description=(
            "Random tokens of a circle case's initial measure (default: cases/circle_clustering.toml, "
            "a mixture of three von Mises laws moved by one softmax head with Q = K = V = I), "
            "L-layer Transformers (h = T/L) against a DOP853 reference at time T: prints the errors "
            "and their order (expected 1), and saves a figure."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "case", type=Path, nargs="?", default=DEFAULT_PARTICLES_CASE, help="circle case file or shipped name"
    )
    p.add_argument("-N", "--tokens", type=token_count, default=2000, metavar="N", help="number of tokens")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial tokens")
    p.add_argument(
        "--layers",
        type=positive_int,
        nargs="+",
        default=list(DEFAULT_LAYERS),
        metavar="L",
        help="depths to compare",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a case entry, e.g. --set model.beta=9 --set case.T=2",
    )
    p.add_argument("--out", type=Path, default=Path("out"), help="directory for the figure")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.set_defaults(handler=handlers["particles"], parser=p)

    p = sub.add_parser(
        "cases",
        help="list the shipped cases, or print one (to redirect into a file and edit)",
        description=(
            "Without NAME: the shipped cases and their one-line descriptions. With NAME: the case's "
            "text, e.g. `vlasov-tf cases circle_clustering > mine.toml`, then edit mine.toml and "
            "`vlasov-tf run mine.toml`. Commands that take a case file also take a shipped case's "
            "bare name (when no file of that name exists)."
        ),
    )
    p.add_argument("name", nargs="?", default=None, help="a shipped case (with or without .toml)")
    p.set_defaults(handler=handlers["cases"], parser=p)

    p = sub.add_parser(
        "mesh",
        help="build the nested sphere meshes into meshes/sphere_L{level}.h5",
        description=(
            "Build sphere mesh levels K: level 0 meshes the unit sphere (meshes/sphere.geo, characteristic "
            "length 0.18) with gmsh through FiPy, level K + 1 splits each triangle of level K into four "
            "(1080 * 4^K triangles, nested), missing lower levels first. Each level's finite-volume "
            "geometry goes to sphere_L{K}.h5, which runs load without FiPy or gmsh. The directory is "
            "$VLASOV_TF_MESHES if set, else the repository's meshes/."
        ),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--level", type=int, nargs="+", choices=SPHERE_LEVELS, metavar="K", help="levels to build"
    )
    which.add_argument(
        "--all", action="store_true", help=f"build levels {', '.join(map(str, SPHERE_LEVELS))}"
    )
    p.add_argument("--dir", type=Path, default=None, help="output directory (default: see above)")
    p.set_defaults(handler=handlers["mesh"], parser=p)

    for name, help_text in (
        ("run", "run a case file with both solvers (or one) into one HDF5 file"),
        ("study", "cross-validation: run a case, print convergence tables, save figures"),
        ("sweep", "an ensemble over beta (the case's [sweep] table): (beta, t) maps of clusters"),
        ("transition", "stationary states against the noise (the case's [transition] table): the order "
         "parameter scanned up and down, against linear theory"),
        ("kinetic", "second-order tokens (the case's [kinetic] table): the phase-space grids against "
         "the tokens, orders, conservation, the HMF theory, figures of f(theta, v); S^2 serial"),
    ):
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        default_case = DEFAULT_STUDY_CASE if name == "study" else None
        p.add_argument(
            "case",
            type=Path,
            nargs="?" if default_case else None,
            default=default_case,
            help="case file, or the name of a shipped case (`vlasov-tf cases` lists them)",
        )
        p.add_argument("--out", type=Path, default=Path("out"), help="directory of the run file and figures")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its file")
        p.add_argument("--overwrite", action="store_true", help="replace an existing run file")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a case entry (dotted key, TOML value; repeatable), e.g. --set model.beta=9 "
            "--set 'particles.tokens=[1000]'; checked like the case file and recorded in the run file",
        )
        p.add_argument(
            "--name",
            default=None,
            help="run file name (without .h5; default: the case name, then each --set as key-value)",
        )
        p.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=sys.stderr.isatty(),
            help="progress bars (default: on when stderr is a terminal; this shell: %(default)s)",
        )
        if name == "run":
            p.add_argument("--solver", choices=("both", "grid", "particles"), default="both")
            p.add_argument(
                "--no-diagnostics",
                dest="diagnostics",
                action="store_false",
                help="skip the distances, mass and energy after the jobs (`study --resume` adds them)",
            )
            p.add_argument(
                "--no-plot",
                dest="plot",
                action="store_false",
                help="do not draw the figures `vlasov-tf plot` draws (drawn by default, beside the run file)",
            )
        elif name == "study":
            p.add_argument(
                "--full",
                action="store_true",
                help="the full study: L = 10 ... 1e4, N = 1e2 ... 1e5 (sphere 1e6), finer grids (~1 hour)",
            )
        p.set_defaults(handler=handlers[name], parser=p)

    p = sub.add_parser(
        "interpolate",
        help="the interpolating Transformer of the first seed paper: build it, check it, draw it",
        description=(
            "One piecewise-constant Transformer (arXiv 2411.04551, Theorem 1.1) that sends each input "
            "measure of an interpolation case within eps (W2) of its target: built stage by stage, then "
            "checked on each input alone (RK4), on fresh samples, as a discrete Transformer of L layers "
            "and on the input densities on S^2 meshes. Prints the switch count, the norms against the "
            "paper's bounds and the W2 tables; saves <out>/<name>.png."
        ),
    )
    p.add_argument(
        "case",
        type=Path,
        nargs="?",
        default=DEFAULT_INTERPOLATION_CASE,
        help="interpolation case file or shipped case name (default: the shipped interpolation case)",
    )
    p.add_argument("--out", type=Path, default=Path("out"), help="directory of the figure (default: out)")
    p.add_argument(
        "--levels",
        type=int,
        nargs="*",
        choices=range(MAX_GRID_LEVEL + 1),
        default=None,
        metavar="K",
        help="S^2 mesh levels of the grid check (default: the case's; the flag alone skips the check; "
        "level 2 takes minutes)",
    )
    p.add_argument(
        "--layers",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="L",
        help="depths L of the discrete Transformer (default: the case's)",
    )
    p.set_defaults(handler=handlers["interpolate"], parser=p)

    p = sub.add_parser(
        "learn",
        help="fit a deep Transformer to a target flow's solution map (needs the 'learn' extra)",
        description="Fit a deep Transformer of the project's form (L layers, heads Q, K, V, W, a perceptron) "
        "to the solution map mu_0 -> mu_T of the case's target model with JAX and optax; <out>/<name>.h5 "
        "keeps the data, the checkpoints (run again to resume) and the learned Schedule, judged against "
        "the target on the test measures, at larger token counts and on the grid. Saves <out>/<name>.png.",
    )
    p.add_argument(
        "case",
        type=Path,
        nargs="?",
        default=DEFAULT_LEARNING_CASE,
        help="learning case file or shipped name (default: the shipped learn_kuramoto)",
    )
    p.add_argument("--out", type=Path, default=Path("out"), help="directory of the run file and figure")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a case entry (dotted key, TOML value), e.g. --set learning.layers=8",
    )
    p.add_argument("--overwrite", action="store_true", help="start the run file afresh (default: resume)")
    p.set_defaults(handler=handlers["learn"], parser=p)

    p = sub.add_parser("plot", help="figures of a stored run", description="figures of a stored run")
    p.add_argument("runfile", type=Path, help="HDF5 file written by `vlasov-tf run`, `study` or `sweep`")
    p.add_argument("--out", type=Path, default=None, help="directory (default: next to the run file)")
    p.add_argument(
        "--movie",
        nargs="?",
        const="gif",
        choices=("gif", "mp4"),
        default=None,
        help="instead of the figures, an animation <run>.gif (or .mp4, with ffmpeg), a frame per output "
        "time: S^2 both hemispheres on one colour scale with the tokens on top; S^1 density and tokens",
    )
    p.add_argument("--fps", type=positive_int, default=4, help="frames per second of --movie")
    p.add_argument(
        "--job",
        default=None,
        metavar="KEY",
        help="--movie of this job alone, e.g. grid/K3 or particles/N1000_L100 (default: the finest grid "
        "and the deepest Transformer on the most tokens)",
    )
    p.set_defaults(handler=handlers["plot"], parser=p)
    return parser
