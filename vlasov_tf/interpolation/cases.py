"""The case format of the interpolating Transformer: ``cases/interpolation.toml`` and its kind.

A case gives the input measures (:class:`CapInput`: von Mises-Fisher laws restricted to caps of
S^{d-1}), one target point per input, T and eps, the tokens per input and the depths of the
discrete Transformer to check, and the S^2 mesh levels of the grid check
(:class:`InterpolationCase`). :func:`load_interpolation_case` reads one through
:class:`~vlasov_tf.runs.toml_reader.TomlReader`: errors name the file and the dotted key. These
are not ``vlasov-tf run`` cases (:mod:`vlasov_tf.runs.cases`); ``vlasov-tf interpolate`` runs them
(:mod:`vlasov_tf.interpolation.runner`).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from vlasov_tf.geometry.measures import normalize
from vlasov_tf.geometry.meshes import SPHERE_LEVEL0_CELLS
from vlasov_tf.memory import (
    BYTES_PER_CELL,
    BYTES_PER_SAMPLE_DIM,
    BYTES_PER_SPHERE_CELL,
    BYTES_PER_TOKEN_DIM,
    check_memory,
)
from vlasov_tf.runs.cases import find_case
from vlasov_tf.runs.toml_reader import TomlReader

if TYPE_CHECKING:
    from vlasov_tf.geometry.meshes import MeshGeometry

__all__ = [
    "MAX_GRID_LEVEL",
    "CapInput",
    "InterpolationCase",
    "check_interpolation_memory",
    "load_interpolation_case",
    "parse_interpolation_case",
]

#: The finest S^2 mesh level of the grid check (level 4, 276480 cells: hours).
MAX_GRID_LEVEL = 4


@dataclass(frozen=True)
class CapInput:
    """An input measure: density proportional to ``exp(kappa <mean, x>)`` on the cap ``B(mean, radius)``.

    ``kappa = 0`` is the uniform law on the cap; its support is the closed cap.
    """

    mean: np.ndarray
    radius: float
    kappa: float = 0.0

    def density(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n,) unnormalised density."""
        dot = x @ self.mean
        return np.where(dot >= math.cos(self.radius), np.exp(self.kappa * (dot - 1.0)), 0.0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, d) exact samples: vMF (uniform when kappa = 0) restricted to the cap, by rejection."""
        d = len(self.mean)
        # Candidates are drawn four at a time per sample (the cap's acceptance can be lower).
        check_memory(4 * BYTES_PER_SAMPLE_DIM * n * d, f"CapInput.sample: {n} samples in d = {d}")
        out: list[np.ndarray] = []
        got = 0
        while got < n:
            if self.kappa > 0:
                cand = stats.vonmises_fisher(self.mean, self.kappa).rvs(4 * n, random_state=rng)
                cand = np.reshape(cand, (-1, d))
            else:
                cand = normalize(rng.standard_normal((max(4 * n, 1000), d)))
            keep = cand[cand @ self.mean >= math.cos(self.radius)]
            out.append(keep)
            got += len(keep)
        return normalize(np.concatenate(out)[:n])

    def cell_averages(self, mesh: MeshGeometry) -> np.ndarray:
        """(C,) cell averages by the centre rule, normalised to mass 1 (at least the nearest cell)."""
        rho = self.density(mesh.centres)
        if rho.sum() == 0:
            rho[int(np.argmax(mesh.centres @ self.mean))] = 1.0
        return rho / float(rho @ mesh.areas)


@dataclass(frozen=True)
class InterpolationCase:
    """A parsed ``cases/interpolation.toml``."""

    name: str
    description: str
    d: int
    T: float
    eps: float
    seed: int
    inputs: tuple[CapInput, ...]
    targets: np.ndarray
    tokens: int
    layers: tuple[int, ...]
    levels: tuple[int, ...]
    cfl: float
    max_dt: float | None
    source: str

    def measures(self, rng: np.random.Generator | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The inputs as ``tokens`` uniform-weight samples each (default: seeded by the case's seed)."""
        rng = np.random.default_rng(self.seed) if rng is None else rng
        return [(c.sample(self.tokens, rng), np.full(self.tokens, 1.0 / self.tokens)) for c in self.inputs]


_CASE_TOP = ("case", "inputs", "targets", "particles", "grid")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def parse_interpolation_case(text: str, source: str = "<string>") -> InterpolationCase:
    """Parse and validate an interpolation case (see ``cases/interpolation.toml`` for the layout).

    Errors are ``ValueError('<source>: <dotted key> ...')``.
    """
    r = TomlReader(source, Path("."))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from err
    r.table(data, "", _CASE_TOP, required=("case", "inputs", "targets"))
    case = r.table(
        data["case"],
        "case",
        ("name", "description", "d", "T", "eps", "seed"),
        required=("name", "d", "T", "eps"),
    )
    name = r.string(case["name"], "case.name")
    if not _NAME.fullmatch(name):
        r.fail(
            "case.name", f"must be letters, digits, '_', '-' or '.' only (it names the figure); got {name!r}"
        )
    d = r.integer(case["d"], "case.d")
    if d < 3:
        r.fail("case.d", f"must be >= 3 (Theorem 1.1 needs d >= 3), got {d}")
    T = r.positive(case["T"], "case.T")
    eps = r.positive(case["eps"], "case.eps")
    if eps >= 1:
        r.fail("case.eps", f"must be < 1, got {eps!r}")
    seed = r.integer(case.get("seed", 0), "case.seed", lo=0)
    inputs: list[CapInput] = []
    for i, t in enumerate(r.array(data["inputs"], "inputs", what=" of tables ([[inputs]])")):
        key = f"inputs[{i}]"
        t = r.table(t, key, ("mean", "radius", "kappa"), required=("mean", "radius"), what=f"[[inputs]] {i}")
        radius = r.positive(t["radius"], f"{key}.radius")
        if radius >= math.pi:
            r.fail(f"{key}.radius", f"must be < pi (a cap, not the sphere), got {radius!r}")
        kappa = r.real(t.get("kappa", 0.0), f"{key}.kappa")
        if kappa < 0:
            r.fail(f"{key}.kappa", f"must be >= 0, got {kappa!r}")
        cap = CapInput(r.unit(t["mean"], f"{key}.mean", d), radius, kappa)
        for j, other in enumerate(inputs):
            # One flow sends one measure to one place: two copies cannot reach two targets. Their
            # samples differ, and the construction would separate those (by their noise), not the
            # measures: fresh samples of either would end anywhere.
            if np.allclose(cap.mean, other.mean, rtol=0, atol=1e-12) and (radius, kappa) == (
                other.radius, other.kappa
            ):
                r.fail(key, f"is the same measure as inputs[{j}]: one flow cannot send it to two targets")
        inputs.append(cap)
    tg = r.table(data["targets"], "targets", ("points",), required=("points",))
    pts = r.array(tg["points"], "targets.points", what=" of unit vectors")
    if len(pts) != len(inputs):
        r.fail("targets.points", f"has {len(pts)} points for {len(inputs)} inputs (one target per input)")
    targets = np.array([r.unit(p, f"targets.points[{k}]", d) for k, p in enumerate(pts)])
    for k in range(len(targets)):
        for j in range(k):
            if np.linalg.norm(targets[k] - targets[j]) < 1e-8:
                r.fail(f"targets.points[{k}]", f"repeats targets.points[{j}]: targets must be distinct")
    part = r.table(data.get("particles", {}), "particles", ("tokens", "layers"))
    tokens = r.integer(part.get("tokens", 500), "particles.tokens", lo=2)
    layers = r.counts(part.get("layers", [100, 200, 400, 800]), "particles.layers", lo=1)
    grid = r.table(data.get("grid", {}), "grid", ("levels", "cfl", "max_dt"))
    levels: tuple[int, ...] = ()
    if "levels" in grid:
        if d != 3:
            r.fail("grid.levels", f"needs d = 3 (the S^2 meshes), got case.d = {d}")
        if grid["levels"] == []:
            levels = ()
        else:
            levels = r.counts(grid["levels"], "grid.levels", lo=0, hi=MAX_GRID_LEVEL)
    cfl = r.positive(grid.get("cfl", 0.5), "grid.cfl")
    if cfl > 1:
        r.fail("grid.cfl", f"must lie in (0, 1], got {cfl!r}")
    max_dt = r.positive(grid["max_dt"], "grid.max_dt") if "max_dt" in grid else None
    check_interpolation_memory(source, tokens, len(inputs), d, levels)
    return InterpolationCase(
        name=name,
        description=r.string(case.get("description", ""), "case.description"),
        d=d,
        T=T,
        eps=eps,
        seed=seed,
        inputs=tuple(inputs),
        targets=targets,
        tokens=tokens,
        layers=layers,
        levels=levels,
        cfl=cfl,
        max_dt=max_dt,
        source=source,
    )


def check_interpolation_memory(source: str, tokens: int, inputs: int, d: int, levels: Sequence[int]) -> None:
    """:class:`~vlasov_tf.memory.TooLarge` naming the number when an interpolation case's tokens (every
    input's, and their fresh samples) or a grid check level would not fit in the memory available."""
    check_memory(2 * tokens * inputs * d * BYTES_PER_TOKEN_DIM, f"{source}: particles.tokens {tokens} "
                 f"({inputs} inputs)")  # fmt: skip
    for level in levels:
        cells = SPHERE_LEVEL0_CELLS * 4**level
        need = cells * (BYTES_PER_CELL + BYTES_PER_SPHERE_CELL)
        check_memory(need, f"{source}: grid level {level} ({cells} cells)")


def load_interpolation_case(path: str | os.PathLike) -> InterpolationCase:
    """Read and validate an interpolation case file (or the shipped case of that bare name,
    :func:`vlasov_tf.runs.cases.find_case`); errors name the file and the dotted key."""
    path = find_case(path)
    return parse_interpolation_case(path.read_text(encoding="utf-8"), str(path))
