"""The one place that decides how a kernel sum is computed: method names, costs and the choice.

:func:`kernel_sums` is what the solvers, the MPI ring and the benchmarks call.
Every method returns the scaled sums ``S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] =
exp(shift_i) sums_i`` with every row within ``tol`` of the dense sum (relative to the
row's normaliser; dense: round-off):

=============  ==========================================================  =========================
method         applies to                                                  cost
=============  ==========================================================  =========================
``dense``      everything                                                  n m
``taylor``     any d, small ``rho = r_z r_y`` (beta of order 1)             (n + m) C(p + d, d)
``spectral``   keys on S^1 or S^2, any queries (zonal and general heads)   m + n K + nodes L^2 log L
``fft``        uniform circle grid, queries at a fixed offset (one rank)   M log M
=============  ==========================================================  =========================

``"auto"`` takes the cheapest that applies by the cost estimates below (all in the
units of :func:`~vlasov_tf.kernels.dense.dense_cost`). Under MPI (``split``) the choice is
made from global sizes and ranges, so every rank takes the same branch; there ``dense``
and ``taylor`` pass the keys round the ring and ``fft`` does not apply.

One rule comes first: at most :data:`SMALL_PAIRS` query-key pairs (``n m``, one rank) are
summed densely without looking at the points (:func:`few_pairs`). Looking costs 0.1-0.2 ms
(norms, ranges, the FFT's lattice test), more than the dense sums of a few tokens (~16 us for
64), and every other method has fixed costs of that order. :func:`choose_method` applies the
same rule, so the two always agree.

Zonal kernels (``phi(<x_i, y_j>)``, the interaction models) are chosen here too:
:func:`zonal_kernel_sums` sums ``S_i = sum_j w_j phi(<x_i, y_j>) [v_j, 1]`` by ``dense`` or
``spectral`` (:mod:`~vlasov_tf.kernels.zonal_sums`), ``"auto"`` by :func:`zonal_method_costs` after
the same :func:`few_pairs` rule; every entry within ``tol sup|phi| T_c`` of the dense sum.
"""

from __future__ import annotations

import math

import numpy as np

from ..profiling import section
from .cache import derived
from .circle import fft_sums, uniform_offset
from .dense import dense_cost, exp_kernel_sums
from .distributed import Distributed
from .row_tolerance import RowBudget, check_row_tol, per_row
from .spectral import GEOMETRIES, UNIT_RTOL, Scales, fixup_share, local_scales, spectral_cost, spectral_sums
from .taylor import taylor_cost, taylor_sums
from .zonal import SUP_LIMIT, ZonalKernel
from .zonal_sums import (
    allgather_keys,
    unit_deviation,
    zonal_dense_cost,
    zonal_dense_sums,
    zonal_spectral_cost,
    zonal_spectral_refusal,
    zonal_spectral_sums,
)

__all__ = [
    "METHODS",
    "SMALL_PAIRS",
    "ZONAL_METHODS",
    "choose_method",
    "choose_zonal_method",
    "few_pairs",
    "kernel_sums",
    "method_costs",
    "zonal_kernel_sums",
    "zonal_method_costs",
]

#: Method names, as the solvers' ``field_method`` and the case files take them.
METHODS = ("auto", "dense", "taylor", "spectral", "fft")
# Beyond this scale the FFT's absolute round-off sends so many rows to the dense fix-up that the
# other methods are as cheap.
_FFT_MAX_SCALE = 200.0
# Cost units per point and log2 of the two real FFTs (measured, ~1/3 of a spectral synthesis point).
_FFT_UNIT = 40.0
#: "auto" sums at most this many query-key pairs densely without looking at the points
#: (:func:`few_pairs`): 128 tokens attending to each other. Below the fused kernel's threshold
#: (``dense._FUSED_MIN_PAIRS``), so that the rule never compiles it (~0.8 s once per process). The
#: estimates have no fixed costs: on a 128-cell circle grid they would pick the FFT (~100 us a
#: call) over dense sums of ~30 us; a 256-cell grid (65536 pairs) is left to them.
SMALL_PAIRS = 1 << 14


def _facts(
    z: np.ndarray, y: np.ndarray, weights: np.ndarray, split: Distributed | None
) -> tuple[Scales, float]:
    """Global :class:`Scales` and the keys' largest ``| |y| - 1 |`` (one all-gather under MPI)."""
    local = local_scales(z, weights)
    keep = weights > 0
    off = derived(y, "unit deviation", lambda a: np.abs(np.linalg.norm(a, axis=1) - 1.0))
    dev = float(off[keep].max()) if keep.any() else 0.0
    if split is None:
        return local, dev
    rows = split.allgather(np.array([local.n, local.m, local.lo, local.hi, dev], dtype=float))
    n, m = int(rows[:, 0].sum()), int(rows[:, 1].sum())
    return Scales(float(rows[:, 2].min()), float(rows[:, 3].max()), n, m), float(rows[:, 4].max())


def _spectral_refusal(d: int, scales: Scales, dev: float) -> str | None:
    """Why the spectral sums do not apply, or None."""
    if d not in GEOMETRIES:
        return f"the spectral sums are for S^1 and S^2 (d = 2, 3), got d = {d}"
    if scales.n == 0 or scales.m == 0:
        return "no queries or no weighted keys"
    limit = UNIT_RTOL / max(scales.hi, 1.0)
    if dev > limit:
        return (
            f"the spectral sums need the keys on the unit sphere to {limit:.3g} (1e-12 / max(|z|, 1)); "
            f"they are off by up to {dev:.3g}"
        )
    return None


def method_costs(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    k: int,
    tol: float = 1e-10,
    *,
    split: Distributed | None = None,
    facts: tuple[Scales, float] | None = None,
    row_tol: np.ndarray | RowBudget | None = None,
) -> dict[str, float]:
    """Estimated cost of each method (inf where it does not apply), in dense-cost units.

    ``z`` (n, d) queries, ``y`` (m, d) keys, ``weights`` (m,), ``k`` value columns. Under
    ``split`` the estimates use the global sizes (a collective call, unless ``facts``, the
    global scales and key deviation, are given). ``row_tol``: as for :func:`kernel_sums`; the
    spectral fix-up counts each row against its own tolerance.
    """
    d = z.shape[1]
    scales, dev = _facts(z, y, weights, split) if facts is None else facts
    costs = {"dense": dense_cost(scales.n, scales.m, d, k)}
    if split is None:
        keys = y if scales.m == len(y) else y[weights > 0]  # no copy: keeps the cached bounds of fixed keys
        costs["taylor"] = taylor_cost(z, keys, tol, k=k)
    else:
        costs["taylor"] = math.inf
    refusal = _spectral_refusal(d, scales, dev)
    costs["spectral"] = math.inf if refusal else spectral_cost(GEOMETRIES[d], scales, k + 1, tol)
    if costs["spectral"] < costs["dense"]:
        # The fix-up: rows whose normaliser is too small for the expansion are summed over the keys
        # (pruned, counted here at the dense cost: the pruning saves 1-5x, by the mass's spread).
        share = fixup_share(z, y, weights, tol, split=split, row_tol=per_row(row_tol))
        costs["spectral"] += share * costs["dense"]
    fft = None if split is not None or d != 2 else uniform_offset(z, y, tol)
    fits = fft is not None and fft[0] <= _FFT_MAX_SCALE
    costs["fft"] = _FFT_UNIT * (k + 1) * len(y) * math.log2(max(len(y), 2)) if fits else math.inf
    return costs


def few_pairs(n: int, m: int) -> bool:
    """Whether "auto" sums n queries against m keys densely without looking at them.

    True when ``n m <= SMALL_PAIRS`` (up to 128 tokens attending to each other): an explicit
    rule, not a cost comparison, so that a layer of a few tokens does not pay the 0.1-0.2 ms of
    :func:`method_costs`. Zero-weight keys count. Not under MPI (there the sizes are global).
    """
    return n * m <= SMALL_PAIRS


def choose_method(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    k: int,
    tol: float = 1e-10,
    *,
    split: Distributed | None = None,
    facts: tuple[Scales, float] | None = None,
    row_tol: np.ndarray | RowBudget | None = None,
) -> str:
    """The cheapest method by :func:`method_costs` ("dense" on ties); "dense" for :func:`few_pairs`."""
    if split is None and few_pairs(len(z), len(y)):
        return "dense"
    costs = method_costs(z, y, weights, k, tol, split=split, facts=facts, row_tol=row_tol)
    return min(costs, key=costs.__getitem__)


def kernel_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    method: str = "auto",
    tol: float = 1e-10,
    threads: int | None = None,
    split: Distributed | None = None,
    row_tol: np.ndarray | RowBudget | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled kernel sums ``S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] = exp(shift_i) sums_i``.

    Parameters
    ----------
    z : (n, d) queries (``B x`` for a head with score matrix ``B``).
    y : (m, d) keys.
    weights : (m,) non-negative, positive total (over all ranks of ``split``).
    values : (m, k) values ``v_j``; None means k = 0 (the normaliser only).
    method : one of :data:`METHODS` (module docstring); a method that does not apply raises
        ``ValueError`` saying why.
    tol : every row within ``tol`` of the dense sum relative to its normaliser
        (dense: exact to round-off).
    threads : worker threads (default :func:`~vlasov_tf.kernels.threads.num_threads`).
    split : the measure is split across MPI ranks, ``(y, weights, values)`` being this rank's
        block (:class:`~vlasov_tf.kernels.distributed.Distributed`); every rank must call.
    row_tol : (n,) per-row tolerances ``>= tol`` (:mod:`~vlasov_tf.kernels.row_tolerance`): row
        ``i`` within ``row_tol[i]`` of its normaliser, so ``spectral`` and ``fft`` leave fewer rows
        to the fix-up; rows of ``inf`` they cannot serve within ``tol`` keep the expansion's value,
        clipped to the exact sums' bound (``|S_v| <= S_0 max|v_j|``, ``S_0 > 0``). "auto" counts
        the fix-up by these tolerances. None (the default): every row within ``tol``. Dense and
        Taylor sums serve every row within ``tol``. A
        :class:`~vlasov_tf.kernels.row_tolerance.RowBudget` (row weights and an error budget):
        ``spectral`` and ``fft`` allocate the tolerances from their error bounds, "auto" counts
        the fix-up by the budget's own per-row tolerances.

    Returns
    -------
    shift : (n,), sums : (n, k + 1); the last column is the normaliser.
    """
    if method not in METHODS:
        raise ValueError(f"unknown field method {method!r}; choose one of {METHODS}")
    k = 0 if values is None else values.shape[1]
    row_tol = check_row_tol(row_tol, len(z), tol)
    if method == "auto" and split is None and few_pairs(len(z), len(y)):
        method = "dense"  # choose_method's rule, without its look at the points
    facts = _facts(z, y, weights, split) if method in ("auto", "spectral") else None
    if method == "auto":
        method = choose_method(z, y, weights, k, tol, split=split, facts=facts, row_tol=row_tol)
    with section(f"sums.{method}"):
        return _run(method, z, y, weights, values, tol, threads, split, facts, row_tol)


def _run(method, z, y, weights, values, tol, threads, split, facts, row_tol) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kernel_sums` by a named method (``facts``: the global scales, where computed)."""
    if method == "spectral":
        scales, dev = facts
        refusal = _spectral_refusal(z.shape[1], scales, dev)
        if refusal is not None:
            if scales.n == 0 or scales.m == 0:  # nothing to sum: any method gives the empty answer
                return _dense(z, y, weights, values, threads, split)
            raise ValueError(f"field method 'spectral' does not apply: {refusal}")
        return spectral_sums(
            z, y, weights, values, tol=tol, threads=threads, split=split, scales=scales, row_tol=row_tol
        )
    if method == "fft":
        if split is not None:
            raise ValueError("field method 'fft' does not apply under MPI (the grid is split across ranks)")
        geometry = uniform_offset(z, y, tol)
        return fft_sums(z, y, weights, values, tol=tol, threads=threads, geometry=geometry, row_tol=row_tol)
    if method == "taylor" and split is None:
        return taylor_sums(z, y, weights, values, tol=tol, threads=threads)
    return _dense(z, y, weights, values, threads, split)


def _dense(z, y, weights, values, threads, split) -> tuple[np.ndarray, np.ndarray]:
    if split is not None:
        return split.dense(z, y, weights, values)
    return exp_kernel_sums(z, y, weights, values, threads=threads)


# -- zonal kernels ---------------------------------------------------------------------------------

#: Method names of :func:`zonal_kernel_sums`.
ZONAL_METHODS = ("auto", "dense", "spectral")


def _zonal_facts(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, split: Distributed | None
) -> tuple[int, int, float]:
    """Global ``(queries, weighted keys, largest | |p| - 1 |)`` (one all-gather under MPI)."""
    keep = weights > 0
    n, m = len(x), int(np.count_nonzero(keep))
    # A grid's flux points and centres are the same read-only arrays at every stage: once each.
    keys = y if m == len(y) else y[keep]
    dev = max(derived(p, "largest unit deviation", unit_deviation) for p in (x, keys))
    if split is None:
        return n, m, dev
    rows = split.allgather(np.array([n, m, dev], dtype=float))
    return int(rows[:, 0].sum()), int(rows[:, 1].sum()), float(rows[:, 2].max())


def _zonal_refusal(kernel: ZonalKernel, d: int, tol: float, facts: tuple[int, int, float]) -> str | None:
    n, m, dev = facts
    if n == 0 or m == 0:
        return "no queries or no weighted keys"
    return zonal_spectral_refusal(kernel, d, tol, dev)


def zonal_method_costs(
    kernel: ZonalKernel,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    k: int,
    tol: float = 1e-10,
    *,
    split: Distributed | None = None,
    facts: tuple[int, int, float] | None = None,
) -> dict[str, float]:
    """Estimated cost of each zonal method (inf where it does not apply), in dense-cost units.

    Dense: :func:`~vlasov_tf.kernels.zonal_sums.zonal_dense_cost`; spectral: the analysis and the
    synthesis at the kernel's degree (:func:`~vlasov_tf.kernels.zonal_sums.zonal_spectral_cost`),
    inf where :func:`~vlasov_tf.kernels.zonal_sums.zonal_spectral_refusal` objects (d not 2 or 3, a
    degree above the cap, round-off, points off the sphere). Under ``split`` the sizes are global (a
    collective call unless ``facts``, the global ``(n, m, deviation)``, are given).
    """
    d = x.shape[1]
    facts = _zonal_facts(x, y, weights, split) if facts is None else facts
    n, m, _ = facts
    costs = {"dense": zonal_dense_cost(n, m, d, k)}
    refusal = _zonal_refusal(kernel, d, tol, facts)
    costs["spectral"] = math.inf if refusal else zonal_spectral_cost(kernel, d, n, m, k + 1, tol)
    return costs


def choose_zonal_method(
    kernel: ZonalKernel,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    k: int,
    tol: float = 1e-10,
    *,
    split: Distributed | None = None,
    facts: tuple[int, int, float] | None = None,
) -> str:
    """The cheaper by :func:`zonal_method_costs` ("dense" on ties); "dense" for :func:`few_pairs`."""
    if split is None and few_pairs(len(x), len(y)):
        return "dense"
    costs = zonal_method_costs(kernel, x, y, weights, k, tol, split=split, facts=facts)
    return min(costs, key=costs.__getitem__)


def zonal_kernel_sums(
    kernel: ZonalKernel,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    method: str = "auto",
    tol: float = 1e-10,
    threads: int | None = None,
    split: Distributed | None = None,
) -> np.ndarray:
    """Zonal kernel sums ``S_i = sum_j w_j phi(<x_i, y_j>) [v_j, 1]``, (n, k + 1).

    Parameters
    ----------
    kernel : the zonal kernel ``phi`` (:mod:`~vlasov_tf.kernels.zonal`); ``sup |phi|`` at most
        ``SUP_LIMIT`` (``exp(beta t)`` with beta beyond ~690: use :func:`kernel_sums`).
    x : (n, d) queries on the unit sphere.
    y : (m, d) keys on the unit sphere.
    weights : (m,) non-negative (zeros are dropped).
    values : (m, k) values ``v_j``; None means k = 0 (the mass only).
    method : one of :data:`ZONAL_METHODS`: ``dense`` (O(n m), round-off), ``spectral`` (S^1 and S^2,
        any d for a constant kernel; ValueError saying why where it does not apply) or ``auto`` (the
        cheaper by the cost estimates; dense for :func:`few_pairs` and where the spectral sums refuse).
    tol : the contract: every entry within ``tol sup|phi| T_c`` of the dense sum, ``T_c = sum_j w_j
        |[v_j, 1]_c|`` (absolute, in the kernel's scale: an exp kernel's entries are within ``tol
        e^|beta| T_c``, not relative to the row's own mass as :func:`kernel_sums` is).
    threads : worker threads (default :func:`~vlasov_tf.kernels.threads.num_threads`); the dense sums
        do not depend on it.
    split : the measure is split across MPI ranks, ``(y, weights, values)`` being this rank's block
        and ``x`` this rank's queries; every rank must call. Spectral: one all-reduce of the
        coefficients; dense: the keys are all-gathered, not passed round the ring (``split.dense``
        sums exp kernels only; :mod:`~vlasov_tf.kernels.zonal_sums` says why).

    Returns
    -------
    (n, k + 1) sums; the last column is the kernel-weighted mass ``sum_j w_j phi(<x_i, y_j>)``.
    """
    if method not in ZONAL_METHODS:
        raise ValueError(f"unknown zonal method {method!r}; choose one of {ZONAL_METHODS}")
    sup = kernel.sup()
    if not sup <= SUP_LIMIT:
        raise ValueError(
            f"{kernel.name} kernel: sup |phi| = {sup:.3g} exceeds {SUP_LIMIT:.0e}: the sums would overflow; "
            "for exp(beta t) use kernel_sums with z = beta x"
        )
    k = 0 if values is None else values.shape[1]
    if method == "auto" and split is None and few_pairs(len(x), len(y)):
        method = "dense"
    facts = _zonal_facts(x, y, weights, split) if method in ("auto", "spectral") else None
    if method == "auto":
        method = choose_zonal_method(kernel, x, y, weights, k, tol, split=split, facts=facts)
    with section(f"zonal.{method}"):
        if method == "spectral":
            assert facts is not None  # computed above for "spectral"
            refusal = _zonal_refusal(kernel, x.shape[1], tol, facts)
            if refusal is None:
                return zonal_spectral_sums(
                    kernel, x, y, weights, values, tol=tol, threads=threads, split=split
                )
            if facts[0] and facts[1]:
                raise ValueError(f"zonal method 'spectral' does not apply: {refusal}")
        if split is not None:
            y, weights, values = allgather_keys(split, y, weights, values)
        return zonal_dense_sums(kernel, x, y, weights, values, threads=threads)
