"""Lagrangian solver: N weighted tokens moved by a model's field; for attention, a deep Transformer.

The tokens solve ``dx_i/dt = X[mu_t](t, x_i)`` with ``mu_t = sum_j w_j delta_{x_j(t)}`` and ``X``
any :class:`~vlasov_tf.models.base.MeanField` (attention, an interaction kernel, a user's model).
Three integrators:

``"layers"``
    The Transformer itself: ``x <- normalise(x + h X[mu](t, x))``, one residual
    layer with layer normalisation per step (no normalisation in R^d). Order 1.
``"rk4"``
    Classical Runge-Kutta on the field extended off the sphere radially
    (``X(x) := X[mu o pi](pi(x))``, ``pi(x) = x / |x|``: every stage evaluates the
    field of the normalised stage tokens, where the spectral sums apply), then the
    normalisation (a projection that changes the step by O(h^5)). Order 4.
``"adaptive"``
    ``scipy.integrate.solve_ivp`` (DOP853) with tight tolerances on the same radially
    extended field: the reference.

The model's switch times (a :class:`~vlasov_tf.models.attention.Schedule`'s blocks) and the output
times are always step boundaries: ``[0, T]`` is cut at both, and the steps
are shared out among the pieces in proportion to their lengths (at least one
each), so the total is exactly ``steps`` whenever there are at least as many
steps as pieces; within a piece the steps are equal.

A few tokens, whose dense sums fit one tile (``field_method`` "auto" up to
:data:`~vlasov_tf.kernels.SMALL_PAIRS` = 16384 pairs, i.e. N <= 128, or "dense"; one rank;
every weight positive), skip the per-call dispatch of the sums
(:func:`~vlasov_tf.models.sums.tile_head_sums`), and "layers" runs them in a loop without per-layer
calls (:func:`_tile_layers`): the same bits as the general steps, ~30 us a layer of 64 tokens
(the plain numpy loop: ~36 us; ``scripts/bench_particles.py``).

Under MPI (``comm``) the tokens are split into contiguous blocks of global
indices, one per rank, and the field of a rank's tokens sums every block:
spectral coefficients summed over the ranks, or the dense ring
(:class:`vlasov_tf.parallel.RingSums`). ``"adaptive"`` keeps the (small, N x d)
state on every rank, because DOP853's step control needs the global error norm,
and computes the same bits everywhere: dense sums in fixed chunks of rows, each
rank its share, all-gathered; the other methods whole on every rank, on one
thread. Its steps are then the serial ones.

Design notes: docs/numerics.md §1 (the particle solver).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.integrate import solve_ivp

from vlasov_tf.geometry.measures import SPHERE_ATOL, check_points, check_weights, normalize
from vlasov_tf.kernels import METHODS as KERNEL_METHODS
from vlasov_tf.kernels import blas_single_thread, choose_method, exp_kernel_sums, few_pairs, kernel_sums
from vlasov_tf.kernels.dense import one_tile
from vlasov_tf.logs import Progress
from vlasov_tf.memory import BYTES_PER_TOKEN_DIM, check_memory
from vlasov_tf.models.base import MeanField, Model, as_model, run_times
from vlasov_tf.models.sums import Sums, causal_head_sums, tile_head_sums
from vlasov_tf.parallel import Comm, RingSums, block_range, gather_rows, is_root
from vlasov_tf.solvers.brownian import brownian_increments, noisy_layer
from vlasov_tf.solvers.time_loop import TimeLoop, Tracker

__all__ = [
    "FIELD_METHODS",
    "MAX_STEPS",
    "METHODS",
    "NORMS",
    "ParticleScheme",
    "ParticleSolution",
    "residual_velocity",
    "solve_particles",
    "step_pieces",
]

METHODS = ("layers", "rk4", "adaptive")
#: Layer-normalisation placements (``solve_particles(norm=...)``): after the residual update
#: (the sphere), before the sublayer, before and after it.
NORMS = ("post", "pre", "peri")
#: How the kernel sums may be computed for tokens (the FFT needs a uniform grid).
FIELD_METHODS = tuple(m for m in KERNEL_METHODS if m != "fft")
#: The most layers / RK4 steps :func:`solve_particles` takes: at the fastest measured (about 30 us
#: a layer of 64 tokens, README "Fast field") 1e9 layers take 8 hours; 1e12 would take a year, a
#: number typed by mistake that is refused at once rather than run silently for days.
MAX_STEPS = 10**9

# Rows per field evaluation of "adaptive" (see _solve_adaptive).
_ADAPTIVE_ROWS = 256


@dataclass(frozen=True)
class ParticleScheme:
    """How :func:`solve_particles` integrates, checked once: the method and the options it takes.

    Attributes
    ----------
    method : ``"layers"`` or ``"rk4"``, each with its number of ``steps`` on [0, T] (a positive
        integer); ``"adaptive"`` with its tolerances ``rtol``, ``atol`` (DOP853).
    norm : the layer-norm placement (:data:`NORMS`; ``"pre"`` and ``"peri"`` need ``sphere``).
    field_method : how the sums are computed (:data:`FIELD_METHODS`).
    sphere : tokens on S^{d-1} (True) or in R^d.
    """

    method: str = "layers"
    steps: int | None = None
    rtol: float = 1e-11
    atol: float = 1e-12
    norm: str = "post"
    field_method: str = "auto"
    sphere: bool = True

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown layer-norm placement {self.norm!r}; choose one of {NORMS}")
        if self.norm != "post" and not self.sphere:
            raise ValueError(f"norm {self.norm!r} normalises tokens onto the sphere: it needs sphere=True")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if self.field_method not in FIELD_METHODS:
            raise ValueError(
                f"unknown field method {self.field_method!r} for tokens; choose one of {FIELD_METHODS}"
            )
        if self.method == "adaptive":
            for name in ("rtol", "atol"):
                value = getattr(self, name)
                if not (np.isfinite(value) and 0 < value < 1):
                    raise ValueError(f"the adaptive reference's {name} must lie in (0, 1); got {value}")
        else:
            steps = self.steps
            if steps is None or isinstance(steps, bool) or int(steps) != steps or steps < 1:
                raise ValueError(
                    f"method {self.method!r} needs a positive integer number of steps; got {steps}"
                )
            if steps > MAX_STEPS:
                raise ValueError(
                    f"method {self.method!r}: steps = {steps:.3g} is more than MAX_STEPS = {MAX_STEPS:.0e} "
                    "(at ~30 us a layer of 64 tokens, 1e9 steps take 8 hours)"
                )
            object.__setattr__(self, "steps", int(steps))

    @property
    def on_sphere(self) -> bool:
        """Whether the tokens are kept on the sphere (post-LN on S^{d-1})."""
        return self.sphere and self.norm == "post"

    @classmethod
    def of(
        cls,
        scheme: ParticleScheme | None,
        method: str = "layers",
        steps: int | None = None,
        rtol: float = 1e-11,
        atol: float = 1e-12,
        norm: str = "post",
        field_method: str = "auto",
        sphere: bool = True,
    ) -> ParticleScheme:
        """``scheme``, or one of :func:`solve_particles`' keyword arguments; both at once is a
        ``ValueError`` (a keyword other than its default would be ignored)."""
        if scheme is None:
            return cls(method, steps, rtol, atol, norm, field_method, sphere)
        keywords = (method, steps, rtol, atol, norm, field_method, sphere)
        if keywords != ("layers", None, 1e-11, 1e-12, "post", "auto", True):
            raise ValueError("pass the scheme's options either as scheme= or as keywords, not both")
        return scheme


@dataclass(frozen=True)
class ParticleSolution:
    """Token positions at the output times.

    times : (n_out,); positions : (n_out, N, d); weights : (N,);
    steps : layers (or RK4 steps) taken; for ``"adaptive"``, field evaluations.
    Under MPI only rank 0 holds the positions (the other ranks get shape (n_out, 0, d)).
    """

    times: np.ndarray
    positions: np.ndarray
    weights: np.ndarray
    method: str
    steps: int
    sphere: bool

    @property
    def final(self) -> np.ndarray:
        """(N, d) positions at the last output time."""
        return self.positions[-1]


def step_pieces(
    model: MeanField, T: float, cuts: np.ndarray, steps: int
) -> list[tuple[float, float, int, MeanField]]:
    """Cut [0, T] at the ``cuts`` (the stops: switches and output times); ``(t0, t1, n_steps, field)``
    per piece, ``field`` the model's piece in force there.

    The ``steps`` are shared out in proportion to the pieces' lengths by largest
    remainders, at least one each: the total is exactly ``steps`` whenever
    ``steps`` >= the number of pieces, and uniform where the cuts allow.
    """
    share = np.diff(cuts) * steps / T
    counts = np.maximum(np.floor(share + 1e-9).astype(int), 1)
    spare = steps - counts.sum()
    if spare > 0:
        counts[np.argsort(-(share - counts), kind="stable")[:spare]] += 1
    return [
        (float(t0), float(t1), int(n), model.piece(0.5 * (t0 + t1)))
        for (t0, t1), n in zip(pairwise(cuts), counts, strict=True)
    ]


def residual_velocity(
    field: MeanField, t: float, z: np.ndarray, w: np.ndarray, norm: str, sums: Sums
) -> np.ndarray:
    """(N, d) velocity of the residual stream ``z`` (N, d) under a pre- or peri-LN layer norm.

    The sublayer reads the normalised tokens ``pi(z) = z / |z|`` (queries, keys and values) and
    its output is added unprojected: ``A(z_i) = sum_h W_h A_h[mu~](pi(z_i)) + W (U pi(z_i) + b)_+``
    with ``mu~ = sum_j w_j delta_{pi(z_j)}`` (the field in R^d at the normalised tokens);
    ``"pre"`` returns ``A``, ``"peri"`` ``A / |A|`` (the output normalised too).
    """
    y = normalize(z)
    v = field.evaluate(t, y, w, y, False, sums)
    return v if norm == "pre" else normalize(v)


def _layer_step(
    field: MeanField,
    t: float,
    x: np.ndarray,
    w: np.ndarray,
    h: float,
    sphere: bool,
    sums: Sums,
    norm: str = "post",
) -> np.ndarray:
    if norm != "post":
        return x + h * residual_velocity(field, t, x, w, norm, sums)
    x = x + h * field.evaluate(t, x, w, x, sphere, sums)
    return normalize(x) if sphere else x


def _rk4_step(
    field: MeanField,
    t: float,
    x: np.ndarray,
    w: np.ndarray,
    h: float,
    sphere: bool,
    sums: Sums,
    norm: str = "post",
) -> np.ndarray:
    def f(s: float, y: np.ndarray) -> np.ndarray:
        if norm != "post":
            return residual_velocity(field, s, y, w, norm, sums)
        if sphere:
            y = normalize(y)
        return field.evaluate(s, y, w, y, sphere, sums)

    k1 = f(t, x)
    k2 = f(t + 0.5 * h, x + 0.5 * h * k1)
    k3 = f(t + 0.5 * h, x + 0.5 * h * k2)
    k4 = f(t + h, x + h * k3)
    x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return normalize(x) if sphere and norm == "post" else x


_STEPPERS = {"layers": _layer_step, "rk4": _rk4_step}


def _few_tokens(field_method: str, x: np.ndarray, w: np.ndarray, comm: Comm | None) -> bool:
    """Whether the field is the dense sums of a few tokens in one tile (:func:`tile_head_sums`).

    What ``method_head_sums(field_method)`` computes for these tokens at every step: "auto" by
    its rule for :func:`~vlasov_tf.kernels.few_pairs`, "dense" by its sizes; one rank, every
    weight positive (zero weights are keys :func:`~vlasov_tf.kernels.exp_kernel_sums` drops).
    """
    n, d = x.shape
    return (
        comm is None
        and (field_method == "dense" or (field_method == "auto" and few_pairs(n, n)))
        and one_tile(n, n, d, d)
        and bool((w > 0).all())
    )


def _tile_layers(
    field: MeanField, t: float, x: np.ndarray, w: np.ndarray, h: float, n: int, sphere: bool, sums: Sums
) -> np.ndarray:
    """``n`` steps of :func:`_layer_step` from time ``t`` for a few tokens, ``sums`` of
    :func:`~vlasov_tf.models.sums.tile_head_sums`.

    The same arithmetic, so the same bits, as ``n`` calls of :func:`_layer_step` (the field, the
    normalisation), without its per-layer calls: the caller pins BLAS to one thread and ignores
    underflow for the piece.
    """
    for i in range(n):
        v = field.evaluate(t + i * h, x, w, x, sphere, sums)  # a new array: updated in place
        v *= h
        v += x  # x + h v, as in _layer_step
        x = normalize(v) if sphere else v
    return x


def solve_particles(
    model: MeanField | Model,
    points: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    T: float | None = None,
    method: str = "layers",
    steps: int | None = None,
    t_eval: np.ndarray | None = None,
    sphere: bool = True,
    rtol: float = 1e-11,
    atol: float = 1e-12,
    progress: bool = False,
    callback: Callable[[float, np.ndarray], None] | None = None,
    t0: float = 0.0,
    comm: Comm | None = None,
    field_method: str = "auto",
    norm: str = "post",
    causal_s: np.ndarray | None = None,
    trackers: Sequence[Tracker] = (),
    scheme: ParticleScheme | None = None,
    noise_seed: int | tuple[int, ...] = 0,
    noise_grid: int | None = None,
) -> ParticleSolution:
    """Move N weighted tokens by the flow of ``model`` up to ``T``.

    Parameters
    ----------
    model : the velocity field (:func:`~vlasov_tf.models.base.as_model`): an attention
        :class:`~vlasov_tf.models.attention.Schedule` (piecewise-constant parameters on [0, T]; its
        blocks' :class:`~vlasov_tf.models.attention.Params` too), an
        :class:`~vlasov_tf.models.interaction.Interaction`, any
        :class:`~vlasov_tf.models.base.MeanField` or a user's :class:`~vlasov_tf.models.base.Model`.
    points : (N, d) initial tokens (on S^{d-1} when ``sphere``).
    weights : (N,) non-negative, positive total; ``None`` means 1/N each.
    T : final time (default: the model's, a schedule's; required for other models).
    method : ``"layers"`` (deep Transformer), ``"rk4"`` or ``"adaptive"``.
    steps : number of layers / RK4 steps on [0, T] (required for those methods);
        taken exactly unless there are more pieces (switches and output times) than steps.
    t_eval : increasing output times in [0, T]; default ``[0, T]``.
    sphere : tokens on the sphere (True) or in R^d (False).
    rtol, atol : tolerances of ``"adaptive"``.
    progress : show a progress bar.
    callback : called as ``callback(t, positions)`` at every output time, as it
        is reached, so that a caller can store results before the run ends.
    t0 : resume: ``points`` are the tokens at time ``t0`` (a switch or an output
        time); the steps after ``t0`` are exactly those of a run from 0, and only
        the outputs at times >= ``t0`` are returned.
    comm : an mpi4py communicator: run on its ranks (every rank passes the same
        tokens; the callback and the positions are on rank 0; the result equals
        the serial one to round-off).
    field_method : how the kernel sums are evaluated, one of :data:`FIELD_METHODS`
        (:func:`vlasov_tf.kernels.kernel_sums`; "fft" needs a uniform grid): ``"auto"`` (the
        cheapest method within 1e-10 per row; spectral on S^1 and S^2 once N is large),
        ``"dense"``, ``"taylor"``, ``"spectral"``. ``"adaptive"`` asks its methods for ``rtol``
        per row instead of 1e-10, and runs the non-dense ones on one thread (their library
        transforms round differently with more threads, and under MPI every rank must compute
        the same bits): a serial DOP853 reference on 1e6 tokens uses one core.
    norm : where the layer normalisation sits (:data:`NORMS`), with its continuous-time limit:
        ``"post"`` (the default): ``x <- pi(x + h X[mu](x))``, the limit the Vlasov flow on the
        sphere ``dx/dt = P_x A[mu](x)`` (module docstring); ``"pre"``: ``z <- z + h A(z)``,
        ``"peri"``: ``z <- z + h A(z) / |A(z)|`` on the residual stream z in R^d, the sublayer
        reading ``pi(z)`` (:func:`residual_velocity`); their limits ``dz/dt = A(z)`` and
        ``dz/dt = A(z) / |A(z)|``: the directions ``pi(z_i)`` follow the attention on the sphere,
        each at its own speed (``1 / |z_i|``, resp. ``1 / (|z_i| |A|)``), while the norms grow.
        Every method integrates the placement's limit ("layers" is its explicit Euler scheme:
        first order). ``points`` may then lie off the sphere (not at 0); needs ``sphere``.
    causal_s : (N,) each token's position s (None: no mask): causal attention, token i attends
        to the tokens with ``s_j <= s_i``, itself included (:func:`~vlasov_tf.models.sums.causal_head_sums`;
        dense sums, serial). With V = I the first token attends to itself alone and never moves.
    trackers : told of every output on rank 0 (:class:`~vlasov_tf.solvers.time_loop.Tracker`:
        the positions, and 0 steps taken and rejected: the particle solver does not count them per
        output), after ``callback``.
    scheme : the method and its options as one checked :class:`ParticleScheme`, instead of the
        keywords ``method``, ``steps``, ``rtol``, ``atol``, ``norm``, ``field_method``, ``sphere``.
    noise_seed : the seed of the Brownian kicks of a noisy model (``model.noise > 0``:
        :mod:`vlasov_tf.solvers.brownian`; "layers" with ``norm="post"`` only, the Euler-Maruyama
        steps of the noisy Transformer). The same seed gives the same kicks on any number of
        ranks and on resume.
    noise_grid : couple the kicks to a finer run of ``noise_grid`` equal steps on [0, T] (the
        same seed): each step sums the Brownian increments of the fine steps it spans, so runs of
        different depths see one Brownian path (:func:`~vlasov_tf.solvers.brownian.brownian_increments`).
        The steps must be equal and their number must divide ``noise_grid``. None: each step
        its own kicks.
    """
    scheme = ParticleScheme.of(scheme, method, steps, rtol, atol, norm, field_method, sphere)
    method, norm, field_method, sphere = scheme.method, scheme.norm, scheme.field_method, scheme.sphere
    on_sphere = scheme.on_sphere
    model = as_model(model, np.shape(points)[-1])  # the points' d for a prescribed v(t, x)
    T, switches = run_times(model, T)
    x = check_points(points, name="initial tokens", dim=model.d, sphere=on_sphere, atol=SPHERE_ATOL)
    if norm != "post" and not (np.linalg.norm(x, axis=1) > 0).all():
        raise ValueError("initial tokens must be nonzero: a layer norm divides by |z|")
    w = check_weights(weights, len(x))
    noise = model.noise
    if noise > 0 and (method != "layers" or norm != "post"):
        raise ValueError(
            f"a noisy model (noise = {noise:g}) runs with method 'layers' and norm 'post' (Euler-Maruyama "
            f"steps); got method {method!r}, norm {norm!r}"
        )
    causal = None
    if causal_s is not None:
        s_tok = np.asarray(causal_s, dtype=np.float64)
        if s_tok.shape != (len(x),) or not np.isfinite(s_tok).all():
            raise ValueError(f"causal_s must be ({len(x)},) finite positions; got shape {s_tok.shape}")
        if comm is not None or field_method not in ("auto", "dense"):
            raise ValueError("causal attention sums densely, serially: field_method auto or dense, no MPI")
        causal = Sums(heads=causal_head_sums(s_tok, s_tok), causal=True)
    if on_sphere and t0 == 0.0:
        # Not on resume: re-normalising the solver's own state moves it by an ulp.
        x = normalize(x)
    loop = TimeLoop.start(T, switches, t_eval, t0, callback, trackers)
    need = x.size * (BYTES_PER_TOKEN_DIM + 8 * len(loop.times))  # the work, every snapshot kept
    check_memory(need, f"solve_particles: {len(x)} tokens, {len(loop.times)} output times")
    lo, hi = (0, len(x)) if comm is None else block_range(len(x), comm.size, comm.rank)
    progress = progress and is_root(comm)

    def emit(t: float, pos: np.ndarray) -> None:
        if comm is not None:
            # "adaptive" holds the whole state on every rank: rank 0 has it already.
            full = pos if method == "adaptive" else gather_rows(comm, pos)
            if comm.rank != 0 or full is None:
                return
            pos = full
        loop.store(t, pos.copy())

    def solution(steps: int) -> ParticleSolution:
        out = loop.snapshots
        pos = np.array(out) if out else np.empty((len(loop.times), 0, x.shape[1]))
        return ParticleSolution(loop.times, pos, w, method, steps, sphere)

    if method == "adaptive":
        ref = causal if causal is not None else _reference_sums(field_method, scheme.rtol, len(x), comm)
        n_eval = _solve_adaptive(
            model, switches, x, w, loop, sphere, scheme.rtol, scheme.atol, emit, progress, ref, norm
        )
        return solution(n_eval)

    assert scheme.steps is not None  # ParticleScheme: "layers" and "rk4" have their steps
    steps = scheme.steps
    step = _STEPPERS[method]
    x, w_local = x[lo:hi], w[lo:hi]
    # A few tokens (e.g. 64 for 10,000 layers): the dense sums without their per-call dispatch, and
    # for "layers" a loop without per-layer calls; the same bits as the general path.
    few = noise == 0 and norm == "post" and causal is None and _few_tokens(field_method, x, w_local, comm)
    if few:
        x = np.ascontiguousarray(x)  # the layout the dense sums would copy the keys to
        sums = Sums(heads=tile_head_sums(w_local))
    else:
        sums = causal or Sums.by_method(field_method, split=None if comm is None else RingSums(comm))
    every = step_pieces(model, T, loop.stops, int(steps))
    # The index of each piece's first step in the whole run: the noise's streams are keyed by it.
    firsts = np.cumsum([0] + [n for _, _, n, _ in every])
    pieces = [(p, int(k)) for p, k in zip(every, firsts, strict=False) if p[1] > t0 + loop.tol]
    substeps = 1 if noise == 0 else _substeps(every, T, noise_grid)
    total = sum(p[2] for p, _ in pieces)
    with Progress(total, desc=f"{method} (N={len(x)})", unit="step", bar=progress) as bar:
        for (start, end, n, field), first in pieces:
            for t_out in loop.due(start):
                emit(t_out, x)
            h = (end - start) / n
            # BLAS on one thread for the piece, as velocity_unchecked pins it for every field:
            # its own pins are then nested ones (~0.3 us, not ~10 us a layer).
            with blas_single_thread(), np.errstate(under="ignore") if few else nullcontext():
                if few and method == "layers":
                    x = _tile_layers(field, start, x, w_local, h, n, sphere, sums)
                    bar.update(n)
                elif noise > 0:
                    for i in range(n):
                        v = field.evaluate(start + i * h, x, w_local, x, sphere, sums)
                        xi = brownian_increments(noise_seed, first + i, lo, hi, x.shape[1], substeps)
                        x = noisy_layer(x, v, h, noise, xi, sphere)
                        bar.update()
                else:
                    for i in range(n):
                        x = step(field, start + i * h, x, w_local, h, sphere, sums, norm)
                        bar.update()
        for t_out in loop.rest():
            emit(t_out, x)
    return solution(total)


def _substeps(pieces: list[tuple[float, float, int, MeanField]], T: float, grid: int | None) -> int:
    """Fine steps of the noise's grid (``grid`` equal steps on [0, T]) per step of the run; 1 for
    None. ValueError unless the run's steps are equal and their number divides ``grid``."""
    if grid is None:
        return 1
    total = sum(n for _, _, n, _ in pieces)
    equal = all(abs((t1 - t0) / n - T / total) <= 1e-9 * T / total for t0, t1, n, _ in pieces)
    if isinstance(grid, bool) or int(grid) != grid or grid < 1 or grid % total or not equal:
        raise ValueError(
            f"noise_grid = {grid} must be a multiple of the number of steps ({total}), and the steps "
            f"equal (stops at multiples of T / {total}), to couple the kicks to the finer run"
        )
    return int(grid) // total


def _solve_adaptive(
    model: MeanField,
    bp: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    loop: TimeLoop,
    sphere: bool,
    rtol: float,
    atol: float,
    emit: Callable[[float, np.ndarray], None],
    progress: bool,
    sums: Sums,
    norm: str = "post",
) -> int:
    """DOP853 piece by piece (restarted at every switch ``bp``) from ``loop.t0``; returns the field
    evaluations. The field is the radially extended one (as for RK4), its sums by
    :func:`_reference_sums`.
    """
    shape = x.shape
    nfev = 0
    t0, tol = loop.t0, loop.tol
    for _ in loop.due(t0):
        emit(t0, x)
    # The bar follows the time DOP853 has reached (it moved once per block).
    with loop.time_bar(progress, "adaptive") as bar:
        for k in range(len(bp) - 1):
            start, t1 = max(bp[k], t0), bp[k + 1]
            if t1 <= t0 + tol:
                continue
            # Positions are continuous at a switch, so block k owns the outputs not yet taken up to
            # t1 (within the tolerance: one a rounding past the switch is the switch's).
            mine = np.array(list(loop.due(t1)))
            at, index = np.unique(np.minimum(mine, t1), return_inverse=True)

            piece = model.piece(0.5 * (bp[k] + t1))

            def rhs(t: float, u: np.ndarray, field: MeanField = piece) -> np.ndarray:
                if t > bar.n:
                    bar.update(t - bar.n)
                y = u.reshape(shape)
                if norm != "post":
                    return residual_velocity(field, t, y, w, norm, sums).ravel()
                if sphere:
                    y = normalize(y)
                return field.evaluate(t, y, w, y, sphere, sums).ravel()

            t_block = at if at.size and at[-1] == t1 else np.r_[at, t1]
            sol = solve_ivp(
                rhs, (start, t1), x.ravel(), method="DOP853", t_eval=t_block, rtol=rtol, atol=atol
            )
            if not sol.success:
                raise RuntimeError(f"solve_ivp failed on block {k} [{start}, {t1}]: {sol.message}")
            nfev += sol.nfev
            on_sphere = sphere and norm == "post"
            for j, t in zip(index, mine, strict=True):
                y = sol.y[:, j].reshape(shape)
                emit(float(t), normalize(y) if on_sphere else y)
            x = sol.y[:, -1].reshape(shape)
            if on_sphere:
                x = normalize(x)
            bar.update(t1 - bar.n)
    return nfev


def _reference_sums(field_method: str, tol: float, n: int, comm: Comm | None) -> Sums:
    """The adaptive reference's :class:`~vlasov_tf.models.sums.Sums`: the same bits on every rank.

    Dense sums (chosen or asked) run in fixed chunks of ``_ADAPTIVE_ROWS`` query rows; under
    MPI each rank takes a contiguous run of chunks and the rows are all-gathered. A chunk's
    rows come out of BLAS with the same bits whoever computes them (a GEMM's rounding can depend
    on how many rows it is given), and DOP853's step control would turn last-bit differences
    into differences at its tolerance. The other methods are cheap enough to run whole on every
    rank, with one thread (their library transforms' rounding depends on the thread count).
    Every row within ``tol`` (the reference's rtol) of the dense sums.
    """
    starts = range(0, n, _ADAPTIVE_ROWS)
    c_lo, c_hi = (0, len(starts)) if comm is None else block_range(len(starts), comm.size, comm.rank)
    chunks = [(a, a + _ADAPTIVE_ROWS) for a in starts[c_lo:c_hi]]

    def head_sums(
        B: np.ndarray, queries: np.ndarray, points: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        z = np.dot(queries, B.T)
        method = field_method
        if method == "auto":
            method = choose_method(z, points, weights, points.shape[1], tol)
        if method != "dense":
            return kernel_sums(z, points, weights, points, method=method, tol=tol, threads=1)
        parts = [exp_kernel_sums(z[a:b], points, weights, points) for a, b in chunks]
        shift = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        block = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, points.shape[1] + 1))
        if comm is not None:
            shift = np.concatenate(comm.allgather(shift))
            block = np.concatenate(comm.allgather(block))
        return shift, block

    # Other sums (zonal kernels, a user's model) whole on every rank, one thread.
    return Sums(heads=head_sums, method=field_method, tol=tol, threads=1)
