"""Sphinx extension: the case-file reference page, generated from the key definitions in the code.

Every key, whether it is required and what it means come from
:data:`vlasov_tf.runs.case_keys.TABLES` (the readers take their allowed keys from there), the
defaults from the spec dataclasses the readers fill, the allowed values from the constants the
readers check against, the kernels from :data:`vlasov_tf.kernels.zonal.KERNEL_NAMES`, the full
example from the docstring of :mod:`vlasov_tf.runs.cases` (parsed by tests/test_cases.py). The
page (docs/case_files.rst) is written at each build and git-ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vlasov_tf.kernels.zonal import KERNEL_NAMES
from vlasov_tf.runs import case_tables, model_tables
from vlasov_tf.runs.case_keys import LEARNING_TABLES, TABLES, Table
from vlasov_tf.runs.ensembles import ENSEMBLES
from vlasov_tf.solvers import grid_scheme, particles

SPECS = {
    "particles": case_tables.ParticleSpec,
    "grid": case_tables.GridSpec,
    "clusters": case_tables.ClusterSpec,
    "sweep": case_tables.SweepSpec,
}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("case", "geometry"): case_tables.GEOMETRIES,
    ("initial", "family"): tuple(dict.fromkeys(f for fs in case_tables.FAMILIES.values() for f in fs)),
    ("model", "type"): model_tables.MODEL_TYPES,
    ("model", "mask"): model_tables.MASKS,
    ("particles", "sampling"): case_tables.SAMPLINGS,
    ("particles", "field_method"): particles.FIELD_METHODS,
    ("particles", "norm"): particles.NORMS,
    ("grid", "reconstruction"): grid_scheme.RECONSTRUCTIONS,
    ("grid", "limiter"): grid_scheme.LIMITERS,
    ("grid", "field_method"): grid_scheme.FIELD_METHODS,
    ("grid", "field_measure"): grid_scheme.FIELD_MEASURES,
    ("grid", "field_accuracy"): grid_scheme.FIELD_ACCURACIES,
    ("sweep", "parameters"): ENSEMBLES,
}


def _default(table: str, key: str) -> str:
    spec = SPECS.get(table)
    if spec is None:
        return ""
    for f in dataclasses.fields(spec):
        if f.name == key and f.default is not dataclasses.MISSING:
            return _toml(f.default)
    return ""


def _toml(value: Any) -> str:
    """A default as a case file writes it (None: the key has no default value: none)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"``{str(value).lower()}``"
    if isinstance(value, str):
        return f'``"{value}"``'
    return f"``{value!r}``"


def _cell(text: str) -> str:
    return text.replace("\n", " ")


def _heading(title: str, underline: str) -> list[str]:
    return [title, underline * len(title), ""]


def _tables(
    tables: dict[str, Table], underline: str, top: str, choices_of: dict[tuple[str, str], tuple[str, ...]]
) -> list[str]:
    """A section per table of ``tables``: its text and a row per key (the allowed values of
    ``choices_of`` appended where the text does not name them)."""
    lines: list[str] = []
    for name, table in tables.items():
        if name == "":
            title = top
        elif name == "schedule":
            title = "[[schedule]]"
        else:
            title = f"[{name}]"
        lines += _heading(title, underline)
        lines += [table.text, ""]
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 15 10 15 60", ""]
        lines += ["   * - key", "     - required", "     - default", "     - meaning"]
        for key, spec in table.keys.items():
            meaning = spec.text
            choices = choices_of.get((name, key))
            if choices and not all(f'"{c}"' in meaning for c in choices):
                meaning += " One of " + ", ".join(f'``"{c}"``' for c in choices) + "."
            lines += [
                f"   * - ``{key}``",
                f"     - {'yes' if spec.required else ''}",
                f"     - {_default(name, key)}",
                f"     - {_cell(meaning)}",
            ]
        lines.append("")
    return lines


def page() -> str:
    lines = _heading("Case files", "=")
    lines += [
        "A case is a TOML file (``cases/*.toml``, or any path) that ``vlasov-tf run``, ``study``,",
        "``sweep`` and :func:`~vlasov_tf.runs.cases.load_case` read. Unknown or missing keys, wrong",
        "types and out-of-range values are refused in one line naming the file and the dotted key",
        "(``cases/foo.toml: initial.kappas[1] must be > 0, got -2.0``); ``--set KEY=VALUE`` and",
        "``overrides={...}`` take the same dotted keys.",
        "",
        "This page is generated from the definition the readers use",
        "(:data:`vlasov_tf.runs.case_keys.TABLES`; defaults from the spec classes of",
        ":mod:`vlasov_tf.runs.case_tables`).",
        "",
    ]
    lines += _tables(TABLES, "-", "Top level", CHOICES)
    lines += _heading("Interaction kernels", "-")
    lines += [
        'The inline tables ``model.kernel`` and ``model.normaliser``: ``{ name = "...", parameters }``',
        "(:func:`vlasov_tf.kernels.zonal.kernel_from_spec`).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - name",
        "     - parameters",
    ]
    for kernel, params in KERNEL_NAMES.items():
        lines += [f'   * - ``"{kernel}"``', "     - " + ", ".join(f"``{p}``" for p in params)]
    lines += [""]
    lines += _heading("A full example", "-")
    lines += [
        "Every section, annotated (the module docstring of :mod:`vlasov_tf.runs.cases`, which the",
        "tests parse):",
        "",
        ".. literalinclude:: ../vlasov_tf/runs/cases.py",
        "   :language: toml",
        '   :start-after: # --8<-- example',
        '   :end-before: # --8<-- end',
        "   :dedent: 4",
        "",
    ]
    lines += _heading("Learning cases", "-")
    lines += [
        "A learning case (``cases/learn_*.toml``; ``vlasov-tf learn`` and",
        ":func:`~vlasov_tf.learning.cases.load_learning_case` read it) has its target's ``[model]`` and",
        "``[[schedule]]`` as above and these tables of its own",
        "(:data:`vlasov_tf.runs.case_keys.LEARNING_TABLES`; an annotated example: the module docstring",
        "of :mod:`vlasov_tf.learning.cases`).",
        "",
    ]
    lines += _tables(LEARNING_TABLES, "~", "Top level of a learning case", {})
    return "\n".join(lines)


def generate(app: Any) -> None:
    path = Path(app.srcdir) / "case_files.rst"
    text = page()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
