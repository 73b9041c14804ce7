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

A caller that needs only a weighted sum of the rows' errors (the grid's flux bound) passes a
:class:`RowBudget` instead: weights ``c_i >= 0`` and a budget ``E >= 0``, and the promise::

    sum_i c_i tau_i <= tol sum_i c_i + E,     tau_i = min(err_i / S_0i, 1/2) where served, else tol

(``err_i`` the expansion's error bound, ``S_0i`` its normaliser; a row of ``err_i / S_0i >= 1/2``
or of no positive normaliser counts ``1/2``: clipped as above, its average within the values'
bound). :meth:`RowBudget.allocate` serves from the expansion the rows of least extra cost
``x_i = c_i (min(err_i / S_0i, 1/2) - tol)`` until ``E`` is spent (fewest rows left to the fix-up
for the budget), and hands back per-row tolerances: ``tol`` (the fix-up's) or ``inf`` (served,
clipped). The cut-off is one histogram of ``x`` on fixed edges ``2^{e - k/16}`` (``2^e >= E``),
each bin counted at its upper edge, its counts summed over the MPI ranks: every rank draws the
serial run's cut-off from the same counts. A row that several ranks hold (the grid's flux points
on faces next to a halo) is counted by one of them only (``RowBudget.counted``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distributed import Distributed

__all__ = ["CAP", "RowBudget", "check_row_tol", "clip_unbounded", "per_row", "rows_to_fix", "value_bound"]

#: The tolerance a clipped row counts for in a budget (its average within the values' bound).
CAP = 0.5
#: Histogram bins per octave and octaves below the budget (smaller extra costs share the last bin).
BINS_PER_OCTAVE, OCTAVES = 16, 64


@dataclass(frozen=True)
class RowBudget:
    """Row weights and an error budget in place of fixed per-row tolerances (module docstring).

    ``weights`` (n,) ``c_i >= 0``; ``budget`` ``E >= 0``; ``row_tol`` (n,) per-row tolerances
    ``>= tol`` that fit the same budget, for the cost model's estimate of the fix-up (where
    ``kernel_sums`` takes per-row tolerances as they are); ``counted`` (n,) bool: the rows this
    rank adds to the histogram (None: all), so that a row held by several MPI ranks is counted
    once over the ranks, as in the serial run (every holder still decides it by the same cut-off).
    """

    weights: np.ndarray
    budget: float
    row_tol: np.ndarray
    counted: np.ndarray | None = None

    def allocate(
        self, norm: np.ndarray, err: np.ndarray | float, tol: float, split: Distributed | None = None
    ) -> np.ndarray:
        """(n,) tolerances, ``tol`` (left to the fix-up where the expansion misses it) or ``inf``
        (served however far, clipped), for the expansion's normalisers ``norm`` (n,) and error
        bounds ``err`` (n,) (scalar: every row's). Under ``split`` one all-reduce (a collective
        call): every rank's cut-off is the one the serial run draws from the same rows."""
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(norm > 0, err / norm, np.inf)
        need = np.minimum(np.nan_to_num(need, nan=np.inf), CAP)  # NaN or no normaliser: clipped
        extra = self.weights * (need - tol)
        cheap = ~(extra > 0)  # within tol, or no weight: served (clipped) at no cost
        out = np.full(len(need), np.inf)
        if self.budget <= 0:
            out[~cheap] = tol
            return out
        top = float(2.0 ** np.ceil(np.log2(self.budget)))
        n_bins = BINS_PER_OCTAVE * OCTAVES + 1
        with np.errstate(divide="ignore"):
            k = np.ceil(-BINS_PER_OCTAVE * np.log2(extra[~cheap] / top))
        k = np.clip(np.nan_to_num(k, nan=-1.0), -1, n_bins - 1).astype(int)  # -1: over the budget alone
        edges = top * 2.0 ** (-np.arange(n_bins) / BINS_PER_OCTAVE)
        k[(k >= 0) & (extra[~cheap] > edges[np.maximum(k, 0)])] -= 1  # the logarithm's round-off
        mine = k if self.counted is None else k[np.asarray(self.counted, dtype=bool)[~cheap]]
        counts = np.bincount(mine + 1, minlength=n_bins + 1).astype(float)
        if split is not None:
            counts = split.allreduce(counts)
        # Bins from the cheapest (the last) up: the first bin k* whose running cost fits.
        spent = np.cumsum((counts[1:] * edges)[::-1])[::-1]
        fits = np.flatnonzero(spent <= self.budget)
        first = int(fits[0]) if fits.size else n_bins
        out[np.flatnonzero(~cheap)[k < first]] = tol
        return out


def per_row(row_tol: np.ndarray | RowBudget | None) -> np.ndarray | None:
    """Per-row tolerances of ``row_tol`` (a budget's own ``row_tol``)."""
    return row_tol.row_tol if isinstance(row_tol, RowBudget) else row_tol


def check_row_tol(
    row_tol: np.ndarray | RowBudget | None, n: int, tol: float
) -> np.ndarray | RowBudget | None:
    """``row_tol`` as (n,) floats (None stays None, a :class:`RowBudget` is checked and kept);
    ValueError naming a wrong shape or a value below ``tol`` or NaN."""
    if row_tol is None:
        return None
    if isinstance(row_tol, RowBudget):
        c = np.asarray(row_tol.weights, dtype=float)
        if c.shape != (n,) or not (c >= 0).all() or not row_tol.budget >= 0:
            raise ValueError(f"a row budget needs ({n},) weights >= 0 and a budget >= 0")
        if row_tol.counted is not None and np.shape(row_tol.counted) != (n,):
            raise ValueError(f"a row budget's counted rows must be ({n},) booleans")
        check_row_tol(row_tol.row_tol, n, tol)
        return row_tol
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


def rows_to_fix(
    sums: np.ndarray,
    err: np.ndarray | float,
    tol: float,
    row_tol: np.ndarray | RowBudget,
    vmax: float,
    split: Distributed | None = None,
) -> np.ndarray:
    """(n,) bool: the rows a fast expansion leaves to the fix-up under ``row_tol``, for its scaled
    ``sums`` (n, k + 1), normaliser last, and error bounds ``err`` (n,) (scalar: every row's).

    A :class:`RowBudget` is allocated here (under ``split`` one all-reduce). A row is served where
    its error bound is within its tolerance; the rows of ``inf`` tolerance it cannot serve within
    ``tol`` are clipped in place to the exact sums' bound (``vmax``: :func:`value_bound`) instead of
    being fixed up.
    """
    if isinstance(row_tol, RowBudget):
        row_tol = row_tol.allocate(sums[:, -1], err, tol, split)
    free = np.isinf(row_tol)
    unserved = ~(sums[:, -1] >= err / np.where(free, tol, row_tol))
    free &= unserved
    clip_unbounded(sums, np.flatnonzero(free), vmax, np.broadcast_to(err, unserved.shape)[free])
    return unserved & ~free
