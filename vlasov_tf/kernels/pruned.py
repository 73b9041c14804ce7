"""Dense sums that skip the keys that cannot matter: the spectral sums' fix-up, with per-block bounds.

The rows the spectral expansion cannot serve (tiny normalisers far from concentrated mass) are
summed over the keys; most keys then contribute nothing within ``tol``. Keys and rows are put in
blocks by direction (the cells of an equal-angle cube-sphere partition of S^2, arcs on S^1), each
block a cap: centre ``c``, angular radius ``theta``, total weight ``W``. For a row block (cap
``c_R, theta_R``, norms ``|z|`` in ``[r_lo, r_hi]``) and a key block at angle ``phi`` between the
centres, every pair has ``angle(z, y) >= psi = max(0, phi - theta_R - theta_K)``, so::

    sum_{j in K} w_j exp(<z, y_j>) <= W_K exp(U_RK),   U_RK = r cos(psi) |y|_max

(``r = r_hi`` where ``cos psi >= 0``, else ``r_lo``). Each row block is summed exactly over the
key blocks of largest bound first: ``P_i <= S_i``, and ``lb_R = min_i log P_i``. The blocks whose
bound is below ``eta tol exp(lb_R) / B`` (``B`` blocks, ``eta = _SHARE / max(1, max |v|)``) are
skipped, the others summed densely: every dropped block together adds at most ``eta tol S_i`` to
a column. So every row is within ``tol`` of the dense sum over all keys, relative to its
normaliser, and each row costs the keys of the blocks that can matter (at beta = 100 about a
fifth of them for clustered mass; at beta = 10 most).

Under MPI every rank sums all ranks' fix-up rows over its own block of keys (the bound's lower
bound is the rank's own partial sum, still below ``S_i``), and the ranks' sums are combined with
one all-gather of the shifts and one all-reduce of the scaled sums: rows replicated, keys split
(nothing else is sent, and each rank's key blocks are its own).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .dense import FAST_MATH, exp_kernel_sums, numba_available, numba_exp
from .distributed import Distributed
from .threads import thread_map

__all__ = ["cap_cells", "pruned_sums", "split_pruned_sums"]

#: Keys per block, about (the partition's resolution follows from it; 128 measured best of 64-1024).
_BLOCK_KEYS = 128
#: Rows summed together over the union of the blocks they keep (sorted by direction: neighbours).
_GROUP = 128
#: Rows per task of the thread pool.
_ROWS_PER_TASK = 16 * _GROUP
#: Fewest keys per block, about, when the query norms ask for small caps.
_MIN_BLOCK_KEYS = 16
#: Query norm per cell of a face edge (caps of radius ~ _SPAN / r).
_SPAN = 8.0
#: Share of ``tol`` the skipped blocks may take.
_SHARE = 0.01


def cap_cells(u: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Cell of each direction ``u`` (rows, d) in a partition with ``n`` cells per cube face edge (S^2)
    or ``4 n`` arcs (S^1), and the number of cells."""
    if u.shape[1] == 2:
        angle = np.arctan2(u[:, 1], u[:, 0]) % (2 * np.pi)
        return np.minimum((angle / (2 * np.pi) * 4 * n).astype(int), 4 * n - 1), 4 * n
    a = np.abs(u)
    face = np.argmax(a, axis=1)
    rows = np.arange(len(u))
    top = np.maximum(a[rows, face], 1e-300)
    side = face * 2 + (u[rows, face] < 0)
    # Equal-angle coordinates on a face give cells of about equal size.
    s = np.arctan(u[rows, (face + 1) % 3] / top) * (4 / np.pi)
    t = np.arctan(u[rows, (face + 2) % 3] / top) * (4 / np.pi)
    i = np.clip(((s + 1) * 0.5 * n).astype(int), 0, n - 1)
    j = np.clip(((t + 1) * 0.5 * n).astype(int), 0, n - 1)
    return (side * n + i) * n + j, 6 * n * n


def _blocks_side(d: int, blocks: float) -> float:
    """Cells per face edge (S^2) or per quarter circle (S^1) for about ``blocks`` cells."""
    return float(np.sqrt(blocks / 6.0)) if d == 3 else blocks / 4.0


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles between unit vectors (broadcast over leading axes), accurate for small angles."""
    return 2.0 * np.arcsin(np.minimum(np.linalg.norm(a - b, axis=-1) / 2.0, 1.0))


def _caps(u: np.ndarray, cell: np.ndarray, ncells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occupied cells (B,), their caps' centres (B, d) and angular radii (B,) for unit vectors ``u``."""
    cells, pos = np.unique(cell, return_inverse=True)
    centre = np.zeros((len(cells), u.shape[1]))
    np.add.at(centre, pos, u)
    centre /= np.maximum(np.linalg.norm(centre, axis=1), 1e-300)[:, None]
    radius = np.zeros(len(cells))
    np.maximum.at(radius, pos, _angle(u, centre[pos]))
    # Round-off in the angles: a cap is widened by 1e-12 so that it holds its points.
    return pos, centre, radius + 1e-12


def _unit(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(a, axis=1)
    u = np.zeros_like(a)
    u[:, -1] = 1.0
    pos = norm > 0
    u[pos] = a[pos] / norm[pos, None]
    return norm, u


def pruned_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
    stats: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled sums ``S_i = exp(shift_i) sums_i`` as :func:`~vlasov_tf.kernels.dense.exp_kernel_sums`,
    every row within ``tol`` of the dense sum relative to its normaliser, skipping key blocks whose
    bound cannot matter (module docstring). ``z`` (n, d), ``y`` (m, d), ``weights`` (m,) with a
    positive sum, ``values`` (m, k) or None. The dense sums where numba is missing. ``stats``, if
    given, gets the number of query-key pairs summed added to its ``"pairs"``."""
    n, d = z.shape
    k = 0 if values is None else values.shape[1]
    keep = weights > 0
    m = int(np.count_nonzero(keep))
    if n == 0 or m <= 2 * _BLOCK_KEYS or not numba_available():
        return exp_kernel_sums(z, y, weights, values, threads=threads)
    y, weights = y[keep], weights[keep]
    values = np.zeros((m, 0)) if values is None else values[keep]
    ynorm, yu = _unit(y)
    # About _BLOCK_KEYS keys a block, or smaller caps (down to _MIN_BLOCK_KEYS keys) where the norms
    # are large: the bounds' slack grows as exp(2 r theta) with the caps' radius theta.
    fine = min(float(np.linalg.norm(z, axis=1).max()) / _SPAN, _blocks_side(d, m / _MIN_BLOCK_KEYS))
    cell, ncells = cap_cells(yu, max(1, round(max(_blocks_side(d, m / _BLOCK_KEYS), fine))))
    pos, centre, radius = _caps(yu, cell, ncells)
    order = np.argsort(pos, kind="stable")
    starts = np.searchsorted(pos[order], np.arange(len(centre) + 1))
    log_w = np.log(np.bincount(pos, weights, minlength=len(centre)))
    vmax = max(1.0, float(np.abs(values).max(initial=0.0)))
    cut = float(np.log(_SHARE / vmax * tol / len(centre)))
    ys = np.ascontiguousarray(y[order])
    ws = np.ascontiguousarray(weights[order])
    vs = values[order] if k else None
    r, u = _unit(z)
    # Rows in the order of fine cells of their directions: a group's rows are neighbours.
    rows_order = np.argsort(cap_cells(u, max(1, round(_blocks_side(d, n / _GROUP))))[0], kind="stable")
    zo, r, u = z[rows_order], r[rows_order], u[rows_order]
    groups = range(0, n, _GROUP)
    kept = np.zeros((len(groups), len(centre)), dtype=np.bool_)
    kernel = _kernel()
    bounds = (float(ynorm.max()), float(ynorm.min()))
    cos_r, sin_r = np.cos(radius), np.sin(radius)

    def mark(lo: int) -> None:
        hi = min(n, lo + _ROWS_PER_TASK)
        kernel(zo[lo:hi], r[lo:hi], u[lo:hi], ys, ws, starts, centre, cos_r, sin_r, log_w, *bounds, cut,
               _GROUP, kept[lo // _GROUP : (hi + _GROUP - 1) // _GROUP])  # fmt: skip

    thread_map(mark, range(0, n, _ROWS_PER_TASK), threads)
    shift, sums = np.empty(n), np.empty((n, k + 1))
    block_keys = [np.arange(starts[b], starts[b + 1]) for b in range(len(centre))]
    pairs = 0
    for g, lo in enumerate(groups):
        rows = rows_order[lo : lo + _GROUP]
        keys = np.concatenate([block_keys[b] for b in np.flatnonzero(kept[g])])
        pairs += len(rows) * len(keys)
        shift[rows], sums[rows] = exp_kernel_sums(
            z[rows], ys[keys], ws[keys], None if vs is None else vs[keys], threads=threads
        )
    if stats is not None:
        stats["pairs"] = stats.get("pairs", 0) + pairs
    return shift, sums


@cache
def _kernel():
    """The compiled per-row kernel (numba, nogil: rows in parallel on the thread pool)."""
    import numba

    fexp = numba_exp()

    @numba.njit(nogil=True, fastmath=set(FAST_MATH))
    def rows(z, r, u, ys, w, starts, centre, cos_r, sin_r, log_w, ymax, ymin, cut, group, kept):
        n, d = z.shape
        nb = len(log_w)
        score = np.empty(nb)
        for i in range(n):
            g = i // group
            best, first = -np.inf, 0
            for b in range(nb):
                # cos(max(phi - theta, 0)) from cos(phi) = <u, c>, without trigonometry.
                cp = 0.0
                for t in range(d):
                    cp += u[i, t] * centre[b, t]
                if cp >= cos_r[b]:
                    cs = 1.0
                else:
                    cs = cp * cos_r[b] + np.sqrt(max(1.0 - cp * cp, 0.0)) * sin_r[b]
                score[b] = log_w[b] + r[i] * cs * (ymax if cs >= 0 else ymin)
                if score[b] > best:
                    best, first = score[b], b
            # The block of largest bound, summed exactly: a lower bound of the row's sum.
            top = -np.inf
            for j in range(starts[first], starts[first + 1]):
                s = 0.0
                for t in range(d):
                    s += z[i, t] * ys[j, t]
                top = max(top, s)
            low = 0.0
            for j in range(starts[first], starts[first + 1]):
                s = 0.0
                for t in range(d):
                    s += z[i, t] * ys[j, t]
                low += w[j] * fexp(s - top)
            keep = top + np.log(low) + cut
            kept[g, first] = True
            for b in range(nb):
                if score[b] >= keep:
                    kept[g, b] = True

    return rows


def split_pruned_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None,
    split: Distributed,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pruned_sums` of this rank's rows ``z`` over every rank's keys (a collective call): all
    ranks' rows are gathered, each rank sums them over its block of keys, the blocks' sums are
    combined (module docstring)."""
    n, d = z.shape
    k1 = 1 if values is None else values.shape[1] + 1
    counts = split.allgather(np.array([float(n)]))[:, 0].astype(int)
    width = int(counts.max(initial=0))
    if width == 0:
        return np.zeros(0), np.zeros((0, k1))
    padded = np.zeros((width, d))
    padded[:n] = z
    gathered = split.allgather(padded)
    rows = np.concatenate([block[:c] for block, c in zip(gathered, counts, strict=True)])
    if np.count_nonzero(weights > 0):
        shift, sums = pruned_sums(rows, y, weights, values, tol=tol, threads=threads)
    else:
        shift, sums = np.full(len(rows), -np.inf), np.zeros((len(rows), k1))
    top = split.allgather(shift).max(axis=0)
    with np.errstate(invalid="ignore"):
        scaled = np.where(np.isfinite(shift)[:, None], sums * np.exp(shift - top)[:, None], 0.0)
    scaled = split.allreduce(scaled)
    # This rank's rows: the first block equal to its own (the protocol does not name ranks; two
    # ranks with equal rows get equal sums, so either block serves).
    me = next(p for p in range(len(counts)) if counts[p] == n and np.array_equal(gathered[p], padded))
    start = int(counts[:me].sum())
    return top[start : start + n], scaled[start : start + n]
