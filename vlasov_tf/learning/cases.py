"""The case format of ``vlasov-tf learn``: a target model, the measures it moves, the network to fit.

A learning case is a TOML file with ``[case]`` (name, geometry "circle" or "sphere", d, T), the
target model as in a run case (``[model]`` and optional ``[[schedule]]``, read by
:func:`~vlasov_tf.runs.model_tables.read_model`: attention with any parameters, an interaction
kernel, Kuramoto / Lohe with frequencies), and::

    [learning]
    layers = 16              # depth L of the learned Transformer
    blocks = 4               # blocks of layers sharing their parameters (divides layers)
    heads = 1                # heads H (Q, K, V, W each)
    hidden = 0               # perceptron width m (0: none)
    beta = 1.0               # the network's fixed inverse temperature (the scale of Q, K is learned)
    attention = "SA"         # "SA" | "USA"
    init_scale = 0.1         # the initial parameters' noise (network.init_params)
    labels = "flow"          # "flow": the target's flow at rtol 1e-10 | "layers": its own Transformer
    label_layers = 16        # the depth of "layers" labels
    tokens = 64              # tokens per training measure
    train = 64               # training measures; validation and test measures:
    validation = 16
    test = 16
    seed = 0                 # seeds the measures (data.MeasureFamily), the batches, the initialisation
    steps = 1000             # optimiser steps (Adam), learning_rate, measures per batch
    learning_rate = 0.01
    batch = 16
    checkpoint_every = 100   # steps between checkpoints in the run file
    loss = "tokens"          # "tokens" (each token's image is its label) | "sinkhorn" (between
    sinkhorn_epsilon = 0.01  # measures: ott-jax's Sinkhorn divergence, this regularisation)
    [learning.family]        # the initial measures: random vMF mixtures
    bumps = [1, 3]           # number of bumps, min and max
    kappa = [2.0, 20.0]      # concentrations, log-uniform in [min, max]
    alpha = 1.0              # Dirichlet parameter of the proportions

    [evaluation]             # optional: the learned map on fresh tokens and on the grid
    tokens = [1000, 10000]   # token counts of the test measures' samples
    measures = 4             # how many test measures (the first) are evaluated so
    cells = 256              # circle: cells of the grid; sphere: level = 1 (mesh level)

Every key is described in :data:`vlasov_tf.runs.case_keys.LEARNING_TABLES` (the reader takes the
allowed and required keys from there; the documentation's case-file reference lists them). Errors
name the file and the dotted key (:class:`~vlasov_tf.runs.toml_reader.TomlReader`).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlasov_tf.learning.data import LABELS, MeasureFamily
from vlasov_tf.learning.network import Architecture
from vlasov_tf.learning.training import LOSSES
from vlasov_tf.models.base import MeanField
from vlasov_tf.runs.case_keys import LEARNING_TABLES, allowed, required
from vlasov_tf.runs.case_tables import read_geometry
from vlasov_tf.runs.cases import find_case
from vlasov_tf.runs.model_tables import read_model
from vlasov_tf.runs.toml_reader import TomlReader

__all__ = ["Evaluation", "LearningCase", "case_settings", "load_learning_case", "parse_learning_case"]

_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: The finest sphere mesh level an evaluation may ask for (level 2: 17280 cells, minutes a flow).
MAX_LEVEL = 2


@dataclass(frozen=True)
class Evaluation:
    """How the learned map is judged beyond the test loss: larger samples and the grid."""

    tokens: tuple[int, ...] = (1000, 10000)
    measures: int = 4
    cells: int = 256
    level: int = 1


@dataclass(frozen=True)
class LearningCase:
    """A parsed learning case (module docstring)."""

    name: str
    description: str
    geometry: str
    d: int
    T: float
    target: MeanField
    arch: Architecture
    family: MeasureFamily
    labels: str
    label_layers: int
    tokens: int
    counts: dict[str, int]
    seed: int
    steps: int
    learning_rate: float
    batch: int
    checkpoint_every: int
    init_scale: float
    evaluation: Evaluation | None
    loss: str
    epsilon: float
    text: str
    source: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def settings(self) -> str:
        """:func:`case_settings` of this case: what a resumed run must share with it."""
        return case_settings(self.text, dict(self.overrides))


def _keys(table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The allowed and the required keys of a learning case's ``table``, from their descriptions."""
    return allowed(table, tables=LEARNING_TABLES), required(table, tables=LEARNING_TABLES)


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *head, last = key.split(".")
    node = data
    for part in head:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {key}: {part} is not a table")
    node[last] = value


def _effective(text: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The case's tables after the overrides (raises tomllib's error on bad TOML)."""
    data = copy.deepcopy(tomllib.loads(text))
    for key, value in (overrides or {}).items():
        _set(data, key, value)
    return data


def case_settings(text: str, overrides: Mapping[str, Any] | None = None) -> str:
    """What a learning run depends on, as canonical JSON: the case's tables after the overrides,
    without ``case.description`` (comments, layout and the spelling of an override do not count)."""
    data = _effective(text, overrides)
    data.get("case", {}).pop("description", None)
    return json.dumps(data, sort_keys=True, default=str)


def parse_learning_case(
    text: str, source: str = "<string>", overrides: Mapping[str, Any] | None = None
) -> LearningCase:
    """Validate a learning case (module docstring); ``overrides`` set dotted keys first
    (a study's variants). Errors are ``ValueError('<source>: <dotted key> ...')``."""
    label = source
    if overrides:
        label = f"{source} (with {', '.join(f'{k} = {v!r}' for k, v in overrides.items())})"
    r = TomlReader(label, Path("."))
    try:
        data = _effective(text, overrides)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: TOML syntax error: {err}") from err
    r.table(data, "", *_keys(""))
    case = r.table(data["case"], "case", *_keys("case"))
    name = r.string(case["name"], "case.name")
    if not _NAME.fullmatch(name):
        r.fail("case.name", f"must be letters, digits, '_', '-' or '.' only (it names files); got {name!r}")
    if case["geometry"] == "euclidean":
        r.fail("case.geometry", "must be 'circle' or 'sphere': the learned tokens live on a sphere")
    geometry, d = read_geometry(r, case)
    T = r.positive(case["T"], "case.T")
    target, _ = read_model(r, data, T, d, geometry)
    if target.noise > 0:
        # The labels are each token's image under the deterministic flow; a noisy target has none.
        r.fail("model.noise", f"is not learned (the labels are the noiseless flow's); got {target.noise:g}")
    if target.T is not None:
        T = float(target.T)
    lt = r.table(data["learning"], "learning", *_keys("learning"))

    def integer(key: str, default: int, lo: int) -> int:
        return r.integer(lt.get(key, default), f"learning.{key}", lo=lo)

    def positive(key: str, default: float) -> float:
        return r.positive(lt.get(key, default), f"learning.{key}")

    layers, blocks = integer("layers", 1, 1), integer("blocks", 1, 1)
    if layers % blocks:
        r.fail(
            "learning.blocks",
            f"must divide learning.layers = {layers} (equal blocks of layers); got {blocks}",
        )
    heads, hidden = integer("heads", 1, 0), integer("hidden", 0, 0)
    if heads + hidden == 0:
        r.fail("learning.heads", "and learning.hidden are both 0: the network needs a head or a perceptron")
    attention = r.string(lt.get("attention", "SA"), "learning.attention", ("SA", "USA"))
    arch = Architecture(
        d=d, layers=layers, blocks=blocks, heads=heads, hidden=hidden,
        beta=positive("beta", 1.0), attention=attention, T=T,
    )  # fmt: skip
    labels = r.string(lt.get("labels", "flow"), "learning.labels", LABELS)
    counts = {s: integer(s, dflt, 1) for s, dflt in (("train", 64), ("validation", 16), ("test", 16))}
    ft = r.table(lt.get("family", {}), "learning.family", *_keys("learning.family"))
    bumps = tuple(int(r.integer(b, f"learning.family.bumps[{i}]", lo=1)) for i, b in
                  enumerate(r.array(ft.get("bumps", [1, 3]), "learning.family.bumps", 2)))  # fmt: skip
    if bumps[0] > bumps[1]:
        r.fail("learning.family.bumps", f"must be [min, max] with min <= max; got {list(bumps)}")
    kappa = tuple(float(r.positive(k, f"learning.family.kappa[{i}]")) for i, k in
                  enumerate(r.array(ft.get("kappa", [2.0, 20.0]), "learning.family.kappa", 2)))  # fmt: skip
    if kappa[0] > kappa[1]:
        r.fail("learning.family.kappa", f"must be [min, max] with min <= max; got {list(kappa)}")
    family = MeasureFamily(
        d=d, bumps=(bumps[0], bumps[1]), kappa=(kappa[0], kappa[1]),
        alpha=r.positive(ft.get("alpha", 1.0), "learning.family.alpha"),
    )  # fmt: skip
    evaluation = None
    if "evaluation" in data:
        et = r.table(data["evaluation"], "evaluation", *_keys("evaluation"))
        if "level" in et and geometry != "sphere":
            r.fail("evaluation.level", "is a sphere mesh level: for geometry 'circle' give evaluation.cells")
        if "cells" in et and geometry != "circle":
            r.fail(
                "evaluation.cells", "is the circle's cell count: for geometry 'sphere' give evaluation.level"
            )
        if geometry == "sphere" and d != 3:
            r.fail(
                "case.d", f"must be 3 for the grid evaluation on S^2 meshes, got {d} (or drop [evaluation])"
            )
        evaluation = Evaluation(
            tokens=r.counts(et.get("tokens", [1000, 10000]), "evaluation.tokens", lo=2),
            measures=r.integer(
                et.get("measures", min(4, counts["test"])), "evaluation.measures", lo=1, hi=counts["test"]
            ),
            cells=r.integer(et.get("cells", 256), "evaluation.cells", lo=8),
            level=r.integer(et.get("level", 1), "evaluation.level", lo=0, hi=MAX_LEVEL),
        )
    steps = integer("steps", 1000, 0)
    every = integer("checkpoint_every", 100, 1)
    batch = integer("batch", 16, 1)
    if "batch" in lt and batch > counts["train"]:
        r.fail("learning.batch", f"must be <= learning.train = {counts['train']}; got {batch}")
    lr = positive("learning_rate", 0.01)
    init_scale = positive("init_scale", 0.1)
    loss = r.string(lt.get("loss", "tokens"), "learning.loss", LOSSES)
    if loss == "sinkhorn" and importlib.util.find_spec("ott") is None:
        r.fail(
            "learning.loss", "'sinkhorn' needs ott-jax (the 'learn' extra installs it: pip install ott-jax)"
        )
    if "sinkhorn_epsilon" in lt and loss != "sinkhorn":
        r.fail(
            "learning.sinkhorn_epsilon", f"is the regularisation of loss = 'sinkhorn'; the case has {loss!r}"
        )
    if "label_layers" in lt and labels != "layers":
        r.fail(
            "learning.label_layers", f"is the depth of labels = 'layers'; the case has labels = {labels!r}"
        )
    return LearningCase(
        name=name,
        description=r.string(case.get("description", ""), "case.description"),
        geometry=geometry,
        d=d,
        T=T,
        target=target,
        arch=arch,
        family=family,
        labels=labels,
        label_layers=integer("label_layers", layers, 1),
        tokens=integer("tokens", 64, 2),
        counts=counts,
        seed=integer("seed", 0, 0),
        steps=steps,
        learning_rate=lr,
        batch=min(batch, counts["train"]),
        checkpoint_every=every,
        init_scale=init_scale,
        evaluation=evaluation,
        loss=loss,
        epsilon=positive("sinkhorn_epsilon", 0.01),
        text=text,
        source=source,
        overrides=tuple((overrides or {}).items()),
    )


def load_learning_case(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> LearningCase:
    """Read and validate a learning case file (or the shipped case of that bare name,
    :func:`vlasov_tf.runs.cases.find_case`); errors name the file and the dotted key."""
    path = find_case(path)
    return parse_learning_case(path.read_text(encoding="utf-8"), str(path), overrides)
