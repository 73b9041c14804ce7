"""How a solver has a model's nonlocal sums computed: :class:`Sums`, handed to every field evaluation.

A model's velocity is made of sums over the measure (``docs/equations.md``). *Which* sums a
model needs is the model's business (:mod:`vlasov_tf.models`); *how* they are computed is the
solver's, which knows the sizes, the accuracy it needs, whether the measure is split across MPI
ranks, and whether a causal mask applies. A :class:`Sums` carries that choice:

- ``heads``: the scaled exponential sums ``sum_j w_j exp(<B x_i, y_j>) [y_j, 1]`` of attention
  heads (a :data:`HeadSums`: dense, by a method of :func:`~vlasov_tf.kernels.kernel_sums`,
  a few tokens' lean tile, causal);
- :meth:`Sums.zonal`: sums ``sum_j w_j phi(<x_i, y_j>) [v_j, 1]`` of a zonal kernel phi
  (:func:`~vlasov_tf.kernels.zonal_kernel_sums`, the same methods and chooser);
- :meth:`Sums.whole`: the whole measure, for a model that sums by itself (a user's model).

The methods themselves are chosen in one place, :mod:`vlasov_tf.kernels.choice`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from vlasov_tf.kernels import (
    METHODS,
    Distributed,
    ZonalKernel,
    exp_kernel_sums,
    kernel_sums,
    zonal_kernel_sums,
)
from vlasov_tf.kernels.cache import derived, frozen, immutable
from vlasov_tf.kernels.dense import causal_kernel_sums, log_weights, tile_sums
from vlasov_tf.kernels.row_tolerance import RowBudget
from vlasov_tf.kernels.zonal_sums import allgather_keys
from vlasov_tf.profiling import active as profiling_active
from vlasov_tf.profiling import section

__all__ = [
    "DENSE",
    "HeadSums",
    "Sums",
    "causal_head_sums",
    "dense_head_sums",
    "method_head_sums",
    "tile_head_sums",
]

#: ``head_sums(B, queries, points, weights) -> (shift, sums)``: the scaled sums
#: ``sum_j w_j exp(<B x_i, y_j>) [y_j, 1] = exp(shift_i) sums_i`` of one head.
HeadSums = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def dense_head_sums(
    B: np.ndarray, queries: np.ndarray, points: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The default :data:`HeadSums`: dense blocked sums of :func:`~vlasov_tf.kernels.exp_kernel_sums`."""
    return exp_kernel_sums(np.dot(queries, B.T), points, weights, points)


def tile_head_sums(weights: np.ndarray) -> HeadSums:
    """The dense :data:`HeadSums` of a few tokens (:func:`~vlasov_tf.kernels.dense.one_tile`), lean.

    For a solver's loop over tokens whose ``weights`` (all positive) stay fixed: the log-weights
    are taken once, and each call is :func:`~vlasov_tf.kernels.dense.tile_sums` of ``B x``, what
    :func:`dense_head_sums` and ``method_head_sums("dense")`` compute for these sizes (the same
    bits), without their per-call checks and dispatch (~10 us of a ~30 us layer of 64 tokens).
    The caller holds ``np.errstate(under="ignore")`` and passes these weights; the calls are
    recorded as the sections ``"sums.dense"`` and ``"dense"`` only while a profile is active.
    """
    logw = log_weights(weights)

    def head_sums(
        B: np.ndarray, queries: np.ndarray, points: np.ndarray, _weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # _weights: the HeadSums signature; these sums use the weights fixed above (logw).
        z = np.dot(queries, B.T)
        if not profiling_active():
            return tile_sums(z, points, logw, points)
        with section("sums.dense"), section("dense", pairs=float(len(z)) * float(len(points))):
            return tile_sums(z, points, logw, points)

    return head_sums


def causal_head_sums(s_queries: np.ndarray, s_keys: np.ndarray) -> HeadSums:
    """The :data:`HeadSums` of causal attention: query i attends to the keys at or before its
    position, ``s_keys[j] <= s_queries[i]`` (itself included when it is a key):
    ``A_h[mu](x_i) = sum_{j: s_j <= s_i} w_j e^{<B x_i, x_j>} V x_j / sum_{j: s_j <= s_i} w_j e^{...}``
    (:func:`~vlasov_tf.kernels.dense.causal_kernel_sums`, dense)."""
    s_q, s_k = np.asarray(s_queries, dtype=np.float64), np.asarray(s_keys, dtype=np.float64)

    def head_sums(
        B: np.ndarray, queries: np.ndarray, points: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return causal_kernel_sums(np.dot(queries, B.T), points, weights, points, s_q, s_k)

    return head_sums


def method_head_sums(
    method: str = "auto",
    tol: float = 1e-10,
    *,
    split: Distributed | None = None,
    threads: int | None = None,
    row_tol: np.ndarray | RowBudget | None = None,
) -> HeadSums:
    """The :data:`HeadSums` of a field method of :func:`~vlasov_tf.kernels.kernel_sums`.

    ``method``: one of :data:`~vlasov_tf.kernels.METHODS` ("auto" chooses per head and call by
    the methods' cost estimates); every row within ``tol`` of the dense sums (dense: exact).
    ``split``: the measure is this rank's block of one split across MPI ranks
    (:class:`vlasov_tf.parallel.RingSums`). ``row_tol``: (n,) per-row tolerances over the queries
    of every call (:func:`~vlasov_tf.kernels.kernel_sums`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown field method {method!r}; choose one of {METHODS}")
    if method == "dense" and split is None and threads is None:
        return dense_head_sums

    def head_sums(
        B: np.ndarray, queries: np.ndarray, points: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if immutable(queries):
            # Fixed (read-only) queries, e.g. a grid's face midpoints: B x once per head, and with
            # it everything the kernel sums derive from it (kernels.cache).
            z = derived(queries, f"B x for B = {B.tobytes().hex()}", lambda q: frozen(np.dot(q, B.T)))
        else:
            # Moving tokens: no cache key (B's bytes in hex, ~2 us a layer), but z is read-only all
            # the same, so that the sums derive what they need from it once per call.
            z = frozen(np.dot(queries, B.T))
        return kernel_sums(
            z, points, weights, points, method=method, tol=tol, split=split, threads=threads, row_tol=row_tol
        )

    return head_sums



@dataclass(frozen=True)
class Sums:
    """The solver's choice of how a field's sums are computed (module docstring).

    Attributes
    ----------
    heads : the exponential sums of attention heads.
    method, tol, threads : what :meth:`zonal` passes to the kernel sums (one of
        :data:`~vlasov_tf.kernels.METHODS`; every row within ``tol``).
    split : the measure is this rank's block of one split across MPI ranks
        (:class:`vlasov_tf.parallel.RingSums`); every rank evaluates the field together.
    causal : the heads are masked (:func:`causal_head_sums`): only attention applies a mask, so
        :meth:`zonal` and :meth:`whole` refuse.
    """

    heads: HeadSums = dense_head_sums
    method: str = "dense"
    tol: float = 1e-10
    split: Distributed | None = None
    threads: int | None = None
    causal: bool = False

    @classmethod
    def by_method(
        cls, method: str = "auto", tol: float = 1e-10, *, split: Distributed | None = None
    ) -> Sums:
        """Every sum by ``method`` (:data:`~vlasov_tf.kernels.METHODS`; "auto" chooses per call)."""
        return cls(method_head_sums(method, tol, split=split), method, tol, split)

    @property
    def takes_row_tol(self) -> bool:
        """Whether :meth:`with_row_tol` changes these sums (dense and causal sums serve every row
        within ``tol`` whatever they are asked: a caller need not compute tolerances for them)."""
        return not (self.causal or self.method == "dense")

    def with_row_tol(self, row_tol: np.ndarray | RowBudget) -> Sums:
        """These sums with per-row tolerances ``row_tol`` (n,) over the next evaluation's queries
        (:func:`~vlasov_tf.kernels.kernel_sums`; ``inf``: the field's bound only): what the grid's
        ``field_accuracy = "flux"`` hands the model, looser where little mass can flow. For sums
        made by :meth:`by_method`: their attention heads (zonal kernels keep their absolute
        contract; dense and causal sums serve every row within ``tol`` and are returned as they
        are)."""
        if not self.takes_row_tol:
            return self
        heads = method_head_sums(self.method, self.tol, split=self.split, threads=self.threads,
                                 row_tol=row_tol)  # fmt: skip
        return replace(self, heads=heads)

    def _refuse_mask(self, what: str) -> None:
        if self.causal:
            raise ValueError(f"a causal mask applies to attention heads only, not to {what}")

    def whole(self, points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole measure ``(points (N, d), weights (N,))``, its points of positive weight only
        (serially as under ``split``, where every rank's block is gathered in rank order: a
        collective call)."""
        self._refuse_mask("a model that sums by itself")
        if self.split is None:
            keep = weights > 0
            return (points, weights) if keep.all() else (points[keep], weights[keep])
        every, w, _ = allgather_keys(self.split, points, weights, None)
        return np.ascontiguousarray(every), np.ascontiguousarray(w)  # as a serial run's arrays

    def zonal(
        self,
        kernel: ZonalKernel,
        queries: np.ndarray,
        points: np.ndarray,
        weights: np.ndarray,
        values: np.ndarray | None,
    ) -> np.ndarray:
        """``sum_j w_j phi(<x_i, y_j>) [v_j, 1]`` (n, k + 1) of a zonal kernel phi at the queries
        (:func:`~vlasov_tf.kernels.zonal_kernel_sums`; every entry within ``tol`` in the kernel's
        scale)."""
        self._refuse_mask(f"the zonal kernel {kernel.name!r}")
        return zonal_kernel_sums(
            kernel, queries, points, weights, values,
            method=self.method, tol=self.tol, threads=self.threads, split=self.split,
        )  # fmt: skip


#: Dense sums, serial: what a field evaluated outside a solver uses.
DENSE = Sums()
