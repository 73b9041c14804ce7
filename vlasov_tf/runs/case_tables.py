"""The tables of a case file, each read into its typed object: ``[case]`` geometry and output times,
``[initial]`` (an :class:`~vlasov_tf.geometry.initial.InitialMeasure`), ``[particles]``, ``[grid]``,
``[clusters]`` and ``[sweep]`` (the specs below); ``[model]`` and ``[[schedule]]`` in
:mod:`vlasov_tf.runs.model_tables`.

:func:`vlasov_tf.runs.cases.parse_case` calls the readers in order; every failure is one
``ValueError('<file>: <dotted key> <problem>')`` through :class:`~vlasov_tf.runs.toml_reader.TomlReader`.
The layout of a case file, every key, is in :mod:`vlasov_tf.runs.cases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlasov_tf.analysis.clusters import MIN_MASS, MIN_MIN_MASS, SCALE, TRIM
from vlasov_tf.geometry.initial import (
    Gaussian,
    InitialMeasure,
    PointsFile,
    Uniform,
    UniformPerturbed,
    VmfMixture,
    legendre_range,
)
from vlasov_tf.geometry.measures import (
    SPHERE_ATOL,
    angles_to_circle,
    normalize,
)
from vlasov_tf.geometry.meshes import SPHERE_LEVELS
from vlasov_tf.runs.case_keys import allowed, required
from vlasov_tf.runs.ensembles import ENSEMBLES
from vlasov_tf.runs.toml_reader import TomlReader, show_value
from vlasov_tf.solvers.grid_scheme import (
    ATOL,
    DIFFUSIONS,
    FIELD_ACCURACIES,
    FIELD_ACCURACY,
    FIELD_MEASURE,
    FIELD_MEASURES,
    FIELD_METHODS,
    LIMITERS,
    RECONSTRUCTION,
    RECONSTRUCTIONS,
    RTOL,
    GridScheme,
    check_scheme,
)
from vlasov_tf.solvers.particles import FIELD_METHODS as TOKEN_FIELD_METHODS
from vlasov_tf.solvers.particles import MAX_STEPS, NORMS

__all__ = [
    "FAMILIES",
    "GEOMETRIES",
    "MAX_OUTPUTS",
    "MAX_SPHERE_DEGREE",
    "MIN_CIRCLE_CELLS",
    "SAMPLINGS",
    "ClusterSpec",
    "GridSpec",
    "ParticleSpec",
    "SweepSpec",
    "TransitionSpec",
    "check_noisy_particles",
    "read_clusters",
    "read_geometry",
    "read_grid",
    "read_initial",
    "read_output_times",
    "read_particles",
    "read_sweep",
    "read_transition",
]

GEOMETRIES = ("circle", "sphere", "euclidean")
#: Initial families available in each geometry.
_ON_SPHERES = tuple(c.family for c in (VmfMixture, Uniform, UniformPerturbed, PointsFile))
FAMILIES = {"circle": _ON_SPHERES, "sphere": _ON_SPHERES, "euclidean": (Gaussian.family, PointsFile.family)}
SAMPLINGS = ("random", "quantiles", "atoms")
#: Fewest cells of a circle grid: with 2, both faces join the same two cells (degenerate gradients).
MIN_CIRCLE_CELLS = 3
#: Highest zonal degree l of "uniform_perturbed" on S^2: the positivity bound needs the extrema of
#: P_l, found from the roots of P_l', which lose accuracy for very high degrees (and no grid here
#: resolves l > 40 anyway).
MAX_SPHERE_DEGREE = 40

_DIM = {"circle": 2, "sphere": 3}
# Output times and durations that differ from T by rounding only (e.g. 0.1 + 0.2 vs 0.3) are T.
T_RTOL = 1e-9


#: The most output times a case may ask for: the run file lays every output of every job out when
#: it is made (a view per snapshot for XDMF readers: about 0.3 ms and 500 bytes each, so 2000
#: outputs of the 37 jobs of a large ladder take ~20 s and ~37 MB of metadata).
MAX_OUTPUTS = 2_000


@dataclass(frozen=True)
class ParticleSpec:
    """The Lagrangian runs: token numbers N, Transformer depths L, the reference, the sampling.

    ``reference_steps`` RK4 steps give the continuous-time reference (0: the
    adaptive DOP853 solver). ``sampling``: "random" (i.i.d. samples, generator
    ``default_rng((seed, N))``), "quantiles" (circle only, see
    :meth:`InitialMeasure.quantiles`) or "atoms" (family "file": its weighted points).
    ``samples``: independent token sets per N run under the continuous flow ("random" only;
    the deep Transformers act on sample 0). ``field_method``: how the attention sums are
    evaluated (``solve_particles``'s ``field_method``: "auto", "dense", "taylor", "spectral").
    ``norm``: the layer-normalisation placement (``solve_particles``'s ``norm``: "post", "pre",
    "peri"); with "pre" or "peri" the tokens are a residual stream in R^d whose directions are
    compared and clustered, and there is no grid (it solves the "post" flow on the sphere).
    """

    tokens: tuple[int, ...]
    layers: tuple[int, ...]
    reference_steps: int = 0
    seed: int = 0
    sampling: str = "random"
    field_method: str = "auto"
    samples: int = 1
    norm: str = "post"


@dataclass(frozen=True)
class GridSpec:
    """The Eulerian runs: circle numbers of cells M (>= 3) or sphere levels K (0..5, nested), the scheme.

    ``cfl``, ``reconstruction`` ("linear": second order; "quadratic", "quadratic-lowdiss": third)
    and ``limiter`` (the reconstruction's default unless given): as for ``solve_grid``.
    ``rtol``, ``atol``: the error control of ``solve_grid`` (each step's embedded error
    estimate against ``atol`` times the mass plus ``rtol`` times the step's change); ``max_dt``
    (None: no cap) caps the step on top of it and of the CFL number.
    ``field_method``: ``solve_grid``'s ("auto", "dense", "taylor", "spectral", "fft").
    ``field_measure``: ``solve_grid``'s ("cells": second order; "quadrature": third, quadratic only).
    ``field_accuracy``: ``solve_grid``'s ("rows": every flux point's kernel sums within 1e-10;
    "flux": looser where little mass can flow).
    ``diffusion``: ``solve_grid``'s, how a noisy model's ``sigma Laplace`` is stepped ("explicit",
    "implicit").
    """

    resolutions: tuple[int, ...]
    cfl: float = 0.5
    limiter: str = check_scheme(RECONSTRUCTION, None)[1]
    max_dt: float | None = None
    reconstruction: str = RECONSTRUCTION
    field_method: str = "auto"
    rtol: float | None = RTOL  # None: fixed CFL steps
    atol: float = ATOL
    field_measure: str = FIELD_MEASURE
    field_accuracy: str = FIELD_ACCURACY
    diffusion: str = "explicit"

    @property
    def scheme(self) -> GridScheme:
        """The solvers' :class:`~vlasov_tf.solvers.grid_scheme.GridScheme` of these options."""
        steps = (self.cfl, self.max_dt, self.rtol, self.atol)
        field = (self.field_method, self.field_measure, self.field_accuracy, self.diffusion)
        return GridScheme(self.reconstruction, self.limiter, *steps, *field)


@dataclass(frozen=True)
class ClusterSpec:
    """How a run's clusters are found (:func:`vlasov_tf.analysis.clusters.find_clusters`): linking at
    ``scale`` kernel widths, the lowest-density ``trim`` of the mass left out, clusters of at least
    ``min_mass``."""

    scale: float = SCALE
    trim: float = TRIM
    min_mass: float = MIN_MASS

    @property
    def max_clusters(self) -> int:
        return int(1.0 / self.min_mass + 1e-9)


@dataclass(frozen=True)
class SweepSpec:
    """An ensemble over beta (``vlasov-tf sweep``, :mod:`vlasov_tf.runs.sweeps`): ``members`` flows of
    ``particles.tokens[0]`` tokens for each of ``betas`` (the model's beta is replaced), member m
    from the tokens of sample m and, unless ``parameters`` is "identity", Q, K, V of a random
    ensemble (:func:`vlasov_tf.runs.ensembles.random_qkv`, streams from ``seed``) drawn again every
    ``redraw`` (0: never); ``steps`` RK4 steps over [0, T]; pairs closer than ``close`` radians
    count as close."""

    betas: tuple[float, ...]
    members: int = 32
    parameters: str = "identity"
    redraw: float = 0.0
    steps: int = 200
    close: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class TransitionSpec:
    """Stationary states against the noise (``vlasov-tf transition``, :mod:`vlasov_tf.runs.transitions`):
    the grid of ``resolution`` relaxes for T at each of ``noise`` (up, then back down from the
    last; each start mixed with the fraction ``kick`` of the initial measure), ``members`` sets of
    ``tokens`` tokens from the initial measure through ``layers`` noisy layers at each (``tokens``
    0: none)."""

    noise: tuple[float, ...]
    resolution: int
    tokens: int
    members: int = 4
    layers: int = 100
    kick: float = 0.05


_INITIAL_KEYS = {
    "vmf_mixture": ("means", "angles", "kappas", "proportions"),
    "uniform": (),
    "uniform_perturbed": ("amplitude", "k", "phase", "l", "axis"),
    "file": ("path",),
    "gaussian": ("mean", "covariance"),
}


def read_geometry(r: TomlReader, case: dict[str, Any]) -> tuple[str, int]:
    geometry = r.string(case["geometry"], "case.geometry", GEOMETRIES)
    if geometry == "euclidean":
        if "d" not in case:
            r.missing("case.d", "the dimension of R^d, for geometry 'euclidean'")
        return geometry, r.integer(case["d"], "case.d", lo=2)
    d = _DIM[geometry]
    if geometry == "sphere" and "d" in case:
        return geometry, r.integer(case["d"], "case.d", lo=3)  # S^{d-1}: tokens (S^2 for grids)
    if "d" in case and r.integer(case["d"], "case.d") != d:
        r.fail("case.d", f"must be {d} for geometry {geometry!r} (S^{d - 1} in R^{d}), got {case['d']}")
    return geometry, d


def read_output_times(r: TomlReader, v: Any, T: float) -> np.ndarray:
    key = "case.outputs"
    if isinstance(v, int) and not isinstance(v, bool):
        # Each output is a snapshot of every job: 2000 is already far more than a figure shows.
        return np.linspace(0.0, T, r.integer(v, key, lo=2, hi=MAX_OUTPUTS))
    if not isinstance(v, list):
        r.fail(
            key,
            "must be a count of equally spaced times (integer >= 2) or an array of times, "
            f"got {show_value(v)}",
        )
    # Python floats, so that messages show 3.0, not np.float64(3.0).
    times = r.reals(v, key).tolist()
    if len(times) > MAX_OUTPUTS:
        r.fail(key, f"lists {len(times)} times, at most {MAX_OUTPUTS} are allowed")
    for i, t in enumerate(times):
        if not -T_RTOL * T <= t <= T * (1 + T_RTOL):
            r.fail(f"{key}[{i}]", f"must lie in [0, T] = [0, {T!r}], got {t!r}")
        if i and t <= times[i - 1]:
            r.fail(
                f"{key}[{i}]", f"must be larger than {key}[{i - 1}] = {times[i - 1]!r} (strictly increasing)"
            )
    if abs(times[0]) > T_RTOL * T:
        r.fail(f"{key}[0]", f"must be 0 (the outputs run from 0 to T), got {times[0]!r}")
    if abs(times[-1] - T) > T_RTOL * T:
        r.fail(
            f"{key}[{len(times) - 1}]", f"must be T = {T!r} (the outputs run from 0 to T), got {times[-1]!r}"
        )
    times[0], times[-1] = 0.0, T
    return np.array(times)


def read_initial(r: TomlReader, v: Any, geometry: str, d: int) -> InitialMeasure:
    families = FAMILIES[geometry]
    if not isinstance(v, dict):
        r.fail("initial", f"must be a table, got {show_value(v)}")
    if "family" not in v:
        r.missing("initial.family", f"one of {', '.join(families)}")
    fam = r.string(v["family"], "initial.family")
    if fam not in families:
        others = [g for g in GEOMETRIES if fam in FAMILIES[g]]
        hint = f" ({fam!r} is for geometry {' or '.join(others)})" if others else ""
        r.fail(
            "initial.family",
            f"must be one of {', '.join(repr(f) for f in families)} for geometry {geometry!r}; "
            f"got {fam!r}{hint}",
        )
    keys = allowed("initial", "family", *_INITIAL_KEYS[fam])
    if fam == "vmf_mixture" and geometry != "circle":
        keys = tuple(k for k in keys if k != "angles")
    if fam == "uniform_perturbed":
        if d > 3:
            r.fail("initial.family", f"'uniform_perturbed' is defined on S^1 and S^2, not S^{d - 1}")
        keys = allowed("initial", "family", "amplitude", *(("k", "phase") if d == 2 else ("l", "axis")))
    needed = {
        "uniform_perturbed": ("amplitude", "k" if d == 2 else "l"),
        "file": ("path",),
        "gaussian": ("mean", "covariance"),
    }.get(fam, ())
    t = r.table(v, "initial", keys, needed, what=f"[initial] of family {fam!r}")
    sphere = geometry != "euclidean"

    if fam == "uniform":
        return Uniform(d)
    if fam == "vmf_mixture":
        return _vmf(r, t, d)
    if fam == "uniform_perturbed":
        return _perturbed(r, t, d)
    if fam == "gaussian":
        mean = r.reals(t["mean"], "initial.mean", d, f" (a vector in R^{d})")
        cov = r.matrix(t["covariance"], "initial.covariance", d, d)
        if np.abs(cov - cov.T).max() > 1e-12 * np.abs(cov).max():
            r.fail("initial.covariance", "must be symmetric")
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            r.fail("initial.covariance", f"must be positive definite (eigenvalues {np.linalg.eigvalsh(cov)})")
        return Gaussian(d, mean=mean, covariance=cov)
    return _points_file(r, t, d, sphere)


def _vmf(r: TomlReader, t: dict[str, Any], d: int) -> InitialMeasure:
    if "means" in t and "angles" in t:
        r.fail("initial.angles", "excludes initial.means: give the modes one way")
    if "means" not in t and "angles" not in t:
        r.missing("initial.means", "unit vectors" + (", or initial.angles on the circle" if d == 2 else ""))
    if "angles" in t:
        means = angles_to_circle(r.reals(t["angles"], "initial.angles"))
        key = "initial.angles"
    else:
        raw = r.array(t["means"], "initial.means", what=" of unit vectors")
        means = np.array([r.unit(m, f"initial.means[{i}]", d) for i, m in enumerate(raw)])
        key = "initial.means"
    k = len(means)
    if "kappas" not in t:
        r.missing("initial.kappas", "one concentration > 0 per mode")
    per = f" (one per entry of {key})"
    kappas = r.reals(t["kappas"], "initial.kappas", k, per)
    for i, kap in enumerate(kappas.tolist()):
        if not kap > 0:
            r.fail(f"initial.kappas[{i}]", f"must be > 0, got {kap!r}")
    if "proportions" in t:
        p = r.reals(t["proportions"], "initial.proportions", k, per)
        for i, pi in enumerate(p.tolist()):
            if pi < 0:
                r.fail(f"initial.proportions[{i}]", f"must be >= 0, got {pi!r}")
        if not p.sum() > 0:
            r.fail("initial.proportions", "must have a positive sum")
    else:
        p = np.ones(k)
    return VmfMixture(d, means=means, kappas=kappas, proportions=p / p.sum())


def _perturbed(r: TomlReader, t: dict[str, Any], d: int) -> InitialMeasure:
    a = r.real(t["amplitude"], "initial.amplitude")
    if d == 2:
        k = r.integer(t["k"], "initial.k", lo=1)
        if not abs(a) < 1:
            r.fail(
                "initial.amplitude",
                f"must keep the density 1 + a cos(k (t - phase)) > 0, i.e. |a| < 1; got {a!r}",
            )
        phase = r.real(t.get("phase", 0.0), "initial.phase")
        return UniformPerturbed(2, amplitude=a, mode=k, phase=phase)
    deg = r.integer(t["l"], "initial.l", lo=1, hi=MAX_SPHERE_DEGREE)
    axis = r.unit(t.get("axis", [0.0, 0.0, 1.0]), "initial.axis", 3)
    lo, hi = legendre_range(deg)
    if not (1 + a * lo > 0 and 1 + a * hi > 0):
        r.fail(
            "initial.amplitude",
            f"must keep the density 1 + a P_{deg}(<x, axis>) > 0, i.e. -1 < a < {-1 / lo:.6g} (P_{deg} spans "
            f"[{lo:.6g}, 1]); got {a!r}",
        )
    return UniformPerturbed(3, amplitude=a, mode=deg, axis=axis)


def _points_file(r: TomlReader, t: dict[str, Any], d: int, sphere: bool) -> InitialMeasure:
    key = "initial.path"
    name = r.string(t["path"], key)
    path = Path(name) if Path(name).is_absolute() else r.base_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"{r.source}: {key}: the points file {path} does not exist")
    try:
        if path.suffix == ".npy":
            points, weights = np.load(path, allow_pickle=False), None
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                extra = sorted(set(f.files) - {"points", "weights"})
                if "points" not in f.files or extra:
                    r.fail(
                        key,
                        f"({path}) must hold an array 'points' and optionally 'weights'; it holds {f.files}",
                    )
                points = f["points"]
                weights = f["weights"] if "weights" in f.files else None
        else:
            r.fail(key, f"must name a .npy or .npz file, got {name!r}")
    except (OSError, ValueError) as err:
        if str(err).startswith(r.source):
            raise
        r.fail(key, f"({path}) is not a readable numpy file: {err}")
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != d or pts.shape[0] < 1 or not np.issubdtype(pts.dtype, np.number):
        r.fail(
            key, f"({path}): points must be a numeric (n, {d}) array with n >= 1, got {pts.dtype} {pts.shape}"
        )
    pts = pts.astype(float)
    if not np.isfinite(pts).all():
        r.fail(key, f"({path}): points have non-finite values")
    if sphere:
        dev = np.abs(np.linalg.norm(pts, axis=1) - 1.0)
        if dev.max() > SPHERE_ATOL:
            i = int(np.argmax(dev))
            r.fail(key, f"({path}): points[{i}] is off the unit sphere by {dev[i]:.2e} (> {SPHERE_ATOL:g})")
        pts = normalize(pts)
    if weights is None:
        w = np.full(len(pts), 1.0 / len(pts))
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(pts),) or not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
            r.fail(key, f"({path}): weights must be ({len(pts)},), finite, >= 0 with a positive sum")
        w = w / w.sum()
    return PointsFile(d, sphere=sphere, points=pts, weights=w, path=str(path))


def check_noisy_particles(
    r: TomlReader, particles: ParticleSpec, times: np.ndarray, switches: np.ndarray
) -> None:
    """A noisy model's particle runs: the reference is the noisy Transformer of
    ``reference_steps`` layers, and every depth's kicks are those of the reference's Brownian
    path (:mod:`vlasov_tf.solvers.brownian`), so each depth divides it and every output time and
    switch lies on the coarsest depth's steps."""
    ref = particles.reference_steps
    if ref == 0:
        r.missing(
            "particles.reference_steps",
            "a noisy model's reference is the noisy Transformer with that many layers (no "
            "continuous-time ODE): a multiple of every particles.layers",
        )
    for L in particles.layers:
        if ref % L:
            r.fail("particles.layers", f"must divide particles.reference_steps = {ref} for a noisy model "
                   f"(the depths share the reference's Brownian path); got {L}")  # fmt: skip
    T, coarse = float(times[-1]), min(particles.layers)
    for key, stops in (("case.outputs", times), ("schedule", switches)):
        k = np.asarray(stops) * coarse / T
        if np.abs(k - np.round(k)).max() > 1e-9 * coarse:
            what = "(the output times)" if key == "case.outputs" else "(the blocks' switch times)"
            r.fail(key, f"{what} must be multiples of T / {coarse} (the coarsest depth's steps) for a "
                   f"noisy model: its kicks sum the reference's")  # fmt: skip


def read_particles(r: TomlReader, v: Any, geometry: str, initial: InitialMeasure) -> ParticleSpec:
    t = r.table(v, "particles", allowed("particles"), required("particles"))
    method = r.string(t.get("field_method", "auto"), "particles.field_method", TOKEN_FIELD_METHODS)
    tokens = r.counts(t["tokens"], "particles.tokens", lo=1)
    layers = r.counts(t["layers"], "particles.layers", lo=1, hi=MAX_STEPS)
    ref = r.integer(t.get("reference_steps", 0), "particles.reference_steps", lo=0, hi=MAX_STEPS)
    seed = r.integer(t.get("seed", 0), "particles.seed", lo=0)
    sampling = r.string(t.get("sampling", "random"), "particles.sampling", SAMPLINGS)
    if sampling == "quantiles" and (geometry != "circle" or isinstance(initial, PointsFile)):
        r.fail(
            "particles.sampling",
            f"'quantiles' needs a density on the circle (geometry {geometry!r}, family {initial.family!r})",
        )
    if sampling == "atoms":
        if not isinstance(initial, PointsFile):
            r.fail("particles.sampling", f"'atoms' is for the 'file' family, not {initial.family!r}")
        if tokens != (len(initial.points),):
            r.fail(
                "particles.tokens",
                f"must be [{len(initial.points)}] (the atoms in {initial.path}) with sampling 'atoms'; "
                f"got {list(tokens)}",
            )
    elif isinstance(initial, PointsFile) and sampling != "random":
        r.fail("particles.sampling", f"must be 'random' or 'atoms' for the 'file' family, got {sampling!r}")
    samples = r.integer(t.get("samples", 1), "particles.samples", lo=1)
    if samples > 1 and sampling != "random":
        r.fail("particles.samples", f"must be 1 with sampling {sampling!r} (only random tokens differ)")
    norm = r.string(t.get("norm", "post"), "particles.norm", NORMS)
    if norm != "post" and geometry == "euclidean":
        r.fail("particles.norm", f"{norm!r} normalises tokens onto the sphere: not for geometry 'euclidean'")
    return ParticleSpec(
        tokens=tokens,
        layers=layers,
        reference_steps=ref,
        seed=seed,
        sampling=sampling,
        field_method=method,
        samples=samples,
        norm=norm,
    )


def read_sweep(r: TomlReader, v: Any, data: dict[str, Any], T: float) -> SweepSpec:
    t = r.table(v, "sweep", allowed("sweep"), required("sweep"))
    raw = t["betas"]
    if isinstance(raw, dict):
        span = r.table(raw, "sweep.betas", allowed("sweep.betas"), required("sweep.betas"))
        lo, hi = r.positive(span["from"], "sweep.betas.from"), r.positive(span["to"], "sweep.betas.to")
        count = r.integer(span["count"], "sweep.betas.count", lo=1, hi=MAX_OUTPUTS)
        if hi <= lo and count > 1:
            r.fail("sweep.betas.to", f"must be larger than sweep.betas.from = {lo!r}, got {hi!r}")
        betas = tuple(np.geomspace(lo, hi, count).tolist())  # log-spaced
    else:
        betas = tuple(r.reals(raw, "sweep.betas").tolist())
        for i, b in enumerate(betas):
            if not b > 0:
                r.fail(f"sweep.betas[{i}]", f"must be > 0, got {b!r}")
            if i and b <= betas[i - 1]:
                r.fail(f"sweep.betas[{i}]", f"must be larger than sweep.betas[{i - 1}] (strictly increasing)")
    # What a sweep replaces or does not do: refused rather than silently ignored.
    ignored = [f"model.{k}" for k in ("Q", "K", "V", "W", "perceptron") if k in data["model"]]
    ignored += ["[[schedule]]"] if "schedule" in data else []
    ignored += [k for k in ("norm",) if data["particles"].get(k, "post") != "post"]
    ignored += ["model.mask"] if data["model"].get("mask", "none") != "none" else []
    ignored += ["model.noise"] if data["model"].get("noise", 0) != 0 else []  # its RK4 flow is an ODE
    if ignored:
        r.fail("sweep", f"draws its own single head over one block: remove {', '.join(ignored)}")
    steps = r.integer(t.get("steps", 200), "sweep.steps", lo=1)
    redraw = r.real(t.get("redraw", 0.0), "sweep.redraw")
    if redraw < 0 or 0 < redraw < T / steps:
        r.fail("sweep.redraw", f"must be 0 (never) or at least one step, {T / steps:g}; got {redraw!r}")
    return SweepSpec(
        betas=betas,
        members=r.integer(t.get("members", 32), "sweep.members", lo=1),
        parameters=r.string(t.get("parameters", "identity"), "sweep.parameters", ENSEMBLES),
        redraw=redraw,
        steps=steps,
        close=r.positive(t.get("close", 0.1), "sweep.close"),
        seed=r.integer(t.get("seed", 0), "sweep.seed", lo=0),
    )


def read_transition(
    r: TomlReader, v: Any, geometry: str, particles: ParticleSpec, grid: GridSpec | None
) -> TransitionSpec:
    t = r.table(v, "transition", allowed("transition"), required("transition"))
    if grid is None:
        r.fail("transition", "relaxes the grid to its stationary states: it needs a [grid] table")
    raw = t["noise"]
    if isinstance(raw, dict):
        span = r.table(raw, "transition.noise", allowed("transition.noise"), required("transition.noise"))
        lo, hi = r.real(span["from"], "transition.noise.from"), r.real(span["to"], "transition.noise.to")
        count = r.integer(span["count"], "transition.noise.count", lo=2, hi=MAX_OUTPUTS)
        if lo < 0:
            r.fail("transition.noise.from", f"must be >= 0, got {lo!r}")
        if hi <= lo:
            r.fail("transition.noise.to", f"must be larger than transition.noise.from = {lo!r}, got {hi!r}")
        noise = tuple(np.linspace(lo, hi, count).tolist())
    else:
        noise = tuple(r.reals(raw, "transition.noise").tolist())
        for i, s in enumerate(noise):
            if not s >= 0:
                r.fail(f"transition.noise[{i}]", f"must be >= 0, got {s!r}")
            if i and s <= noise[i - 1]:
                r.fail(f"transition.noise[{i}]", f"must exceed transition.noise[{i - 1}] (increasing)")
    kick = r.real(t.get("kick", 0.05), "transition.kick")
    if not 0 <= kick < 1:
        r.fail("transition.kick", f"must lie in [0, 1), got {kick!r}")
    resolution = max(grid.resolutions)
    if "resolution" in t:
        key = "transition.resolution"
        if geometry == "circle":
            resolution = r.integer(t["resolution"], key, lo=MIN_CIRCLE_CELLS)
        else:
            resolution = r.integer(t["resolution"], key, lo=SPHERE_LEVELS[0], hi=SPHERE_LEVELS[-1])
    return TransitionSpec(
        noise=noise,
        resolution=resolution,
        tokens=r.integer(t.get("tokens", max(particles.tokens)), "transition.tokens", lo=0),
        members=r.integer(t.get("members", 4), "transition.members", lo=1),
        layers=r.integer(t.get("layers", max(particles.layers)), "transition.layers", lo=1),
        kick=kick,
    )


def read_clusters(r: TomlReader, v: Any) -> ClusterSpec:
    t = r.table(v, "clusters", allowed("clusters"), required("clusters"))
    scale = r.positive(t.get("scale", SCALE), "clusters.scale")
    trim = r.real(t.get("trim", TRIM), "clusters.trim")
    if not 0 <= trim < 1:
        r.fail("clusters.trim", f"must lie in [0, 1), got {trim!r}")
    min_mass = r.positive(t.get("min_mass", MIN_MASS), "clusters.min_mass")
    if not MIN_MIN_MASS <= min_mass <= 1:
        r.fail("clusters.min_mass", f"must lie in [{MIN_MIN_MASS:g}, 1] (<= 10^4 clusters), got {min_mass!r}")
    return ClusterSpec(scale, trim, min_mass)


def read_grid(r: TomlReader, v: Any, geometry: str, initial: InitialMeasure) -> GridSpec:
    if geometry == "euclidean":
        r.fail("grid", "is not available for geometry 'euclidean' (particles only): remove the [grid] table")
    if isinstance(initial, PointsFile):
        r.fail(
            "grid",
            "needs a density, and initial.family 'file' gives weighted points: remove the [grid] table",
        )
    if geometry == "sphere" and initial.d != 3:
        r.fail("grid", f"meshes are of S^2 (d = 3), not S^{initial.d - 1}: remove the [grid] table")
    t = r.table(v, "grid", allowed("grid"), required("grid"))
    if geometry == "circle":
        res = r.counts(t["resolutions"], "grid.resolutions", lo=MIN_CIRCLE_CELLS)
    else:
        res = r.counts(t["resolutions"], "grid.resolutions", lo=SPHERE_LEVELS[0], hi=SPHERE_LEVELS[-1])
    cfl = r.positive(t.get("cfl", 0.5), "grid.cfl")
    if cfl > 1:
        r.fail("grid.cfl", f"must lie in (0, 1], got {cfl!r}")
    given = t.get("reconstruction")
    reconstruction = None if given is None else r.string(given, "grid.reconstruction", RECONSTRUCTIONS)
    limiter = r.string(t["limiter"], "grid.limiter", LIMITERS) if "limiter" in t else None
    try:
        reconstruction, limiter = check_scheme(reconstruction, limiter)
    except ValueError as err:
        r.fail("grid.limiter", str(err))
    max_dt = r.positive(t["max_dt"], "grid.max_dt") if "max_dt" in t else None
    tolerances: dict[str, float | None] = {}
    for name, default in (("rtol", RTOL), ("atol", ATOL)):
        if name == "rtol" and t.get(name) is False:
            tolerances[name] = None  # fixed CFL steps
            continue
        value = tolerances[name] = r.positive(t.get(name, default), f"grid.{name}")
        if value >= 1:
            r.fail(f"grid.{name}", f"must lie in (0, 1) (rtol: or false), got {value!r}")
    method = r.string(t.get("field_method", "auto"), "grid.field_method", FIELD_METHODS)
    measure = r.string(t.get("field_measure", FIELD_MEASURE), "grid.field_measure", FIELD_MEASURES)
    accuracy = r.string(t.get("field_accuracy", FIELD_ACCURACY), "grid.field_accuracy", FIELD_ACCURACIES)
    if measure == "quadrature" and reconstruction != "quadratic":
        r.fail("grid.field_measure", f"'quadrature' reads the quadratic polynomials: it needs "
                                     f"grid.reconstruction 'quadratic', not {reconstruction!r}")  # fmt: skip
    diffusion = r.string(t.get("diffusion", "explicit"), "grid.diffusion", DIFFUSIONS)
    return GridSpec(
        resolutions=res,
        cfl=cfl,
        limiter=limiter,
        max_dt=max_dt,
        reconstruction=reconstruction,
        field_method=method,
        rtol=tolerances["rtol"],
        atol=tolerances["atol"] or ATOL,
        field_measure=measure,
        field_accuracy=accuracy,
        diffusion=diffusion,
    )
