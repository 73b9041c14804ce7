"""Dense sums of exponential kernels: exact to round-off, O(n m).

For query vectors ``z_i`` and weighted keys ``(y_j, w_j)`` with values ``v_j``::

    S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1]          (shape (k + 1,))

(``z_i = B x_i`` for a head with score matrix ``B``). ``S_i`` overflows for
large ``|z_i||y_j|`` (beta = 1000 on the sphere gives exp(1000)), so it is
returned in scaled form ``S_i = exp(shift_i) * sums_i`` with ``sums_i[-1]``
of order one. The shift is an upper bound of ``max_j <z_i, y_j> + log w_j``:
the Cauchy-Schwarz bound ``|z_i| max_j |y_j| + max_j log w_j`` when it is
within ``_SAFE_GAP / 2`` of the true maximum (no term underflows), else the
exact row maximum from an extra sweep. Because the shift is fixed per row,
sums over separate key blocks simply add, which is what lets the keys be
streamed in blocks (bounded memory) and passed round a ring of MPI ranks
(:class:`vlasov_tf.parallel.RingSums`).

A few tokens, whose sums fit one tile (:func:`tile_sums`), take the exact row maximum of
the tile instead: the tile is computed anyway, and the bound's norms and augmented GEMM cost
more than the sums of 64 tokens. The two shifts give the same ``S_i`` up to round-off
(1e-16 relative), not the same bits.

Two engines: a fused numba kernel (score, exp and sums in registers over
L2-sized key chunks) and numpy tiles of at most 1 MiB (GEMM, in-place exp,
GEMM) for small problems or wide d, k. Query blocks run on the shared thread
pool of :mod:`vlasov_tf.kernels.threads` with BLAS pinned to one thread inside
each worker, so that the two levels of threading do not fight.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..profiling import section
from .threads import blas_single_thread, num_threads, thread_map

__all__ = [
    "EXP_MIN",
    "FAST_MATH",
    "causal_kernel_sums",
    "dense_cost",
    "exp_kernel_sums",
    "log_weights",
    "numba_available",
    "numba_exp",
    "one_tile",
    "tile_sums",
]

# 2 * 300: exp(-600) ~ 1e-261 is still a normal double, so with a shift at most
# 600 above the true row maximum the largest term never underflows.
_SAFE_GAP = 600.0
# Elements in one score tile of the numpy path (1 MiB of float64): the GEMM output, the in-place
# exp and the second GEMM then all stay in a core's 2 MiB L2 instead of streaming through L3.
_TILE = 1 << 17
# Below this many pairs, threads and BLAS pinning cost more than they save.
_THREAD_MIN_PAIRS = 1 << 18
# Keys per chunk of the fused (numba) path: the chunk's coordinates, log-weights and values
# ((d + k + 1) * 4096 * 8 bytes, ~230 KiB at d = k = 3) stay in L2 while every query of a
# block streams over them.
_KEY_CHUNK = 4096
# The fused path is generated for d, k up to this; beyond it the scores are a real GEMM and
# the numpy path is the better engine.
_FUSED_MAX_DIM = 8
# Below this many pairs the numpy path is used: it costs no compilation (the fused kernel of a
# new (d, k) takes ~0.5 s to compile once per process).
_FUSED_MIN_PAIRS = 1 << 16


def _row_max(za: np.ndarray, ya_t: np.ndarray) -> np.ndarray:
    """Exact ``max_j (<z_i, y_j> + log w_j)`` by key tiles; ``za = [z, 1]``, ``ya_t = [y, logw]^T``."""
    out = np.full(za.shape[0], -np.inf)
    bq = max(1, min(za.shape[0], _TILE // max(ya_t.shape[1], 1)))
    for i in range(0, za.shape[0], bq):
        for j in range(0, ya_t.shape[1], _TILE // bq):
            tile = za[i : i + bq] @ ya_t[:, j : j + _TILE // bq]
            np.maximum(out[i : i + bq], tile.max(axis=1), out=out[i : i + bq])
    return out


def exp_kernel_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    threads: int | None = None,
    engine: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled sums ``S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] = exp(shift_i) sums_i``.

    Parameters
    ----------
    z : (n, d) query vectors (``B x`` for a score matrix ``B``).
    y : (m, d) key positions.
    weights : (m,) non-negative key weights (zeros are dropped).
    values : (m, k) values ``v_j``; ``None`` means ``k = 0`` (only the normaliser).
    threads : worker threads; default :func:`num_threads`.
    engine : ``"fused"`` (one compiled pass per tile: scores, exp and sums in registers; needs
        numba and ``d, k <= 8``), ``"numpy"`` (GEMM, in-place exp, GEMM on L2-sized tiles), or
        ``"auto"``: fused where it applies and the problem is large enough to repay compiling.

    Returns
    -------
    shift : (n,) log-scale of each row.
    sums : (n, k + 1) scaled sums; the last column is the normaliser
        ``sum_j w_j exp(<z_i, y_j> - shift_i)``, which is ``>= exp(-_SAFE_GAP)``.

    Inputs are not validated here (the callers in :mod:`vlasov_tf.models.attention` do it);
    at least one weight must be positive. Every row is summed by one thread in a fixed key
    order, so the result does not depend on ``threads``.
    """
    if engine not in ("auto", "fused", "numpy"):
        raise ValueError(f"engine must be 'auto', 'fused' or 'numpy', got {engine!r}")
    keep = weights > 0
    kept = int(np.count_nonzero(keep))
    with section("dense", pairs=float(len(z)) * float(kept)):
        return _dense_sums(z, y, weights, values, threads, engine, keep, kept)


def causal_kernel_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None,
    s_queries: np.ndarray,
    s_keys: np.ndarray,
    *,
    rows: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The sums of :func:`exp_kernel_sums` over the keys at or before each query (causal
    attention): ``S_i = sum_{j: s_keys_j <= s_queries_i} w_j exp(<z_i, y_j>) [v_j, 1]``.

    Dense (the mask breaks the structure the fast methods use), ``rows`` queries at a time (an
    (rows, m) block of scores). ``ValueError`` if a query has no key at or before it.
    """
    n, k = len(z), 0 if values is None else values.shape[1]
    vals = weights[:, None] * (np.c_[values, np.ones(len(y))] if k else np.ones((len(y), 1)))
    shift, sums = np.empty(n), np.empty((n, k + 1))
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        scores = np.dot(z[lo:hi], y.T)
        scores[s_keys[None, :] > s_queries[lo:hi, None]] = -np.inf
        top = scores.max(axis=1)
        if not np.isfinite(top).all():
            raise ValueError("causal attention: a query has no key at or before its position s")
        scores -= top[:, None]
        shift[lo:hi] = top
        sums[lo:hi] = np.dot(np.exp(scores, out=scores), vals)
    return shift, sums


def _dense_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None,
    threads: int | None,
    engine: str,
    keep: np.ndarray,
    kept: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exp_kernel_sums` given ``keep = weights > 0`` and its count ``kept``."""
    if kept < len(keep):
        y, w = y[keep], weights[keep]
        vals = None if values is None else values[keep]
    else:
        # Every key kept: no copies (C order, as the copies would be: the same GEMMs, the same bits).
        y, w = np.ascontiguousarray(y), weights
        vals = None if values is None else np.ascontiguousarray(values)
    n, m = z.shape[0], y.shape[0]
    k = 0 if vals is None else vals.shape[1]
    fused = _fused(n, m, z.shape[1], k, engine)
    if not fused and _fits_one_tile(n, m):
        with np.errstate(under="ignore"):  # underflowed terms are negligible by construction
            return tile_sums(z, y, log_weights(w), vals)
    logw = np.log(w)
    shift = _shift(z, y, logw)

    small = n * m < _THREAD_MIN_PAIRS
    # One thread below _THREAD_MIN_PAIRS whatever was asked (see the dispatch at the end).
    nthreads = 1 if small else num_threads() if threads is None else threads
    if fused:
        if max(z.shape[1], k) > _FUSED_MAX_DIM:
            raise ValueError(f"the fused engine takes d, k <= {_FUSED_MAX_DIM}; got d={z.shape[1]}, k={k}")
        kernel = _fused_kernel(z.shape[1], k)
        sums = np.zeros((n, k + 1))
        zc = np.ascontiguousarray(z, dtype=float)
        yt = np.ascontiguousarray(y.T, dtype=float)
        vt = np.ascontiguousarray(np.zeros((0, m)) if vals is None else vals.T, dtype=float)
        # ~4 blocks per thread balance the load when another process takes part of a core (the
        # rows are independent: the blocks do not change the result).
        bq = max(16, -(-n // (4 * nthreads)))

        def work(i: int) -> None:
            kernel(zc[i : i + bq], shift[i : i + bq], yt, logw, vt, sums[i : i + bq], _KEY_CHUNK)

    else:
        # The shift enters the GEMM as an extra coordinate: tile = <z,y> + logw - shift; the
        # normaliser is a row sum of the tile (no column of ones appended to the values).
        # np.concatenate lays za out as np.c_ did (C order, Fortran order for Fortran-like z), without
        # np.c_'s ~5 us of parsing: the GEMM's rounding may depend on the layout.
        za = np.concatenate((z, np.ones((n, 1)), -shift[:, None]), axis=1)
        ya_t = np.empty((z.shape[1] + 2, m))
        ya_t[:-2] = y.T
        ya_t[-2] = logw
        ya_t[-1] = 1.0
        sums = np.zeros((n, k + 1))
        bq, bk = _tile_shape(m)

        def work(i: int) -> None:
            tile_buf = np.empty((bq, min(bk, m)))
            with np.errstate(under="ignore"):  # underflowed terms are negligible by construction
                for j in range(0, m, bk):
                    tile = tile_buf[: min(bq, n - i), : min(bk, m - j)]
                    np.matmul(za[i : i + bq], ya_t[:, j : j + bk], out=tile)
                    np.exp(tile, out=tile)
                    if k and vals is not None:  # k > 0: values given
                        sums[i : i + bq, :k] += tile @ vals[j : j + bk]
                    sums[i : i + bq, k] += tile.sum(axis=1)

    starts = range(0, n, bq)
    if nthreads == 1 or small or n <= bq:
        if fused or small:
            for i in starts:
                work(i)
        else:
            with blas_single_thread():  # OpenBLAS threads only spin on these skinny products
                for i in starts:
                    work(i)
    else:
        thread_map(work, starts, nthreads)
    return shift, sums


def _tile_shape(m: int) -> tuple[int, int]:
    """(query rows, keys) of the numpy path's tiles for m keys."""
    bq = min(max(_TILE // max(m, 1), 16), 256)
    return bq, max(1, _TILE // bq)


def _fits_one_tile(n: int, m: int) -> bool:
    bq, bk = _tile_shape(m)
    return n <= bq and m <= bk


def _fused(n: int, m: int, d: int, k: int, engine: str) -> bool:
    """Whether :func:`exp_kernel_sums` takes the fused engine."""
    return engine == "fused" or (
        engine == "auto" and n * m >= _FUSED_MIN_PAIRS and max(d, k) <= _FUSED_MAX_DIM and numba_available()
    )


def one_tile(n: int, m: int, d: int, k: int, engine: str = "auto") -> bool:
    """Whether :func:`exp_kernel_sums` sums n queries against m positive-weight keys in R^d with k
    values by :func:`tile_sums` (numpy path, one tile: up to ~256 x 512 pairs, fewer than the
    fused engine's threshold of 65536 with numba and d, k <= 8)."""
    return not _fused(n, m, d, k, engine) and _fits_one_tile(n, m)


def log_weights(w: np.ndarray) -> np.ndarray | float:
    """``log w`` (positive weights) for :func:`tile_sums`: one float when all are equal, else (m,)."""
    logw = np.log(w)
    return float(logw[0]) if len(logw) and (logw == logw[0]).all() else logw


def tile_sums(
    z: np.ndarray, y: np.ndarray, logw: np.ndarray | float, values: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The scaled sums of :func:`exp_kernel_sums` in one tile, the shift the exact row maximum.

    ``z`` (n, d) queries, ``y`` (m, d) keys (C order, as :func:`exp_kernel_sums` passes them),
    ``logw`` their log-weights from :func:`log_weights` (all positive; one float when all are
    equal), ``values`` (m, k) or None. For a few tokens (:func:`one_tile`); the caller holds
    ``np.errstate(under="ignore")``: terms below ``e^-708`` of a row's largest underflow to 0.

    The transposed tile ``T_ji = <y_j, z_i> + log w_j`` (m, n): ``shift_i = max_j T_ji`` (a
    reduction down the columns, numpy's fast direction), ``exp(T - shift)`` in place, then
    ``sums = exp(T - shift)^T [v, 1]``, one GEMM. The normaliser is ``>= 1`` (the largest
    term is ``e^0``). Equal weights are left out of the tile and added to the shift, which
    changes the sums by round-off only (1e-16 relative): ``log w`` cancels in ``T - shift``.
    """
    # np.dot of C-order operands: ~1 us less than matmul with a transposed view at 64 x 64.
    tile = np.dot(y, np.ascontiguousarray(z.T))
    if not isinstance(logw, float):
        tile += logw[:, None]
    shift = tile.max(axis=0)
    tile -= shift
    np.exp(tile, out=tile)
    m, k = y.shape[0], 0 if values is None else values.shape[1]
    vals = np.empty((m, k + 1))
    if k:
        vals[:, :k] = values
    vals[:, k] = 1.0
    sums = np.dot(tile.T, vals)
    if isinstance(logw, float):
        shift += logw
    return shift, sums


def _shift(z: np.ndarray, y: np.ndarray, logw: np.ndarray) -> np.ndarray:
    """Row shifts: the Cauchy-Schwarz bound, replaced by the exact max on rows where it is loose."""
    # np.linalg.norm(., axis=1)'s arithmetic without its argument handling; the largest norm is the
    # root of the largest square (the root is correctly rounded, hence monotone).
    znorm = np.sqrt(np.add.reduce(z * z, axis=1))
    radius = np.sqrt(np.add.reduce(y * y, axis=1).max())
    shift = znorm * radius + logw.max()
    # The best-weighted key alone reaches shift - 2 |z| R, so the bound is safe
    # whenever 2 |z| R <= _SAFE_GAP. (2 |z| R is monotone in |z|: the largest row decides, unless
    # something is NaN.)
    if len(znorm) and not 2.0 * znorm.max() * radius <= _SAFE_GAP:
        loose = 2.0 * znorm * radius > _SAFE_GAP
        if loose.any():
            shift[loose] = _row_max(np.c_[z[loose], np.ones(loose.sum())], np.r_[y.T, logw[None]])
    return shift


@cache
def numba_available() -> bool:
    """Whether numba imports (the fused engine needs it; the numpy engine does not)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


# The fused kernel for (d, k), generated as source so that the d score terms and k + 1 sums are
# unrolled scalars: LLVM then vectorises the key loop with everything in registers, one pass over
# the keys instead of three over a tile in memory.
_FUSED_TEMPLATE = """
def row(sh, {zs}, lw, {ys}{vs_arg}):
    {acc_init}
    for j in range(lw.shape[0]):
        e = fexp(lw[j] - sh{score})
{acc_update}
    return ({acc_ret},)


def block(z, shift, yt, lw, vt, out, chunk):
    m = yt.shape[1]
    for j0 in range(0, m, chunk):
        j1 = min(j0 + chunk, m)
{slices}
        for i in range(z.shape[0]):
            r = row(shift[i], {zi}, lw[j0:j1], {ycs}{vcs_arg})
{out_update}
"""


@cache
def _fused_kernel(d: int, k: int):
    """Compiled ``block(z, shift, yt, lw, vt, out, chunk)``: adds the tile sums of a query block.

    ``z`` (b, d), ``shift`` (b,), ``yt`` (d, m), ``lw`` (m,) log-weights, ``vt`` (k, m),
    ``out`` (b, k + 1) accumulated in place; keys in chunks of ``chunk``.
    """
    import numba

    fexp = numba_exp()
    src = _FUSED_TEMPLATE.format(
        zs=", ".join(f"z{c}" for c in range(d)),
        ys=", ".join(f"y{c}" for c in range(d)),
        vs_arg="".join(f", v{c}" for c in range(k)),
        acc_init="; ".join(f"a{c} = 0.0" for c in range(k + 1)),
        score="".join(f" + z{c} * y{c}[j]" for c in range(d)),
        acc_update="\n".join([f"        a{c} += e * v{c}[j]" for c in range(k)] + [f"        a{k} += e"]),
        acc_ret=", ".join(f"a{c}" for c in range(k + 1)),
        slices="\n".join(
            [f"        y{c} = yt[{c}, j0:j1]" for c in range(d)]
            + [f"        v{c} = vt[{c}, j0:j1]" for c in range(k)]
        ),
        zi=", ".join(f"z[i, {c}]" for c in range(d)),
        ycs=", ".join(f"y{c}" for c in range(d)),
        vcs_arg="".join(f", v{c}" for c in range(k)),
        out_update="\n".join(f"            out[i, {c}] += r[{c}]" for c in range(k + 1)),
    )
    namespace: dict = {"fexp": fexp}
    exec(compile(src, f"<vlasov_tf fused kernel d={d} k={k}>", "exec"), namespace)
    # reassoc (on the row only) lets LLVM vectorise the sums; the exp keeps its own strict flags.
    row = numba.njit(fastmath=set(FAST_MATH) | {"reassoc"}, nogil=True)(namespace["row"])
    namespace["row"] = row
    return numba.njit(nogil=True)(namespace["block"])


# Fast-math flags of the exp: no "reassoc", which would merge the two-constant (Cody-Waite)
# reduction x - n ln2_hi - n ln2_lo into x - n ln2 and lose ~10 bits at |x| ~ 700.
FAST_MATH = frozenset({"contract", "nnan", "ninf", "nsz", "arcp", "afn"})
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490  # 32 significant bits: n * _LN2_HI is exact for |n| < 2^21
_LN2_LO = 1.90821492927058770002e-10
# exp underflows to 0 below this (e^-708 ~ 3e-308 is the last normal power of e); a term so small
# is below 1e-40 of any row's normaliser (>= e^-600).
EXP_MIN = -708.0


@cache
def numba_exp():
    """A vectorisable ``exp`` for the fused kernels, within 2 ulp on [-708, 709].

    ``exp(x) = 2^n p(r)``, ``n = round(x / ln 2)``, ``r = x - n ln 2`` in [-ln2/2, ln2/2] (two-part
    constant, so r is exact to ~1e-20); ``p`` is the degree-12 Taylor polynomial, whose
    remainder ``|r|^13 / 13! <= 1.7e-16``; ``2^n`` is built from the exponent bits. numpy's exp
    is ~2x slower here, as it must handle every input (and keeps a call per array).
    """
    import numba
    from llvmlite import ir
    from numba.extending import intrinsic

    @intrinsic
    def _i64_as_f64(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return numba.types.float64(numba.types.int64), codegen

    @numba.njit(fastmath=set(FAST_MATH))
    def fexp(x: float) -> float:
        xc = max(x, EXP_MIN)
        nf = np.floor(xc * _LOG2E + 0.5)
        r = xc - nf * _LN2_HI
        r = r - nf * _LN2_LO
        p = 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        # numba's @intrinsic takes typingctx at typing time only; jitted calls pass x alone.
        e = p * _i64_as_f64((np.int64(nf) + 1023) << 52)  # type: ignore[call-arg]
        return e if x >= EXP_MIN else 0.0

    return fexp


# Flop-equivalents of one exp in the dense sums: the fused kernel does a pair (exp, d + k + 1
# FMAs) in ~0.55 ns per core, where a core does ~50 GFLOP/s of GEMM, i.e. ~27 flops for d = k = 3.
_EXP_FLOPS = 15.0


def dense_cost(n: int, m: int, d: int, k: int) -> float:
    """Estimated flop-equivalents of the dense sums: ``n m (exp + 2 (d + k + 2))``."""
    return float(n) * m * (_EXP_FLOPS + 2.0 * (d + k + 2))
