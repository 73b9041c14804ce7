"""Measure-to-measure interpolation by one explicit Transformer (arXiv 2411.04551, Theorem 1.1).

Builds the piecewise-constant schedule of ``vlasov_tf.interpolation.construction`` for a case
file (N input measures -> N target points), then checks it: each input's
tokens alone through the schedule (RK4), fresh samples of the inputs, the
discrete Transformer (``solve_particles(method="layers", steps=L)``) for the
case's depths L, and the input densities on S^2 meshes (``solve_grid``, one run
per input). Prints the switch count, the norms against the paper's bounds and
the W2 tables; saves ``<out>/<name>.png``.

    .venv/bin/python scripts/interpolate.py cases/interpolation.toml --out out
    .venv/bin/python scripts/interpolate.py cases/interpolation.toml --levels 0 1 2   # level 2: slow
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlasov_tf.interpolation.cases import load_interpolation_case
from vlasov_tf.interpolation.runner import run_interpolation_case
from vlasov_tf.plots import plot_interpolation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", help="interpolation case file (TOML)")
    ap.add_argument("--out", default="out", help="directory of the figure (default: out)")
    ap.add_argument("--levels", type=int, nargs="*", default=None,
                    help="S^2 mesh levels of the grid check (default: the case's; none: skip)")
    ap.add_argument("--layers", type=int, nargs="*", default=None,
                    help="depths L of the discrete Transformer (default: the case's)")
    args = ap.parse_args(argv)
    try:
        case = load_interpolation_case(args.case)
    except (ValueError, FileNotFoundError) as err:
        ap.error(str(err))  # one line, exit status 2
    res = run_interpolation_case(case, levels=args.levels, layers=args.layers)
    print(f"figure: {plot_interpolation(res['interp'], res, Path(args.out) / f'{case.name}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
