"""The README's learning table and figure: test error of the learned map against depth, width and
the number of training measures, for the shipped Kuramoto case (a target that is not a Transformer).

Usage::

    python scripts/learning_study.py [--steps 400] [--out out/learning_study]   # ~15 min on 2 cores

Every variant is ``cases/learn_kuramoto.toml`` with one or two ``--set`` values (the run files,
named as ``vlasov-tf learn --set`` names them, resume when the script is run again), trained for
``--steps`` steps, evaluated on 4 test measures at N = 1000 tokens and on the grid. Columns: the
test token RMS error (64 tokens, 16 test measures), the token RMS at N = 1000 against the target's
flow, W1 of the learned tokens (N = 1000) to the target's grid solution, and W1 between the learned
network's infinite-depth limit (its Schedule on the grid) and the target's grid flow. Writes
``<out>/learning_study.json`` and ``<out>/learning_study.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vlasov_tf.cli import run_name
from vlasov_tf.learning.cases import load_learning_case
from vlasov_tf.learning.runner import run_learning_case
from vlasov_tf.plots.canvas import new_figure, save_figure
from vlasov_tf.runs.cases import CASES_DIR

CASE = CASES_DIR / "learn_kuramoto.toml"
BASE = {"learning.layers": 16, "learning.blocks": 4, "learning.heads": 2, "learning.hidden": 8,
        "learning.train": 64}  # fmt: skip
STUDIES = {
    "depth": [{"learning.layers": L, "learning.blocks": min(L, 4)} for L in (1, 2, 4, 8, 16, 32)],
    "width": [{"learning.heads": 1, "learning.hidden": 0}, {"learning.heads": 2, "learning.hidden": 8},
              {"learning.heads": 4, "learning.hidden": 32}],
    "data": [{"learning.train": m, **({"learning.batch": m} if m < 16 else {})} for m in (8, 16, 32, 64)],
}  # fmt: skip


def run_variant(change: dict, steps: int, out: Path) -> dict:
    overrides = {"learning.steps": steps, "evaluation.tokens": [1000], "evaluation.measures": 4, **change}
    case = load_learning_case(CASE, overrides)
    name = run_name(argparse.Namespace(name=case.name, overrides=tuple(overrides.items())))
    t0 = time.perf_counter()
    res = run_learning_case(case, out, overrides=overrides, name=name, log=lambda s: None)
    row = {
        "layers": case.arch.layers, "blocks": case.arch.blocks, "heads": case.arch.heads,
        "hidden": case.arch.hidden, "train": case.counts["train"], "parameters": case.arch.size(),
        "test_rms": res["test_rms"], "identity_rms": res["identity_rms"],
        "token_rms_1000": float(np.mean(res["token_error"][:, 0])),
        "w1_tokens_1000": float(np.mean(res["w1_tokens"][:, 0])),
        "w1_sampling_1000": float(np.mean(res["w1_sampling"][:, 0])),
        "w1_grid": float(np.mean(res["w1_grid"])), "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    shown = (f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
    print(" ".join(shown), flush=True)
    return row


def table(rows: list[dict], key: str) -> str:
    head = (
        f"| {key} | parameters | test RMS (N = 64) | token RMS (N = 1000) | W1 tokens to grid "
        "| W1 grid to grid |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        label = {"depth": f"L = {r['layers']} ({r['blocks']} blocks)",
                 "width": f"H = {r['heads']}, m = {r['hidden']}",
                 "data": f"{r['train']} measures"}[key]  # fmt: skip
        lines.append(
            f"| {label} | {r['parameters']} | {r['test_rms']:.2e} | {r['token_rms_1000']:.2e} "
            f"| {r['w1_tokens_1000']:.2e} | {r['w1_grid']:.2e} |"
        )
    return "\n".join(lines)


def figure(results: dict, path: Path) -> Path:
    fig = new_figure((14.0, 4.0))
    axes = fig.subplots(1, 3)
    for ax, (key, xkey, xlabel) in zip(
        axes,
        (("depth", "layers", "depth L"), ("width", "parameters", "parameters (heads, perceptron width)"),
         ("data", "train", "training measures")),
        strict=True,
    ):  # fmt: skip
        rows = results[key]
        x = np.array([r[xkey] for r in rows], dtype=float)
        for col, style, label in (
            ("test_rms", "o-", "test token RMS (N = 64)"),
            ("token_rms_1000", "^-", "token RMS (N = 1000)"),
            ("w1_grid", "s--", "W1(learned grid, target grid)"),
        ):
            ax.loglog(x, [r[col] for r in rows], style, label=label)
        ax.axhline(rows[0]["identity_rms"], color="grey", ls=":", label="identity map (test RMS)")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(f"Kuramoto target: error against {key}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (mean over test measures)")
    return save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--out", type=Path, default=Path("out/learning_study"))
    args = p.parse_args()
    results = {key: [run_variant({**BASE, **c}, args.steps, args.out) for c in changes]
               for key, changes in STUDIES.items()}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_study.json").write_text(json.dumps(results, indent=1))
    for key in STUDIES:
        print(f"\n{table(results[key], key)}")
    print(f"\nfigure: {figure(results, args.out / 'learning_study.png')}")


if __name__ == "__main__":
    main()
