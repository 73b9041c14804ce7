"""The attention velocity field X[mu](t, x): the one place where attention's physics is written.

For a measure mu (weighted points) and parameters theta, ``docs/equations.md``::

    A_h[mu](x) = int exp(<B_h x, y>) V_h y dmu(y) / int exp(<B_h x, y>) dmu(y)   (SA)
    A_h[mu](x) = int exp(<B_h x, y>) V_h y dmu(y)                                (USA)
    X[mu](x)   = P_x ( sum_h W_h A_h[mu](x) + W (U x + b)_+ ),   P_x = I - x x^T

with ``B_h = beta K_h^T Q_h`` (so ``<B_h x, y> = beta <Q_h x, K_h y>``, the
one-matrix form of the first seed paper). Without the projection P_x the same
formula is the mean-field Transformer in R^d.

Parameters are piecewise constant in time: a :class:`Schedule` is a sequence
of (duration, :class:`Params`) blocks. Both are :class:`~vlasov_tf.models.base.MeanField` models:
the solvers call :meth:`Params.evaluate`, i.e. :func:`velocity_unchecked` (inner loops), with the
head sums their :class:`~vlasov_tf.models.sums.Sums` choose; :func:`velocity` is the checked form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from scipy import special
from scipy.special import logsumexp

from vlasov_tf.geometry.measures import SPHERE_ATOL, check_points, check_weights
from vlasov_tf.kernels import blas_single_thread, kernel_sums
from vlasov_tf.models.base import MeanField
from vlasov_tf.models.sums import HeadSums, Sums, dense_head_sums

__all__ = [
    "MAX_MATRIX_NORM",
    "Head",
    "Params",
    "Perceptron",
    "Schedule",
    "interaction_energy",
    "linear_growth_rate",
    "log_potential",
    "velocity",
    "velocity_unchecked",
    "zonal_beta",
]

Attention = Literal["SA", "USA"]


#: The largest norm (Frobenius) of a head's matrices. A score ``<B x, y>`` carries a rounding error
#: of about ``|B| 2.2e-16``, which ``exp`` turns into a relative error of the attention weights:
#: 2e-4 at ``|B| = 1e12``; from about 1e15 the weights are noise, and beyond they underflow (every
#: query's weights 0, on the sphere from beta ~ 1e20) or overflow (``beta = 1e300`` passed and then
#: failed deep in the sums with "zero-size array").
MAX_MATRIX_NORM = 1e12


def _matrix(a: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite entries")
    scale = float(np.abs(arr).max(initial=0.0)) or 1.0
    norm = scale * float(np.linalg.norm(arr / scale))  # without squaring 1e300 to inf
    if norm > MAX_MATRIX_NORM:
        raise ValueError(
            f"{name} has norm {norm:.3g}, above {MAX_MATRIX_NORM:.0e}: its scores' rounding (norm x 2.2e-16) "
            "would swamp the attention weights"
        )
    return arr


@dataclass(frozen=True)
class Head:
    """One attention head: score matrix ``B`` (d, d), value ``V`` (d, d), output ``W`` (d, d).

    The head contributes ``W V A_B[mu](x)`` where ``A_B`` averages ``y`` with
    weights ``exp(<B x, y>)``. Use :meth:`from_qkv` for the ``beta, Q, K`` form.
    """

    B: np.ndarray
    V: np.ndarray
    W: np.ndarray | None = None

    def __post_init__(self) -> None:
        d = np.shape(self.B)[0] if np.ndim(self.B) == 2 else -1
        if d < 2:
            raise ValueError(f"head matrix B must be (d, d) with d >= 2; got shape {np.shape(self.B)}")
        object.__setattr__(self, "B", _matrix(self.B, (d, d), "head matrix B"))
        object.__setattr__(self, "V", _matrix(self.V, (d, d), "head matrix V"))
        if self.W is not None:
            object.__setattr__(self, "W", _matrix(self.W, (d, d), "head output matrix W"))

    @classmethod
    def from_qkv(
        cls, Q: np.ndarray, K: np.ndarray, V: np.ndarray, beta: float, W: np.ndarray | None = None
    ) -> Head:
        """Head with scores ``beta <Q x, K y>``, i.e. ``B = beta K^T Q``."""
        if not (np.isfinite(beta) and beta > 0):
            raise ValueError(f"inverse temperature beta must be finite and > 0; got {beta}")
        Q, K = np.asarray(Q, dtype=float), np.asarray(K, dtype=float)
        if Q.shape != K.shape or Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
            raise ValueError(f"Q and K must be square matrices of one shape; got {Q.shape}, {K.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            B = beta * K.T @ Q
        if not np.isfinite(B).all():
            raise ValueError(f"head matrix B = beta K^T Q overflows float64 (beta = {beta:g})")
        return cls(B=B, V=V, W=W)

    @property
    def d(self) -> int:
        return self.B.shape[0]

    @cached_property
    def output(self) -> np.ndarray:
        """The (d, d) map ``W V`` applied to the attention average (computed once: heads are immutable)."""
        return self.V if self.W is None else self.W @ self.V


@dataclass(frozen=True)
class Perceptron:
    """The feed-forward term ``W (U x + b)_+`` with ``W`` (d, m), ``U`` (m, d), ``b`` (m,)."""

    W: np.ndarray
    U: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        W = np.asarray(self.W, dtype=float)
        if W.ndim != 2:
            raise ValueError(f"perceptron W must be a (d, m) matrix; got shape {W.shape}")
        d, m = W.shape
        object.__setattr__(self, "W", _matrix(W, (d, m), "perceptron W"))
        object.__setattr__(self, "U", _matrix(self.U, (m, d), "perceptron U"))
        object.__setattr__(self, "b", _matrix(self.b, (m,), "perceptron b"))

    @property
    def d(self) -> int:
        return self.W.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, d): ``W (U x + b)_+`` row by row."""
        return np.dot(np.maximum(np.dot(x, self.U.T) + self.b, 0.0), self.W.T)


@dataclass(frozen=True)
class Params(MeanField):
    """Parameters of one constant block: heads, optional perceptron, SA or USA.

    As a :class:`~vlasov_tf.models.base.MeanField`: the attention field of these parameters at
    any time (a schedule of one block without a horizon).
    """

    heads: tuple[Head, ...] = ()
    perceptron: Perceptron | None = None
    attention: Attention = "SA"
    d: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))
        if self.attention not in ("SA", "USA"):
            raise ValueError(
                f"attention must be 'SA' (softmax) or 'USA' (unnormalised); got {self.attention!r}"
            )
        dims = {h.d for h in self.heads} | ({self.perceptron.d} if self.perceptron else set())
        if not dims:
            raise ValueError("Params needs at least one head or a perceptron")
        if len(dims) > 1:
            raise ValueError(f"heads and perceptron disagree on the dimension d: {sorted(dims)}")
        object.__setattr__(self, "d", dims.pop())

    @classmethod
    def identity(cls, d: int, beta: float, attention: Attention = "SA") -> Params:
        """One head with ``Q = K = V = I``: the zonal kernel ``exp(beta <x, y>)``."""
        eye = np.eye(d)
        return cls(heads=(Head.from_qkv(eye, eye, eye, beta),), attention=attention)

    @classmethod
    def qkv(
        cls,
        Q: np.ndarray | Sequence[np.ndarray],
        K: np.ndarray | Sequence[np.ndarray],
        V: np.ndarray | Sequence[np.ndarray],
        beta: float,
        W: np.ndarray | Sequence[np.ndarray] | None = None,
        *,
        perceptron: Perceptron | None = None,
        attention: Attention = "SA",
    ) -> Params:
        """Heads from stacks of ``Q_h, K_h, V_h`` (each (d, d) or (H, d, d)) and optional ``W_h``."""
        Qs, Ks, Vs = (np.asarray(a, dtype=float) for a in (Q, K, V))
        Qs, Ks, Vs = (a[None] if a.ndim == 2 else a for a in (Qs, Ks, Vs))
        if not (len(Qs) == len(Ks) == len(Vs)):
            raise ValueError(f"Q, K, V give different numbers of heads: {len(Qs)}, {len(Ks)}, {len(Vs)}")
        Ws = [None] * len(Qs) if W is None else np.reshape(np.asarray(W, dtype=float), Qs.shape)
        heads = tuple(Head.from_qkv(q, k, v, beta, w) for q, k, v, w in zip(Qs, Ks, Vs, Ws, strict=True))
        return cls(heads=heads, perceptron=perceptron, attention=attention)

    @classmethod
    def interpolation(
        cls,
        d: int,
        *,
        B: np.ndarray | None = None,
        V: np.ndarray | None = None,
        W: np.ndarray | None = None,
        U: np.ndarray | None = None,
        b: np.ndarray | None = None,
    ) -> Params:
        """The first seed paper's form ``P_x(V A_B[mu](x) + W (U x + b)_+)`` (SA, one head).

        Omitted ``B`` means ``B = 0`` (plain barycentre); omitted ``V`` or ``W``
        drop that term. ``U`` is (m, d), ``b`` (m,), ``W`` (d, m).
        """
        heads = () if V is None else (Head(B=np.zeros((d, d)) if B is None else B, V=V),)
        perc = None
        if W is not None:
            if U is None or b is None:
                raise ValueError("perceptron W given without its input matrix U and bias b")
            perc = Perceptron(W=W, U=U, b=b)
        elif U is not None:
            raise ValueError("perceptron U given without its output matrix W")
        return cls(heads=heads, perceptron=perc, attention="SA")

    def evaluate(self, t, points, weights, queries, sphere, sums: Sums) -> np.ndarray:
        """:func:`velocity_unchecked` with the solver's head sums (``t``: the field is constant)."""
        return velocity_unchecked(self, points, weights, queries, sphere, sums.heads)

    def energy(self, points: np.ndarray, weights: np.ndarray) -> float | None:
        """:func:`interaction_energy` for Q = K = V = I (:func:`zonal_beta`), non-decreasing (SA, USA)."""
        beta = zonal_beta(self)
        return None if beta is None else interaction_energy(points, weights, beta)

    def growth_rate(self, mode: int) -> float | None:
        """:func:`linear_growth_rate` for Q = K = V = I on the circle and S^2."""
        beta = zonal_beta(self)
        return None if beta is None or self.d > 3 else linear_growth_rate(self.d, mode, beta, self.attention)


@dataclass(frozen=True)
class Schedule(MeanField):
    """Piecewise-constant parameters: blocks ``(duration_k, params_k)`` on ``[0, T]``.

    As a :class:`~vlasov_tf.models.base.MeanField`: the final time ``T``, switches at the block
    boundaries (:attr:`breakpoints`), and each piece's field is its block's :class:`Params`.
    """

    blocks: tuple[tuple[float, Params], ...]
    d: int = field(init=False)

    def __post_init__(self) -> None:
        blocks = tuple((float(tau), p) for tau, p in self.blocks)
        if not blocks:
            raise ValueError("a schedule needs at least one (duration, params) block")
        for k, (tau, p) in enumerate(blocks):
            if not (np.isfinite(tau) and tau > 0):
                raise ValueError(f"schedule block {k} has duration {tau}; durations must be finite and > 0")
            if not isinstance(p, Params):
                raise ValueError(f"schedule block {k} holds {type(p).__name__}, not Params")
        dims = {p.d for _, p in blocks}
        if len(dims) > 1:
            raise ValueError(f"schedule blocks disagree on the dimension d: {sorted(dims)}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "d", dims.pop())

    @classmethod
    def constant(cls, params: Params, T: float) -> Schedule:
        return cls(((T, params),))

    @property
    def T(self) -> float:
        return float(self.breakpoints[-1])

    @property
    def breakpoints(self) -> np.ndarray:
        """(n_blocks + 1,) switch times ``0 = t_0 < t_1 < ... < t_n = T``."""
        return np.concatenate([[0.0], np.cumsum([tau for tau, _ in self.blocks])])

    def index_at(self, t: float) -> int:
        """Block index in force at time ``t`` (right-continuous; ``T`` is in the last block)."""
        bp = self.breakpoints
        if not (0.0 <= t <= bp[-1]):
            raise ValueError(f"time {t} is outside the schedule's interval [0, {bp[-1]}]")
        return min(int(np.searchsorted(bp, t, side="right")) - 1, len(self.blocks) - 1)

    def params_at(self, t: float) -> Params:
        return self.blocks[self.index_at(t)][1]

    def switch_times(self, T: float) -> np.ndarray:
        return self.breakpoints

    def piece(self, t: float) -> Params:
        return self.params_at(t)

    def evaluate(self, t, points, weights, queries, sphere, sums: Sums) -> np.ndarray:
        return self.params_at(t).evaluate(t, points, weights, queries, sphere, sums)

    def energy(self, points: np.ndarray, weights: np.ndarray) -> float | None:
        """The blocks' energy when they all have the same one (one zonal beta), else None."""
        betas = {zonal_beta(p) for _, p in self.blocks}
        return self.blocks[0][1].energy(points, weights) if len(betas) == 1 else None


def zonal_beta(params: Params) -> float | None:
    """beta when ``params`` is one head with Q = K = V = I (B = beta I), no output map or perceptron."""
    if len(params.heads) != 1 or params.perceptron is not None:
        return None
    head = params.heads[0]
    d = params.d
    beta = head.B[0, 0]
    plain = head.W is None or np.array_equal(head.W, np.eye(d))
    if plain and np.array_equal(head.V, np.eye(d)) and np.array_equal(head.B, beta * np.eye(d)):
        return float(beta)
    return None


def velocity_unchecked(
    params: Params,
    points: np.ndarray,
    weights: np.ndarray,
    queries: np.ndarray,
    sphere: bool,
    head_sums: HeadSums = dense_head_sums,
) -> np.ndarray:
    """:func:`velocity` without input checks, for solvers' inner loops.

    ``queries`` may lie off the sphere (Runge-Kutta stages): P_x is then the
    formula ``I - x x^T``, for which the sphere is invariant
    (``d|x|^2/dt = 2 <x, v> (1 - |x|^2)``). ``head_sums`` lets a solver choose how the
    kernel sums are computed (:func:`~vlasov_tf.models.sums.method_head_sums`: spectral, Taylor,
    split across MPI ranks); how the sums make the field stays here. BLAS runs on one thread
    (a loop of layers that pins it itself makes this a nested pin, ~0.3 us).
    """
    with blas_single_thread():
        return _velocity(params, points, weights, queries, sphere, head_sums)


def _velocity(
    params: Params,
    points: np.ndarray,
    weights: np.ndarray,
    queries: np.ndarray,
    sphere: bool,
    head_sums: HeadSums,
) -> np.ndarray:
    """:func:`velocity_unchecked` inside its BLAS pin."""
    terms = []
    d = params.d
    sa = params.attention == "SA"
    for head in params.heads:
        shift, sums = head_sums(head.B, queries, points, weights)
        if sa:
            avg = sums[:, :d] / sums[:, d:]
        else:
            with np.errstate(over="ignore"):
                avg = np.exp(shift)[:, None] * sums[:, :d]
            if not np.isfinite(avg).all():
                raise OverflowError(
                    f"the unnormalised (USA) attention field exceeds the float range "
                    f"(log-magnitude up to {shift.max():.0f}); lower beta or rescale time"
                )
        # np.dot, not @: numpy's matmul is ~5x slower for (n, d) times a transposed (d, d).
        terms.append(np.dot(avg, head.output.T))
    if params.perceptron is not None:
        terms.append(params.perceptron(queries))
    # Added up in the first term's array (not onto zeros: the same sums, but for the sign of exact
    # zeros, and ~1 us less a call on a few tokens).
    out = terms[0]
    for term in terms[1:]:
        out += term
    if sphere:
        out -= np.einsum("ij,ij->i", out, queries)[:, None] * queries
    return out


def velocity(
    params: Params,
    points: np.ndarray,
    weights: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    *,
    sphere: bool = True,
    atol: float = SPHERE_ATOL,
) -> np.ndarray:
    """Attention velocity ``X[mu](x)`` of the measure ``mu = sum_j w_j delta_{y_j}``.

    Parameters
    ----------
    params : the block's parameters (any number of heads, SA or USA, perceptron).
    points : (N, d) support ``y_j`` of mu (on S^{d-1} when ``sphere``).
    weights : (N,) non-negative, positive total; ``None`` means uniform 1/N.
    queries : (M, d) where to evaluate; ``None`` means at ``points``.
    sphere : project with P_x onto the tangent space (False: R^d model).
    atol : tolerance on ``| |x| - 1 |`` for points and queries.

    Returns
    -------
    (M, d) velocities. Cost O(N M d) in tiles of bounded memory.
    """
    pts = check_points(points, dim=params.d, sphere=sphere, atol=atol)
    w = check_weights(weights, len(pts))
    if queries is None:
        return velocity_unchecked(params, pts, w, pts, sphere)
    qry = check_points(queries, name="queries", dim=params.d, sphere=sphere, atol=atol)
    return velocity_unchecked(params, pts, w, qry, sphere)


def linear_growth_rate(d: int, mode: int, beta: float, attention: str = "SA") -> float:
    """Growth rate of the mode ``mode`` of a small perturbation of the uniform state, Q = K = V = I.

    Circle (d = 2), ``a cos(k t)``: ``k^2 I_k(beta) / (beta I_0(beta))`` (SA), ``k^2 I_k(beta) / beta``
    (USA); S^2 (d = 3), ``a Y_l``: ``l (l + 1) i_l(beta) / (beta i_0(beta))`` (SA),
    ``l (l + 1) i_l(beta) / beta`` (USA), with ``I_k`` the modified Bessel and ``i_l`` the modified
    spherical Bessel functions (exponentially scaled here: the scale factors cancel in SA).
    (The Fourier / Funk-Hecke coefficients of the kernel; docs/equations.md.)
    """
    if attention not in ("SA", "USA"):
        raise ValueError(f"attention must be 'SA' or 'USA', got {attention!r}")
    if d == 2:
        rate = mode * mode * special.ive(mode, beta) / beta
        return float(rate / special.ive(0, beta) if attention == "SA" else rate * np.exp(beta))
    if d == 3:
        if attention == "SA":  # i_l / i_0 = I_{l + 1/2} / I_{1/2}, scaled: finite at beta = 1000
            return float(mode * (mode + 1) * special.ive(mode + 0.5, beta) / special.ive(0.5, beta) / beta)
        return float(mode * (mode + 1) * special.spherical_in(mode, beta) / beta)
    raise ValueError(f"linear growth rates are for the circle (d = 2) and S^2 (d = 3), not d = {d}")


def log_potential(points, weights, queries, beta: float) -> np.ndarray:
    """``log Phi(x) = log int exp(beta <x, y>) dmu(y)`` at (M, d) queries; shape (M,).

    For Q = K = V = I the SA field is ``(1/beta) grad_S log Phi`` and the USA
    field ``(1/beta) grad_S Phi``. The sums are those of :func:`~vlasov_tf.kernels.kernel_sums`
    (``"auto"``: on S^1 and S^2 the spectral sums once N is large), within 1e-10 relative.
    """
    pts = check_points(points, sphere=False)
    w = check_weights(weights, len(pts))
    qry = check_points(queries, name="queries", dim=pts.shape[1], sphere=False)
    shift, sums = kernel_sums(beta * qry, pts, w)
    return shift + np.log(sums[:, 0])


def interaction_energy(points, weights, beta: float, *, log: bool = False) -> float:
    """``E = (1 / (2 beta)) sum_ij w_i w_j exp(beta <x_i, x_j>)`` (``log E`` with ``log=True``).

    Non-decreasing along the flow for Q = K = V = I (SA and USA). ``log=True``
    stays finite where E itself exceeds the float range (beta >~ 700).
    """
    pts = check_points(points, sphere=False)
    w = check_weights(weights, len(pts))
    keep = w > 0
    log_e = float(logsumexp(log_potential(pts, w, pts[keep], beta), b=w[keep]) - np.log(2.0 * beta))
    if log:
        return log_e
    with np.errstate(over="ignore"):
        return float(np.exp(log_e))
