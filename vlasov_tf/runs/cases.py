"""Case files: TOML descriptions of runs, loaded and validated into the objects the solvers take.

A case states one problem of the cross-validation: the geometry, the final
time and output times, the initial measure mu_0, the model (a schedule of
attention parameters, ``docs/equations.md``, or an interaction kernel) and the discretisations to run
(particle numbers N and depths L; grid resolutions). :func:`load_case` reads
a file, :func:`parse_case` a string; both return a :class:`Case` or raise
``ValueError`` with the file name and the dotted key of the offending entry,
e.g. ``cases/foo.toml: initial.kappas[1] must be > 0, got -2.0``. Unknown keys
(at any level), missing keys, wrong TOML types (a boolean is not a number,
``100.0`` is not an integer count) and out-of-range values are all refused:
a typo never silently falls back to a default.

Layout (every key below; comments say which are optional)::

    # --8<-- example
    [case]
    name = "example"                  # letters, digits, '_', '-', '.': used in output file names
    description = "what it shows"     # optional
    geometry = "sphere"               # "circle" (S^1, d = 2) | "sphere" (S^{d-1}) | "euclidean" (R^d)
    # d = 3                           # required for "euclidean"; "sphere": d >= 3 (default 3; grids
                                      # only for S^2); "circle": 2
    T = 2.5                           # final time, > 0
    outputs = 6                       # n >= 2 equally spaced times in [0, T], or a list [0.0, 1.0, 2.5]
                                      # (strictly increasing, from 0 to T)

    [initial]                         # the initial measure mu_0; one family and its parameters:
    family = "vmf_mixture"            # mixture of von Mises-Fisher laws C_d(kappa) exp(kappa <m, x>)
    means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]  # unit vectors (to 1e-6); on the circle `angles = [...]`
    kappas = [4.0, 6.0]               # concentrations > 0
    proportions = [0.6, 0.4]          # optional (default equal): >= 0, positive sum, normalised
    # family = "uniform"                             (no parameters)
    # family = "uniform_perturbed"; amplitude = a    density (1 + a f(x)) / |S^{d-1}|, kept > 0:
    #     circle: k = 3, phase = 0.0 (optional)      f = cos(k (t - phase)), |a| < 1
    #     sphere: l = 2, axis = [0, 0, 1] (optional) f = P_l(<x, axis>) (zonal harmonic), 1 <= l <= 40
    # family = "file"; path = "tokens.npz"           weighted points (relative to the case file): .npy of
    #     (n, d) points, or .npz with `points` and optional `weights`; particles only (no density)
    # family = "gaussian"; mean = [...]; covariance = [[...], ...]   euclidean only

    [model]                           # the parameters of every block unless a block overrides them
    type = "attention"                # optional: "attention" (the default) | "interaction" (below)
    attention = "SA"                  # optional: "SA" (softmax, default) | "USA" (unnormalised)
    mask = "none"                     # optional: "causal": a token attends to the tokens at or before
                                      # its position s (every block); s in `slices` slices of [0, 1],
    # slices = 8                      # token i of N in slice floor(i slices / N), the grid a density
                                      # per slice (vlasov_tf/solvers/causal_grid.py); N a multiple of slices
    noise = 0.0                       # optional, >= 0 (any model type): sigma of the noise sigma Laplace
                                      # (McKean-Vlasov); > 0 needs particles.reference_steps (below)
    beta = 1.0                        # inverse temperature > 0; with no Q, K, V: Q = K = V = I, one head
    Q = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],   # per-head d x d matrices: a list of H
         [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]  # matrices (or one d x d matrix for H = 1)
    K = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],   # scores beta <Q_h x, K_h y>;
         [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]   # Q, K, V go together (beta then
    V = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],   # defaults to 1)
         [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]]]
    # W = [...]                       # optional per-head output matrices W_h (H of them; needs Q, K, V)

    [model.perceptron]                # optional: W (U x + b)_+ with W (d, m), U (m, d), b (m,)
    W = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    U = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    b = [0.0, -0.5]                   # optional, default zeros

    [[schedule]]                      # optional blocks, in time order; no blocks = one block of length T
    duration = 1.0                    # > 0; the durations sum to T
    [[schedule]]
    duration = 1.5
    beta = 2.0                        # a block may override attention, beta, Q, K, V, W, perceptron
    [schedule.perceptron]             # (a perceptron table replaces the model's as a whole)
    W = [[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]]
    U = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]

    # [model]                         # type "interaction" (vlasov_tf/models/interaction.py), instead:
    # type = "interaction"            # X = P_x(int phi(<x, y>) y dmu(y) / Z(x)) + Omega x; no [[schedule]]
    # kernel = { name = "exp_difference", a = 1.0, alpha = 8.0, r = 0.5, rho = 2.0 }   # phi: "constant"
    #                                 # (c) | "exp" (beta) | "polynomial" (a = [a_0, a_1, ...], sum a_k t^k)
    #                                 # | "exp_difference" (a e^{alpha (t - 1)} - r e^{rho (t - 1)})
    # normalised = false              # optional: Z = int psi(<x, y>) dmu(y), psi the kernel or:
    # normaliser = { name = "exp", beta = 4.0 }   # optional psi, positive on [-1, 1]
    # frequency = 0.5                 # optional, circle: the drift's angular velocity
    # omega = [[0.0, -0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]   # optional, sphere: skew-symmetric

    [particles]                       # the Lagrangian runs
    tokens = [100, 1000]              # numbers of tokens N (an integer or a strictly increasing list)
    layers = [10, 100]                # depths L of the deep Transformer (method "layers")
    reference_steps = 0               # optional: RK4 steps of the continuous-time reference; 0 = adaptive
    seed = 0                          # optional, >= 0: tokens for N come from default_rng((seed, N))
    samples = 1                       # optional, >= 1: independent token sets per N for the reference
                                      # (sample s > 0 from default_rng((seed, N, s))): the N-study's spread
    sampling = "random"               # optional: "random" (i.i.d.) | "quantiles" (circle: deterministic
                                      # points at the (i + 1/2)/N quantiles) | "atoms" (family "file":
                                      # its points and weights as they are)
    field_method = "auto"             # optional: "auto" (cheapest within 1e-10 per row) | "dense" |
                                      # "taylor" (small beta) | "spectral" (tokens on S^1 or S^2)
    norm = "post"                     # optional: layer norm after the residual update ("post": the
                                      # sphere), before the sublayer ("pre") or around it ("peri");
                                      # "pre" and "peri" have no [grid] (solve_particles' norm)

    [grid]                            # optional (circle and sphere only): the Eulerian runs
    resolutions = [0, 1]              # circle: numbers of cells M >= 3; sphere: nested mesh levels 0..5
    cfl = 0.5                         # optional, in (0, 1]
    reconstruction = "quadratic"      # optional: "quadratic" (3rd order) | "quadratic-lowdiss" (3rd,
                                      # less dissipation: filaments) | "linear" (2nd order)
    limiter = "positivity"            # optional: quadratic "positivity" | "none"; linear
                                      # "barth-jespersen" | "none" (default: the first; without
                                      # reconstruction, "barth-jespersen" selects "linear")
    rtol = 1e-3                       # optional, in (0, 1): time-step error control, relative to
                                      # what a step changes (L1 of the density); false: no control,
                                      # fixed steps at the CFL bound (and max_dt)
    atol = 1e-8                       # optional, in (0, 1): the same relative to the total mass
    # max_dt = 0.05                   # optional cap on the time step (default: none)
    field_method = "auto"             # optional: as for particles, plus "fft" (uniform circle grids)
    field_measure = "cells"           # optional: "cells" (masses at the cell centres, 2nd order) |
                                      # "quadrature" (the quadratic polynomials at 2 points a cell on
                                      # S^1, 3 on S^2: 3rd order for attention, 2-3x the keys)
    field_accuracy = "rows"           # optional: "rows" (every flux point's sums within 1e-10) |
                                      # "flux" (1e-10 where mass can flow, looser where little can:
                                      # cheap for tight clusters at large beta)
    diffusion = "explicit"            # optional, noisy models: "explicit" (sigma Laplace in the
                                      # fluxes, step ~ h^2 / sigma) | "implicit" (TR-BDF2, Strang-
                                      # split: the transport's step; not on the causal grid)

    [clusters]                        # optional: how clusters are found (vlasov_tf/analysis/clusters.py)
    scale = 1.0                       # linking distance in kernel widths (largest beta)^(-1/2)
    trim = 0.01                       # mass fraction of the lowest local densities left out, [0, 1)
    min_mass = 0.01                   # smallest cluster mass, (0, 1]; at most 1/min_mass clusters

    # [transition]                    # optional: stationary states against the noise (vlasov-tf
    # noise = { from = 0.05, to = 0.5, count = 10 }   # transition): increasing sigmas >= 0 (or a list),
    #                                 # the grid relaxing for T at each, up then back down (hysteresis)
    # resolution = 2                  # optional: the grid's (default: the finest of grid.resolutions)
    # tokens = 2000                   # optional: tokens per member (default: the most; 0: none)
    # members = 4                     # optional: token sets per sigma, from the initial measure
    # layers = 100                    # optional: noisy layers over [0, T] (default: the most)
    # kick = 0.05                     # optional, [0, 1): the initial measure mixed into each start

    # [kinetic]                       # optional, circle: second-order tokens and the phase-space grid
    # friction = 0.0                  # (vlasov-tf kinetic; vlasov_tf/runs/kinetic_case.py): gamma >= 0
    # velocity_box = 4.0              # V: velocities in [-V, V], holding all but 1e-6 of the law
    # velocity_cells = [64, 128]      # Nv of each grid
    # theta_cells = [32, 64]          # optional, as many (default grid.resolutions)
    # dt = 0.1                        # optional: the first grid's Strang step (scaled by Ntheta_0/Ntheta)
    # streaming = "remap"             # optional: "remap" (positive) | "spectral" (exact per row)
    # velocity = { temperatures = [0.25], means = [0.0], weights = [1.0] }   # sum of Maxwellians

    # [sweep]                         # optional: an ensemble over beta (vlasov-tf sweep), tokens only;
    # betas = [1.0, 4.0, 16.0]        # one block with one head of its own (no Q, K, V, [[schedule]]):
    #                                 # increasing, > 0; or { from = 1.0, to = 100.0, count = 100 } (log)
    # members = 32                    # optional: flows per beta (member m: tokens of sample m)
    # parameters = "identity"         # optional: Q, K, V "identity" | "gaussian" | "wigner" | "goe"
    # redraw = 0.0                    # optional: draw them again every redraw time units (0: never)
    # steps = 200                     # optional: RK4 steps over [0, T]
    # close = 0.1                     # optional: pairs closer than this (radians) are close
    # seed = 0                        # optional: the parameters' streams
    # --8<-- end

A block's parameters are the ``[model]`` table with the block's own keys put
in its place (so a block that sets only ``beta`` keeps the model's Q, K, V).
:func:`parse_case` also takes ``overrides`` such as ``{"model.beta": 9.0}``
(dotted keys, ``schedule[1].beta`` for a block), applied before validation
and recorded in :attr:`Case.overrides`: one file serves a sweep in beta.

Design notes: docs/design.md §6 (cases are TOML files, a mistake is one line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlasov_tf.analysis.clusters import linking_distance
from vlasov_tf.geometry.initial import (
    InitialMeasure,
    PointsFile,
)
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import MeshGeometry, circle_mesh
from vlasov_tf.memory import check_memory
from vlasov_tf.models.attention import Schedule
from vlasov_tf.models.base import MeanField, deterministic
from vlasov_tf.runs.case_keys import allowed, required
from vlasov_tf.runs.case_tables import (
    ClusterSpec,
    GridSpec,
    ParticleSpec,
    SweepSpec,
    TransitionSpec,
    check_noisy_particles,
    read_clusters,
    read_geometry,
    read_grid,
    read_initial,
    read_output_times,
    read_particles,
    read_sweep,
    read_transition,
)
from vlasov_tf.runs.kinetic_case import KineticSpec, read_kinetic
from vlasov_tf.runs.model_tables import MASKS, read_model
from vlasov_tf.runs.toml_reader import TomlReader

__all__ = [
    "CASES_DIR",
    "Case",
    "case_settings",
    "case_summary",
    "find_case",
    "load_case",
    "parse_case",
    "settings_difference",
    "shipped_cases",
]

#: The case files that come with the repository.
# The repository's cases/ (an editable install), else the copy a wheel carries in the package.
_PACKAGE = Path(__file__).resolve().parents[1]
CASES_DIR = next(
    (d for d in (_PACKAGE.parent / "cases", _PACKAGE / "shipped" / "cases") if d.is_dir()),
    _PACKAGE / "shipped" / "cases",
)
@dataclass(frozen=True, eq=False)
class Case:
    """A validated case: everything a particle or grid run of it needs.

    ``source`` is the file (or ``"<string>"``), ``text`` its TOML text as read
    (for output files), ``model`` the velocity field (an attention :class:`Schedule`, an
    :class:`~vlasov_tf.models.interaction.Interaction`), ``output_times`` (n_out,) strictly
    increasing from 0 to T, ``betas`` the inverse temperature of each attention block (1.0 where the
    block gives matrices and no beta; none for other models), ``overrides`` the (dotted key, value)
    pairs applied on top of ``text``, ``file_settings`` the text with the
    overrides applied as (dotted key, JSON value) pairs (:func:`case_settings`).
    """

    name: str
    source: str
    text: str
    geometry: str
    d: int
    model: MeanField
    output_times: np.ndarray
    initial: InitialMeasure
    particles: ParticleSpec
    grid: GridSpec | None
    clusters: ClusterSpec = dataclasses.field(default_factory=ClusterSpec)
    sweep: SweepSpec | None = None
    transition: TransitionSpec | None = None
    kinetic: KineticSpec | None = None
    mask: str = "none"
    slices: int = 1
    description: str = ""
    betas: tuple[float, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    file_settings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # The betas are the attention blocks': a case whose model was replaced by another
        # (dataclasses.replace(case, model=...)) has none.
        if not isinstance(deterministic(self.model), Schedule):
            object.__setattr__(self, "betas", ())

    @property
    def T(self) -> float:
        return float(self.output_times[-1])

    @property
    def schedule(self) -> Schedule:
        """The attention schedule of an attention case (without its noise); ValueError for other
        models."""
        flow = deterministic(self.model)
        if not isinstance(flow, Schedule):
            raise ValueError(
                f"{self.source}: this needs an attention model (model.type = 'attention'), "
                f"not {type(flow).__name__}"
            )
        return flow

    @property
    def reference(self) -> str:
        """What the particle reference jobs run, for labels: the continuous flow, or for a noisy model
        the noisy Transformer of ``reference_steps`` layers whose Brownian path the depths share."""
        if self.model.noise > 0:
            return f"noisy reference (L = {self.particles.reference_steps}, same Brownian path)"
        return "continuous flow"

    @property
    def sphere(self) -> bool:
        """Whether tokens live on S^{d-1} (the ``sphere`` argument of the solvers)."""
        return self.geometry != "euclidean"

    @property
    def linking_distance(self) -> float:
        """The clusters' linking distance: ``clusters.scale`` kernel widths, the model's
        :attr:`~vlasov_tf.models.base.MeanField.width` or ``beta^{-1/2}`` of the largest beta."""
        width = self.model.width
        if width is None:
            return linking_distance(max(self.betas, default=1.0), self.clusters.scale)
        return min(self.clusters.scale * width, np.pi)

    def token_positions(self, n: int) -> np.ndarray | None:
        """(n,) the positions s of n tokens under ``model.mask = "causal"``: the midpoints of the
        ``slices`` slices of [0, 1], token i (in the order drawn) in slice ``floor(i S / n)``,
        the positions of the grid's slices (:mod:`vlasov_tf.solvers.causal_grid`); None without a mask."""
        if self.mask != "causal":
            return None
        return (np.floor(np.arange(n) * self.slices / n) + 0.5) / self.slices

    def mesh(self, resolution: int) -> MeshGeometry:
        """The grid of one resolution: ``circle_mesh(M)`` or ``sphere_mesh(K)``."""
        if self.geometry == "circle":
            return circle_mesh(resolution)
        if self.geometry == "sphere":
            return sphere_mesh(resolution)
        raise ValueError(f"case {self.name}: geometry 'euclidean' has no grid")

    def initial_tokens(self, n: int, sample: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(points (n, d), weights (n,)) of the initial tokens for N = ``n``, by ``particles.sampling``.

        "random" draws sample 0 from ``np.random.default_rng((seed, n))`` and sample ``s > 0``
        from ``default_rng((seed, n, s))``: each (N, sample) has its own reproducible stream,
        whatever the order of the runs.
        """
        how, initial = self.particles.sampling, self.initial
        # The draw and its temporaries (a few (n, d) arrays), before they are made.
        check_memory(32.0 * n * self.d, f"case {self.name}: {n} initial tokens in d = {self.d}")
        if how == "atoms":
            if not isinstance(initial, PointsFile):
                raise ValueError(f"case {self.name}: sampling 'atoms' needs the 'file' family")
            if n != len(initial.points):
                raise ValueError(f"case {self.name}: the file has {len(initial.points)} atoms, not {n}")
            return initial.points.copy(), initial.weights.copy()
        if how == "quantiles":
            pts = self.initial.quantiles(n)
        else:
            key = (self.particles.seed, int(n)) + ((int(sample),) if sample else ())
            pts = self.initial.sample(n, np.random.default_rng(key))
        return pts, np.full(len(pts), 1.0 / len(pts))


_NAME = re.compile(r"[A-Za-z0-9_.-]+")
def _apply_overrides(r: TomlReader, data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Set each dotted key (``model.beta``, ``schedule[1].beta``) in ``data``, creating tables as needed."""
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?", part)
            if not m or not isinstance(node, dict):
                r.fail(f"override {dotted!r}", "is not a dotted key into the case's tables")
            name, index = m.group(1), m.group(2)
            last = depth == len(parts) - 1
            if index is not None:
                seq = node.get(name)
                if not isinstance(seq, list) or int(index) >= len(seq):
                    have = len(seq) if isinstance(seq, list) else 0
                    r.fail(f"override {dotted!r}", f"names entry {index} of {name}, which has {have}")
                if last:
                    seq[int(index)] = value
                node = seq[int(index)]
            elif last:
                node[name] = value
            else:
                node = node.setdefault(name, {})


def parse_case(
    text: str,
    source: str = "<string>",
    *,
    base_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Case:
    """Validate the TOML ``text`` of a case (layout in the module docstring) into a :class:`Case`.

    ``source`` names the text in error messages; ``base_dir`` resolves the
    relative path of a "file" initial measure (default: the directory of
    ``source`` if it is a file, else the working directory); ``overrides``
    maps dotted keys to values set before validation. Raises ``ValueError``
    naming ``source`` and the dotted key for any invalid entry (a TOML syntax
    error included) and ``FileNotFoundError`` for a missing points file.
    """
    if base_dir is None:
        base_dir = Path(source).parent if Path(source).is_file() else Path.cwd()
    label = source
    if overrides:
        label = f"{source} (with {', '.join(f'{k} = {v!r}' for k, v in overrides.items())})"
    r = TomlReader(label, Path(base_dir))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: TOML syntax error: {err}") from err
    if overrides:
        _apply_overrides(r, data, overrides)
    r.table(data, "", allowed(""), required(""))

    case = r.table(data["case"], "case", allowed("case"), required("case"))
    name = r.string(case["name"], "case.name")
    if not _NAME.fullmatch(name):
        r.fail(
            "case.name",
            f"must be letters, digits, '_', '-' or '.' only (it names output files); got {name!r}",
        )
    description = r.string(case.get("description", ""), "case.description")
    geometry, d = read_geometry(r, case)
    T = r.positive(case["T"], "case.T")
    model, betas = read_model(r, data, T, d, geometry)
    mask = r.string(data["model"].get("mask", "none"), "model.mask", MASKS)  # a table: checked above
    slices = r.integer(data["model"].get("slices", 8), "model.slices", lo=1)
    # A schedule's T is its durations' sum: T to rounding (read_schedule).
    times = read_output_times(r, case["outputs"], T if model.T is None else model.T)
    initial = read_initial(r, data["initial"], geometry, d)
    particles = read_particles(r, data["particles"], geometry, initial)
    grid = read_grid(r, data["grid"], geometry, initial) if "grid" in data else None
    if grid is not None and mask == "causal":
        if grid.diffusion == "implicit" and model.noise > 0:
            r.fail("grid.diffusion", "'implicit' is not available on the causal grid (model.mask = "
                   "'causal'): its slices step the diffusion explicitly; remove it")  # fmt: skip
        for n in particles.tokens:
            if n % slices:
                r.fail("particles.tokens", f"must be multiples of model.slices = {slices} (the grid's "
                       f"slices of s hold equal masses, and so must the tokens'); got {n}")  # fmt: skip
    if grid is not None and particles.norm != "post":
        r.fail(
            "particles.norm",
            f"{particles.norm!r} has no grid here (the grid solves the 'post' flow on the sphere): "
            "remove the [grid] table or use norm = \"post\"",
        )
    if model.noise > 0 and "kinetic" not in data:
        # A kinetic case's noise acts on the velocities and its [particles] are second-order tokens:
        # the first-order noisy reference's constraints are not theirs (`run` checks them).
        check_noisy_particles(r, particles, times, model.switch_times(float(times[-1])))
    if not isinstance(deterministic(model), Schedule):
        # The Taylor features and the FFT sum exponential kernels; zonal kernels take dense or spectral.
        if particles.field_method == "taylor":
            r.fail("particles.field_method", "'taylor' sums attention's exponential kernels: 'auto', 'dense' "
                   "or 'spectral' for an interaction model")  # fmt: skip
        if grid is not None and grid.field_method in ("taylor", "fft"):
            r.fail("grid.field_method", f"{grid.field_method!r} sums attention's exponential kernels: "
                   "'auto', 'dense' or 'spectral' for an interaction model")  # fmt: skip
        if "sweep" in data:
            r.fail("sweep", "draws attention heads over beta: it needs model.type = 'attention'")
    clusters = read_clusters(r, data.get("clusters", {}))
    if "sweep" in data and geometry == "euclidean":
        r.fail("sweep", "runs tokens on a sphere: geometry 'circle' or 'sphere', not 'euclidean'")
    sweep = read_sweep(r, data["sweep"], data, T) if "sweep" in data else None
    transition = None
    if "transition" in data:
        transition = read_transition(r, data["transition"], geometry, particles, grid)
    kinetic = None
    if "kinetic" in data:
        kinetic = read_kinetic(r, data["kinetic"], geometry, None if grid is None else grid.resolutions)
    times.setflags(write=False)
    return Case(
        name=name,
        source=source,
        text=text,
        geometry=geometry,
        d=d,
        model=model,
        output_times=times,
        initial=initial,
        particles=particles,
        grid=grid,
        clusters=clusters,
        sweep=sweep,
        transition=transition,
        kinetic=kinetic,
        mask=mask,
        slices=slices if mask == "causal" else 1,
        description=description,
        betas=betas,
        overrides=tuple((overrides or {}).items()),
        file_settings=tuple(_flatten(data, "")),
    )


#: Keys that do not change a run (a resumed run may differ there).
_COSMETIC = ("case.description",)


def _flatten(value: Any, key: str) -> list[tuple[str, str]]:
    """(dotted key, JSON) pairs of a TOML value: tables by key, arrays of tables by index."""
    if isinstance(value, Mapping):
        return [p for k in sorted(value) for p in _flatten(value[k], f"{key}.{k}" if key else k)]
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return [p for i, v in enumerate(value) for p in _flatten(v, f"{key}[{i}]")]
    return [] if key in _COSMETIC else [(key, json.dumps(value, sort_keys=True, default=str))]


def case_settings(case: Case) -> dict[str, str]:
    """Everything a run of ``case`` depends on: dotted key -> JSON value.

    The case file with its overrides applied (:attr:`Case.file_settings`), then every field of
    the particle and grid specs as resolved now, defaults included (``particles.field_method``,
    ``grid.reconstruction``, ...: a default that changes between versions changes the run), and
    the output times. Run files store it; a resumed run must match (:func:`settings_difference`).
    """
    out = dict(case.file_settings)
    specs = {"particles": case.particles, "grid": case.grid, "clusters": case.clusters, "sweep": case.sweep}
    for name, spec in specs.items():
        if spec is not None:
            for field in dataclasses.fields(spec):
                out[f"{name}.{field.name}"] = json.dumps(getattr(spec, field.name), default=str)
    out["case.output_times"] = json.dumps(case.output_times.tolist())
    return out


#: Settings added after run files were written, and the value every run had before: a stored run
#: without the key ran with that value (the grid's field was the cell measure's).
_ADDED_SETTINGS = {
    "grid.field_measure": json.dumps("cells"),
    "grid.field_accuracy": json.dumps("rows"),
    "grid.diffusion": json.dumps("explicit"),
}


def settings_difference(stored: Mapping[str, str], current: Mapping[str, str]) -> str | None:
    """The first key (sorted) whose value differs, in words; None when the settings agree. A key
    of :data:`_ADDED_SETTINGS` missing from ``stored`` (a run file older than the key) had the
    value recorded there."""
    for key in sorted(set(stored) | set(current)):
        before = _ADDED_SETTINGS.get(key, "(unset)") if key in current else "(unset)"
        old, new = stored.get(key, before), current.get(key, "(unset)")
        if old != new:
            return f"{key} = {old} when run, {new} now"
    return None


def load_case(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> Case:
    """Read and validate the case file ``path`` (see :func:`parse_case`), or the shipped case of
    that bare name (:func:`find_case`), e.g. ``load_case("circle_clustering")``.

    Raises ``FileNotFoundError`` naming ``path`` when there is no such file.
    """
    path = find_case(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (TOML files are UTF-8): {err}") from err
    return parse_case(text, str(path), base_dir=path.parent, overrides=overrides)


def shipped_cases() -> list[Path]:
    """The case files of the repository (``cases/*.toml``), sorted by name."""
    return sorted(CASES_DIR.glob("*.toml"))


def find_case(path: str | os.PathLike) -> Path:
    """The case file ``path`` if it exists, else for a bare name (``NAME`` or ``NAME.toml``, no
    directory part) ``NAME.toml`` in the working directory, else the shipped case of that name
    (``cases/NAME.toml`` of the repository, or of the package in a non-editable install): so
    ``vlasov-tf run circle_clustering`` works from any directory, and a user's own file wins.

    Raises ``FileNotFoundError`` naming ``path`` (and, for a bare name, the shipped cases).
    """
    path = Path(path)
    if path.is_file():
        return path
    bare = path.parent == Path(".") and path.name not in ("", ".", "..")
    if bare and not path.exists():
        name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
        for found in (Path(name), CASES_DIR / name):  # a file of the user's own comes first
            if found.is_file():
                return found
        names = ", ".join(p.stem for p in shipped_cases())
        raise FileNotFoundError(
            f"case file {path} does not exist, nor is it a shipped case ({names}; `vlasov-tf cases`)"
        )
    raise FileNotFoundError(f"case file {path} does not exist" + (" (not a file)" if path.exists() else ""))


def case_summary(path: str | os.PathLike) -> tuple[str, str]:
    """(command, description) of a case file: the ``vlasov-tf`` command it is for (``interpolate``
    for an interpolation case, ``learn`` for a learning case, ``sweep``, ``transition`` or
    ``kinetic`` for a case with that table, else ``run``) and its
    ``[case] description`` ("" when it has none). A file that is not TOML gives ("", ""): a listing
    of cases (``vlasov-tf cases``) never fails."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        head = data.get("case", {})
        description = head.get("description", "")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        return "", ""
    # Interpolation cases (vlasov_tf.interpolation.cases) state an accuracy eps and no [particles].
    # Learning cases (vlasov_tf.learning.cases) have a [learning] table, which no other case has.
    command = "interpolate" if "eps" in head else "learn" if "learning" in data else "run"
    command = "sweep" if command == "run" and "sweep" in data else command
    command = "transition" if command == "run" and "transition" in data else command
    command = "kinetic" if command == "run" and "kinetic" in data else command
    return command, description if isinstance(description, str) else ""
