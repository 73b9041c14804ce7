"""Per-row tolerances of the kernel sums, and the bound that rows asked for nothing are clipped to.

:func:`~vlasov_tf.kernels.kernel_sums` keeps every row within ``tol`` of its own normaliser. A
caller that needs some rows less accurately (the grid's flux points where little or no mass can
flow, ``[grid] field_accuracy = "flux"``, docs/kernel_sums.md) passes ``row_tol`` (n,), each
``>= tol``: row ``i`` is then within ``row_tol[i]`` of its normaliser, so a fast method's
expansion serves it where its error bound is below ``row_tol[i]`` (fewer rows go to the fix-up).
A row with ``row_tol = inf`` is asked for nothing but the bound: where the expansion cannot serve
it within ``tol`` it is *not* summed over the keys; its value is kept and clipped to what the exact
sums obey::

    S_0 > 0,    |S_v|_2 <= S_0 max_j |v_j|_2     (S_v = sum_j w_j e^{<z, y_j>} v_j: a mean of the v_j)

so that ``S_v / S_0`` (the attention average) stays within the values' bound. Such a row whose
normaliser came out ``<= 0`` or NaN gets ``S_v = 0`` and the positive normaliser ``floor`` (the
expansion's error bound: the exact normaliser lies in ``[0, floor]`` there). Rows the expansion
serves within ``tol`` keep their bits, whatever their tolerance.
"""

from __future__ import annotations

import numpy as np

from .distributed import Distributed

__all__ = ["check_row_tol", "clip_unbounded", "value_bound"]


def check_row_tol(row_tol: np.ndarray | None, n: int, tol: float) -> np.ndarray | None:
    """``row_tol`` as (n,) floats (None stays None); ValueError naming a wrong shape or a value
    below ``tol`` or NaN."""
    if row_tol is None:
        return None
    out = np.asarray(row_tol, dtype=float)
    if out.shape != (n,):
        raise ValueError(f"row_tol must be one tolerance per query, shape ({n},); got {out.shape}")
    if not (out >= tol).all():
        bad = int(np.flatnonzero(~(out >= tol))[0])
        raise ValueError(f"row_tol must be >= tol = {tol:g} (or inf) on every row; row {bad}: {out[bad]:.3g}")
    return out


def value_bound(weights: np.ndarray, values: np.ndarray | None, split: Distributed | None = None) -> float:
    """``max_j |v_j|_2`` over the keys of positive weight (every rank's under ``split``: one
    all-gather); 0 for no values."""
    local = 0.0
    if values is not None and values.shape[1]:
        local = float(np.sqrt((values[weights > 0] ** 2).sum(axis=1)).max(initial=0.0))
    return local if split is None else float(split.allgather(np.array([local])).max())


def clip_unbounded(sums: np.ndarray, rows: np.ndarray, vmax: float, floor: np.ndarray) -> None:
    """Clip ``sums[rows]`` (scaled, (n, k + 1), the normaliser last) in place to the exact sums'
    bound (module docstring). ``floor`` (len(rows),) > 0: the normaliser of rows whose own is not
    positive."""
    if rows.size == 0:
        return
    block = sums[rows]
    dead = ~(block[:, -1] > 0) | ~np.isfinite(block).all(axis=1)
    block[dead, :-1] = 0.0
    block[dead, -1] = floor[dead]
    norm = np.sqrt((block[:, :-1] ** 2).sum(axis=1))
    cap = block[:, -1] * vmax
    over = norm > cap
    block[over, :-1] *= (cap[over] / norm[over])[:, None]
    sums[rows] = block
