"""Rows whose strict contract is waived ("loose" rows): the bound they are clipped to.

:func:`~vlasov_tf.kernels.kernel_sums` keeps every row within ``tol`` of its own normaliser. A
caller that needs some rows only roughly (the grid's flux points where no mass can flow,
``[grid] field_accuracy = "flux"``, docs/kernel_sums.md) passes them as ``loose`` (n,) booleans:
where a fast method's absolute error could spoil such a row beyond ``tol`` it is *not* summed
again over the keys (the fix-up); its approximate value is kept and clipped to what the exact
sums obey::

    S_0 > 0,    |S_v|_2 <= S_0 max_j |v_j|_2     (S_v = sum_j w_j e^{<z, y_j>} v_j: a mean of the v_j)

so that ``S_v / S_0`` (the attention average) stays within the values' bound. A row whose
normaliser came out ``<= 0`` or NaN gets ``S_v = 0`` and the positive normaliser ``floor`` (the
expansion's error bound: the exact normaliser lies in ``[0, floor]`` there). Rows that the method
serves within ``tol`` keep their bits, loose or not.
"""

from __future__ import annotations

import numpy as np

from .distributed import Distributed

__all__ = ["check_loose", "clip_loose", "value_bound"]


def check_loose(loose: np.ndarray | None, n: int) -> np.ndarray | None:
    """``loose`` as (n,) booleans (None stays None); ValueError naming a wrong shape."""
    if loose is None:
        return None
    out = np.asarray(loose, dtype=bool)
    if out.shape != (n,):
        raise ValueError(f"loose must be one boolean per query, shape ({n},); got {out.shape}")
    return out


def value_bound(weights: np.ndarray, values: np.ndarray | None, split: Distributed | None = None) -> float:
    """``max_j |v_j|_2`` over the keys of positive weight (every rank's under ``split``: one
    all-gather); 0 for no values."""
    if values is None or values.shape[1] == 0:
        return 0.0
    keep = weights > 0
    local = float(np.sqrt((values[keep] ** 2).sum(axis=1)).max(initial=0.0))
    return local if split is None else float(split.allgather(np.array([local])).max())


def clip_loose(sums: np.ndarray, rows: np.ndarray, vmax: float, floor: np.ndarray) -> None:
    """Clip ``sums[rows]`` (scaled, (n, k + 1), the normaliser last) in place to the exact sums'
    bound (module docstring). ``floor`` (len(rows),) > 0: the normaliser of rows whose own is not
    positive."""
    if rows.size == 0:
        return
    block = sums[rows]
    s0 = block[:, -1]
    dead = ~(s0 > 0) | ~np.isfinite(block).all(axis=1)
    block[dead, :-1] = 0.0
    block[dead, -1] = floor[dead]
    norm = np.sqrt((block[:, :-1] ** 2).sum(axis=1))
    cap = block[:, -1] * vmax
    over = norm > cap
    block[over, :-1] *= (cap[over] / norm[over])[:, None]
    sums[rows] = block
