"""Zonal kernel sums on S^2 by spherical harmonics (Funk-Hecke), O(L^2 (n + m)) instead of O(n m).

This is the pre-ducc0 implementation (``vlasov_tf/harmonics.py`` up to commit 00953be:
hand-written associated Legendre tables, zonal heads on S^2 only), kept here only as the
baseline that ``scripts/bench_field.py`` times next to :mod:`vlasov_tf.kernels.spectral`
("the previous method"). The package does not use it; only its imports were changed to the
new package layout, the algorithm is as it was (including the known ``harmonic_degree`` bug:
it raises for scales of about 10.9 to 12.6, where a table cut short makes ``1 - cumsum`` round to
8e-15 instead of reaching the tolerance).

For a score matrix ``B = s R`` (``s > 0``, ``R`` orthogonal: the zonal case,
e.g. ``Q = K = I``) the kernel of :func:`vlasov_tf.kernels.exp_kernel_sums` is
``exp(<B x, y>) = exp(s <q, y>)`` with ``q = R x`` on the sphere, a function of
``<q, y>`` only. With the modified spherical Bessel functions ``i_l`` and the
addition theorem ``P_l(<q, y>) = 4 pi / (2l + 1) sum_m Y_lm(q) Y_lm(y)`` (real
orthonormal harmonics)::

    exp(s t) = sum_l (2l + 1) i_l(s) P_l(t),
    S(q) = sum_j w_j exp(s <q, y_j>) [v_j, 1]
         = e^s sum_{l <= L} lam_l sum_m Y_lm(q) a_lm + e^s tail,
    lam_l = 4 pi i_l(s) e^{-s},     a_lm = sum_j w_j [v_j, 1] Y_lm(y_j).

``i_l(s) e^{-s}`` is evaluated as ``ive(l + 1/2, s) sqrt(pi / (2 s))``, so the
shift is ``s`` (plus ``log sum w``) and nothing overflows at ``s = 1000``.

Truncation bound. ``|P_l| <= 1`` on [-1, 1], so for every column ``c``::

    |tail_c| <= tau_L(s) * sum_j w_j |[v_j, 1]_c|,   tau_L(s) = sum_{l > L} (2l + 1) i_l(s) e^{-s}.

``tau_{-1}(s) = 1`` (``t = 1`` above); for large ``s``, ``(2l + 1) i_l(s) e^{-s}
~ (2l + 1) / (2 s) exp(-l (l + 1) / (2 s))``, a Rayleigh profile in ``l`` of
width ``sqrt(s)``, so ``L ~ sqrt(2 s log(1 / tol))`` (:func:`harmonic_degree`
computes the exact smallest ``L``).

Round-off. Summed over ``m``, the terms ``lam_l Y_lm(q) a_lm`` are bounded
(Cauchy-Schwarz and the addition theorem) by ``mag_l = (2l + 1) i_l(s) e^{-s}
sqrt(4 pi / (2l + 1)) ||a_l||``, ``||a_l||^2 = sum_m a_lm^2``; for a point mass
``||a_l||^2 = (2l + 1) / (4 pi) (sum w)^2`` and ``sum_l mag_l = sum w``, for a
spread measure it is far smaller. The estimate used, per column, is::

    noise = eps ((L + 1)^2 / 4 * sum_l mag_l + 2 sqrt(L + 1) sum_j w_j |[v_j, 1]|)

(the first term: errors of the recurrence and of the sums over (l, m); the
second: cancellation in the sums over keys), measured at 5x to 250x the actual
error on uniform, clustered and point-mass measures for s = 0.5 ... 1000.

Both errors are absolute, ``~ e^s sum w``, while a row's true normaliser can be
as small as ``e^{-2s} sum w`` relative to that (all mass opposite the query):
exactly as :func:`~vlasov_tf.kernels.circle_convolution_sums` does on the
circle, rows whose computed normaliser is below ``(tau_L + noise) / 1e-10``
are recomputed densely with :func:`~vlasov_tf.kernels.exp_kernel_sums`. Every
row then agrees with the dense sum to a relative error ``<= 1e-10``
(``max_c |error_ic| / normaliser_i``; measured <= 3e-13), if the points and
queries are unit vectors to round-off: a point ``delta`` off the sphere adds a
relative error ``s delta``, so they are required to lie on it to
``1e-11 / max(s, 1)``.

Evaluation. Real harmonics ``sqrt(2) Pbar_l^m(cos theta) (cos m phi, sin m phi)``
with the orthonormal associated Legendre functions ``Pbar_l^m`` by their
standard three-term recurrence in ``l``, vectorised over ``m`` and over a block
of points; for each order ``m`` one small GEMM contracts the ``L + 1 - m``
degrees against the ``2 (k + 1)`` cosine/sine-weighted values. Blocks of points
run on the thread pool of :mod:`vlasov_tf.kernels` with BLAS pinned to one
thread. (scipy's ``sph_legendre_p_all`` costs ~100 ns per value, 30x more.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.special import ive

from vlasov_tf.geometry.measures import check_weights
from vlasov_tf.kernels.dense import exp_kernel_sums
from vlasov_tf.kernels.threads import num_threads, thread_map

__all__ = [
    "HarmonicPlan",
    "harmonic_cost",
    "harmonic_degree",
    "harmonic_sums",
    "scaled_orthogonal",
    "truncation_bound",
]

#: Relative error per row guaranteed by the dense fix-up (the error estimate has a 5x margin or more).
_ROW_RTOL = 1e-10
#: Round-off estimate (module docstring): eps (_NOISE_TERMS (L+1)^2 mag + _NOISE_KEYS sqrt(L+1) total).
_NOISE_TERMS = 0.25
_NOISE_KEYS = 2.0
#: Largest accepted s | |y| - 1 | for keys and queries: the expansion sees directions only, and an
#: off-sphere point changes its kernel by a factor exp(s (|y| - 1)).
_UNIT_RTOL = 1e-11
#: Points per block times (L + 1): three (L+1, b) slices of the recurrence take 384 KiB (L2 cache).
_BLOCK_POINTS = 1 << 14
#: Largest degree harmonic_degree returns (the dense sum is far cheaper long before; the sectoral
#: start rho^m underflows for the near-polar points that matter only well beyond it).
_MAX_DEGREE = 1000


def scaled_orthogonal(B: np.ndarray, rtol: float = 1e-12) -> tuple[float, np.ndarray] | None:
    """``(s, R)`` with ``B = s R``, ``R`` orthogonal, ``s > 0``, if ``B`` is one (to ``rtol``), else None.

    ``B`` (d, d) is accepted when ``max |B^T B - s^2 I| <= rtol s^2`` with
    ``s^2 = tr(B^T B) / d``; then ``R = B / s`` (orthogonal to ``rtol``; proper
    or improper). Non-square, non-finite or zero matrices give None.
    """
    B = np.asarray(B, dtype=float)
    if B.ndim != 2 or B.shape[0] != B.shape[1] or B.shape[0] == 0 or not np.isfinite(B).all():
        return None
    gram = B.T @ B
    s2 = float(np.trace(gram)) / B.shape[0]
    if not s2 > 0:
        return None
    if np.abs(gram - s2 * np.eye(B.shape[0])).max() > rtol * s2:
        return None
    s = float(np.sqrt(s2))
    return s, B / s


@lru_cache(maxsize=64)
def _scaled_bessel(scale: float) -> np.ndarray:
    """``(2l + 1) i_l(scale) e^{-scale}`` for l = 0..l_max (read-only; callers must not modify it).

    Their total is 1 (the expansion of ``exp(scale t)`` at ``t = 1``). l_max
    is where the terms fall below 1e-300, or ``3 * _MAX_DEGREE`` for huge
    scales (then :func:`_tails` takes the complement).
    """
    # The Rayleigh profile (module docstring) is below 1e-300 past l ~ sqrt(2 s 700);
    # for small s, i_l(s) ~ s^l / (2l+1)!! dies even faster.
    l_max = min(int(np.ceil(np.sqrt(2 * scale * 700) + 2 * scale + 60)), 3 * _MAX_DEGREE)
    ell = np.arange(l_max + 1)
    with np.errstate(under="ignore"):
        terms = (2 * ell + 1) * ive(ell + 0.5, scale) * np.sqrt(np.pi / (2 * scale))
    terms.flags.writeable = False
    return terms


@lru_cache(maxsize=64)
def _tails(scale: float) -> np.ndarray:
    """``tau_L = sum_{l > L} (2l + 1) i_l(s) e^{-s}`` for L = 0..l_max (read-only)."""
    terms = _scaled_bessel(scale)
    # Summed from the small end: accurate down to 1e-300 when the table holds every term.
    tails = np.r_[np.cumsum(terms[::-1])[::-1][1:], 0.0]
    if terms[-1] > 1e-300:  # table cut short: the complement 1 - partial sum (accurate to ~1e-16)
        tails = np.maximum(tails, 1.0 - np.cumsum(terms))
    tails.flags.writeable = False
    return tails


def truncation_bound(scale: float, degree: int) -> float:
    """``tau_L(s) = sum_{l > L} (2l + 1) i_l(s) e^{-s}``: the truncation error of degree ``L`` per unit
    weight, relative to ``e^s`` (module docstring)."""
    tails = _tails(float(scale))
    return float(tails[degree]) if degree < len(tails) else 0.0


def harmonic_degree(scale: float, tol: float) -> int:
    """Smallest truncation degree L whose truncation error bound is <= tol (relative to the total weight
    times e^scale).

    The bound is ``tau_L(s) = sum_{l > L} (2l + 1) i_l(s) e^{-s}`` (module
    docstring); ``L ~ sqrt(2 s log(1 / tol))`` for large ``s``. Raises
    ``ValueError`` for ``scale <= 0``, ``tol <= 0`` or a degree above 1000.
    """
    scale, tol = float(scale), float(tol)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive and finite; got {scale}")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be positive and finite; got {tol}")
    tails = _tails(scale)
    ok = tails[: _MAX_DEGREE + 1] <= tol
    if not ok.any():
        degree = int(np.argmax(tails <= tol)) if (tails <= tol).any() else len(tails)
        raise ValueError(
            f"scale {scale} needs degree {degree} > {_MAX_DEGREE} (or more) for tol {tol}: use dense sums"
        )
    return int(np.argmax(ok))


def harmonic_cost(scale: float, n: int, m: int, tol: float = 1e-15) -> float:
    """Estimated cost of :func:`harmonic_sums`, in units of one dense kernel term (compare with ``n * m``).

    Building and contracting the harmonics costs ``O((n + m) (L + 1)^2)``: the
    Legendre recurrence over the ``(L + 1)(L + 2) / 2`` pairs (l, m), the trig
    tables and two GEMMs with ``2 (k + 1) = 8`` columns. Measured here against
    :func:`~vlasov_tf.kernels.exp_kernel_sums` under the same conditions (one
    or two threads): 3.2 to 5.7 dense terms per point and ``(L + 1)^2`` for
    L = 85 ... 14, hence ``(n + m) (3 (L + 1)^2 + 40 (L + 1))``. Not included:
    the dense fix-up of rows with tiny normalisers (``m`` per row; none for
    spread measures, up to all rows for concentrated ones at large ``s``).
    Returns inf where L > 1000.
    """
    try:
        degree = harmonic_degree(scale, tol)
    except ValueError:
        return float("inf")
    return float(n + m) * (3.0 * (degree + 1) ** 2 + 40.0 * (degree + 1))


# --- the harmonic machinery --------------------------------------------------------------------


@lru_cache(maxsize=16)
def _recurrence(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of the orthonormal associated Legendre recurrence up to ``degree``.

    ``Pbar_l^m = a_lm z Pbar_{l-1}^m - b_lm Pbar_{l-2}^m`` (l >= m + 2), with
    ``a_lm = sqrt((4 l^2 - 1) / (l^2 - m^2))`` and
    ``b_lm = a_lm sqrt(((l - 1)^2 - m^2) / (4 (l - 1)^2 - 1))``; the sectoral
    start ``Pbar_m^m = prod_{k<=m} sqrt((2k + 1) / (2k)) rho^m / sqrt(4 pi)`` and
    ``Pbar_{m+1}^m = sqrt(2m + 3) z Pbar_m^m``. Returns ``a`` and ``b`` as
    (L+1, L+1) arrays indexed [l, m], the sectoral factors (L+1,) and
    ``sqrt(2m + 3)`` (L+1,).
    """
    ell = np.arange(degree + 1, dtype=float)[:, None]
    m = np.arange(degree + 1, dtype=float)[None, :]
    valid = ell >= m + 2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(valid, np.sqrt((4 * ell**2 - 1) / (ell**2 - m**2)), 0.0)
        b = np.where(valid, a * np.sqrt(((ell - 1) ** 2 - m**2) / (4 * (ell - 1) ** 2 - 1)), 0.0)
    k = np.arange(1, degree + 1, dtype=float)
    sectoral = np.r_[1.0 / np.sqrt(4 * np.pi), np.sqrt((2 * k + 1) / (2 * k))]
    return a, b, sectoral, np.sqrt(2 * np.arange(degree + 1) + 3.0)


def _legendre(z: np.ndarray, rho: np.ndarray, degree: int) -> np.ndarray:
    """(L+1, L+1, b) table ``P[l, m] = Pbar_l^m(z)`` (garbage for m > l); ``z, rho = cos, sin theta``.

    Orthonormal: ``sum_m (2 - delta_m0) Pbar_l^m(z)^2 = (2l + 1) / (4 pi)``. The
    table lives in a per-thread buffer, valid until the thread's next call.
    """
    a, b, sectoral, offdiag = _recurrence(degree)
    n1 = degree + 1
    p = _buffer("legendre", (n1, n1, z.size))
    flat = p.reshape(n1 * n1, z.size)
    # Sectoral Pbar_m^m = (prod of factors) rho^m: a cumulative product along m, written on the diagonal.
    diag = np.multiply.outer(sectoral, np.ones_like(rho))
    diag[1:] *= rho
    np.cumprod(diag, axis=0, out=diag)
    flat[:: n1 + 1] = diag
    if degree >= 1:
        flat[n1 :: n1 + 1] = offdiag[:degree, None] * z * diag[:degree]
    tmp = _buffer("legendre_tmp", (max(degree - 1, 0), z.size))
    for deg in range(2, n1):
        # All orders m <= deg - 2 at once; rows m = deg - 1, deg came from the diagonals above.
        t = tmp[: deg - 1]
        np.multiply(p[deg - 1, : deg - 1], z, out=t)
        t *= a[deg, : deg - 1, None]
        out = p[deg, : deg - 1]
        np.multiply(p[deg - 2, : deg - 1], b[deg, : deg - 1, None], out=out)
        np.subtract(t, out, out=out)
    return p


_local = threading.local()


def _buffer(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-thread scratch array: fresh large allocations cost a page fault per 4 KiB, more than the math."""
    size = int(np.prod(shape))
    buf = getattr(_local, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size)
        setattr(_local, name, buf)
    return buf[:size].reshape(shape)


def _directions(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cos theta, sin theta, phi)`` of (b, 3) unit vectors; rho from x, y (accurate at the poles)."""
    rho = np.hypot(points[:, 0], points[:, 1])
    norm = np.hypot(rho, points[:, 2])
    return points[:, 2] / norm, rho / norm, np.arctan2(points[:, 1], points[:, 0])


def _trig(phi: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos(m phi), sin(m phi)`` as (L+1, b) arrays.

    ``m = 8 i + j``: angle addition of ``np.cos``/``np.sin`` at ``8 i phi`` and
    rotations by ``phi`` for ``j < 8`` (error <~ 10 eps, where a rotation
    recurrence over all m would grow like m eps), at an eighth of the
    transcendental evaluations (~20 ns each here).
    """
    n1 = degree + 1
    step = 8
    coarse = np.multiply.outer(np.arange(0, n1, step, dtype=float), phi)
    cc, sc = np.cos(coarse), np.sin(coarse)
    nf = min(step, n1)
    cf, sf = np.empty((nf, phi.size)), np.empty((nf, phi.size))
    cf[0], sf[0] = 1.0, 0.0
    if nf > 1:
        cf[1], sf[1] = np.cos(phi), np.sin(phi)
    for j in range(2, nf):
        np.subtract(cf[j - 1] * cf[1], sf[j - 1] * sf[1], out=cf[j])
        np.add(sf[j - 1] * cf[1], cf[j - 1] * sf[1], out=sf[j])
    cos, sin = np.empty((n1, phi.size)), np.empty((n1, phi.size))
    for i in range(len(coarse)):
        j = min(step, n1 - step * i)
        block = slice(step * i, step * i + j)
        np.subtract(cc[i] * cf[:j], sc[i] * sf[:j], out=cos[block])
        np.add(sc[i] * cf[:j], cc[i] * sf[:j], out=sin[block])
    return cos, sin


class _Basis:
    """Harmonic tables of a point set, block by block: computed on demand or held in memory.

    Block ``i`` covers points ``starts[i] : starts[i] + b``; ``get(i)`` returns
    ``(rows, cos, sin)`` with ``rows[m] = Pbar_l^m`` for l = m..L, (L+1-m, b),
    and cos/sin ``(m phi)`` (L+1, b).
    """

    def __init__(self, points: np.ndarray, degree: int, cache: bool) -> None:
        self.points, self.degree = points, degree
        # The recurrence's working set, three slices of (L+1, b), should stay in L2 cache.
        self.block = int(np.clip(_BLOCK_POINTS // (degree + 1), 16, 4096))
        self.starts = list(range(0, points.shape[0], self.block))
        self._cache: list | None = None
        if cache:
            self._cache = _map(lambda i: self._compute(i, copy=True), range(len(self.starts)))

    @staticmethod
    def nbytes(n_points: int, degree: int) -> int:
        """Bytes held by a cached basis of ``n_points``: the triangle (l >= m) and cos, sin."""
        return 8 * n_points * ((degree + 1) * (degree + 2) // 2 + 2 * (degree + 1))

    def _compute(self, i: int, copy: bool = False) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        z, rho, phi = _directions(self.points[self.starts[i] : self.starts[i] + self.block])
        with np.errstate(under="ignore"):  # rho^m near the poles: negligible terms
            p = _legendre(z, rho, self.degree)
        # Views into the per-thread buffer, or compact copies (half the table) to keep.
        rows = [p[m:, m].copy() if copy else p[m:, m] for m in range(self.degree + 1)]
        return (rows, *_trig(phi, self.degree))

    def get(self, i: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        return self._cache[i] if self._cache is not None else self._compute(i)


def _map(fn, items) -> list:
    """``[fn(i) for i in items]`` on the dense-sum thread pool, BLAS pinned to one thread."""
    return thread_map(fn, items, num_threads())


def _coefficients(basis: _Basis, wv: np.ndarray) -> np.ndarray:
    """``a[m, l, 0/1, c] = sum_j wv_jc Pbar_l^m(y_j) (cos, sin)(m phi_j)``: (L+1, L+1, 2, k+1), 0 if l < m."""
    n1, k1 = basis.degree + 1, wv.shape[1]

    def block(i: int) -> np.ndarray:
        rows, cos, sin = basis.get(i)
        w = wv[basis.starts[i] : basis.starts[i] + cos.shape[1]].T
        a = np.zeros((n1, n1, 2, k1))
        rhs = np.empty((2, k1, cos.shape[1]))
        for m in range(n1):
            np.multiply(cos[m], w, out=rhs[0])
            np.multiply(sin[m], w, out=rhs[1])
            a[m, m:] = (rows[m] @ rhs.reshape(2 * k1, -1).T).reshape(-1, 2, k1)
        return a

    return sum(_map(block, range(len(basis.starts))))


def _evaluate(basis: _Basis, coef: np.ndarray) -> np.ndarray:
    """``sum_{l, m} coef[m, l, 0/1] Pbar_l^m(q) (cos, sin)(m phi_q)`` at the basis points, (n, k+1)."""
    n1, k1 = coef.shape[0], coef.shape[3]
    out = np.empty((basis.points.shape[0], k1))

    def block(i: int) -> None:
        rows, cos, sin = basis.get(i)
        acc = np.zeros((k1, cos.shape[1]))
        for m in range(n1):
            t = coef[m, m:].reshape(-1, 2 * k1).T @ rows[m]  # (2 (k+1), b)
            acc += t[:k1] * cos[m]
            acc += t[k1:] * sin[m]
        out[basis.starts[i] : basis.starts[i] + cos.shape[1]] = acc.T

    _map(block, range(len(basis.starts)))
    return out


# --- input checks ---------------------------------------------------------------------------------


def _check_unit(arr: np.ndarray, name: str, scale: float) -> np.ndarray:
    arr = np.asarray(arr, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3) (points on S^2); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values")
    if arr.shape[0]:
        dev = np.abs(np.linalg.norm(arr, axis=1) - 1.0)
        atol = _UNIT_RTOL / max(scale, 1.0)
        if dev.max() > atol:
            i = int(np.argmax(dev))
            raise ValueError(
                f"{name} must lie on the unit sphere to {atol:.3g} = 1e-11 / max(s, 1) (normalise them): "
                f"| |{name}[{i}]| - 1 | = {dev[i]:.3g}"
            )
    return arr


def _check_b(B: np.ndarray) -> tuple[float, np.ndarray]:
    B = np.asarray(B, dtype=float)
    if B.shape != (3, 3):
        raise ValueError(f"B must have shape (3, 3); got {B.shape}")
    if not np.isfinite(B).all():
        raise ValueError("B has non-finite entries")
    sr = scaled_orthogonal(B)
    # R off orthogonality by r moves |R x| off 1 by ~r: a relative kernel error ~ s r, as for the points.
    if sr is not None and sr[0] > 10.0:
        sr = scaled_orthogonal(B, rtol=10 * _UNIT_RTOL / sr[0])
    if sr is None:
        raise ValueError(
            "B must be a positive multiple s R of an orthogonal matrix R (B^T B = s^2 I to a relative "
            "1e-12, and 1e-10 / s for s > 10) for spherical harmonics; use kernels.exp_kernel_sums "
            "for a general B"
        )
    return sr


def _check_weights_values(
    weights, values, m: int, allow_zero: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``allow_zero``: one rank's block of a split measure may carry no weight."""
    w = check_weights(np.asarray(weights, dtype=float), m, allow_zero=allow_zero)
    if values is None:
        return w, None
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[0] != m:
        raise ValueError(f"values must have shape ({m}, k); got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values have non-finite entries")
    return w, v


# --- public evaluation ---------------------------------------------------------------------------


class HarmonicPlan:
    """Reusable evaluation for fixed queries and points: ``plan(weights, values=None) -> (shift, sums)``.

    The grid solver calls it every stage with the same face midpoints (queries)
    and cell centres (points) and new weights. The plan fixes ``B = s R``, the
    rotated queries ``q = R x``, the degree ``L = harmonic_degree(s, tol)`` and,
    while they fit in ``memory`` bytes (queries first, then points), the
    harmonic tables of the point sets, ``8 ((L + 1)(L + 2) / 2 + 2 (L + 1))``
    bytes per point: L = 14 (s = 1): 1.2 KiB, so n + m = 2.5e5 points take
    300 MB; L = 30 (s = 10): 4.6 KiB, 1.2 GB (the default 512 MiB then holds
    the 1e5 points' tables, 460 MB, not the queries'). Held tables save about
    half of a call's time (what remains is the GEMMs); tables not held are
    rebuilt block by block in a per-thread scratch buffer of (L + 1)^2 x b
    doubles (about 128 KiB x (L + 1), kept between calls).
    ``plan.cached_bytes`` says what is held.

    Parameters: ``B`` (3, 3) scaled orthogonal (:func:`scaled_orthogonal`),
    ``queries`` (n, 3) and ``points`` (m, 3) on S^2 (to ``1e-11 / max(s, 1)``),
    ``tol`` the truncation tolerance of :func:`harmonic_degree`; ``ValueError``
    naming the problem otherwise. Calls check ``weights`` (m,) (finite, >= 0,
    positive total) and ``values`` (m, k) or None; the result is that of
    :func:`harmonic_sums`.
    """

    def __init__(
        self,
        B: np.ndarray,
        queries: np.ndarray,
        points: np.ndarray,
        *,
        tol: float = 1e-15,
        memory: int = 1 << 29,
    ) -> None:
        self.scale, rot = _check_b(B)
        self.B = np.asarray(B, dtype=float)
        self.queries = _check_unit(queries, "queries", self.scale)
        self.points = _check_unit(points, "points", self.scale)
        self.degree = harmonic_degree(self.scale, tol)
        rotated = self.queries @ rot.T
        q_bytes = _Basis.nbytes(len(rotated), self.degree)
        p_bytes = _Basis.nbytes(len(self.points), self.degree)
        keep_q = q_bytes <= memory
        keep_p = p_bytes <= memory - (q_bytes if keep_q else 0)
        self._q = _Basis(rotated, self.degree, keep_q)
        self._p = _Basis(self.points, self.degree, keep_p)
        self.cached_bytes = q_bytes * keep_q + p_bytes * keep_p

        n1 = self.degree + 1
        ell = np.arange(n1)
        terms = _scaled_bessel(self.scale)[:n1]  # (2l + 1) i_l(s) e^{-s}
        # lam_l = 4 pi i_l e^{-s}; the real harmonics' sqrt(2)^2 = 2 for m > 0; indexed [m, l].
        fold = np.where(ell == 0, 1.0, 2.0)
        self._spectral = (fold[:, None] * (4 * np.pi * terms / (2 * ell + 1))[None, :])[:, :, None, None]
        self._fold = fold[:, None, None, None]
        self._mag = terms * np.sqrt(4 * np.pi / (2 * ell + 1))
        self._tail = truncation_bound(self.scale, self.degree)

    def error_bound(self, coef: np.ndarray, totals: np.ndarray) -> float:
        """Estimated absolute error of any entry of the sums, relative to ``e^s`` (module docstring).

        ``coef`` (L+1, L+1, 2, k+1): the harmonic coefficients of the scaled
        weighted values ``wv`` (m, k+1) (:func:`_coefficients`); ``totals`` (k+1,)
        their column sums of ``|wv|``. Truncation bound plus round-off estimate,
        largest over the columns.
        """
        # ||a_l|| in the real orthonormal basis, per degree and column: (L+1, k+1).
        norms = np.sqrt((self._fold * coef**2).sum(axis=(0, 2)))
        n1 = self.degree + 1
        noise = _NOISE_TERMS * n1**2 * (self._mag @ norms) + _NOISE_KEYS * np.sqrt(n1) * totals
        return float((self._tail * totals + np.finfo(float).eps * noise).max())

    def __call__(
        self,
        weights: np.ndarray,
        values: np.ndarray | None = None,
        *,
        allreduce: Callable[[np.ndarray], np.ndarray] | None = None,
        dense: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(shift (n,), sums (n, k + 1))`` with ``S_i = exp(shift_i) sums_i``, as ``exp_kernel_sums``.

        For a measure split across MPI ranks (``points``/``weights`` being this
        rank's block): ``allreduce(a)`` sums an array over the ranks (the
        coefficients are sums over the keys), and ``dense(rows)`` returns the
        dense sums of the given query rows over the whole measure; every rank
        calls it once, with its own (possibly empty) rows.
        """
        w, v = _check_weights_values(weights, values, len(self.points), allow_zero=allreduce is not None)
        n, m = len(self.queries), len(self.points)
        k1 = 1 if v is None else v.shape[1] + 1
        total_w = float(w.sum()) if allreduce is None else float(allreduce(np.array([w.sum()]))[0])
        # Dividing by the total weight keeps the normaliser column <= 1 (shift s + log sum w).
        wv = (w / total_w)[:, None] * (np.ones((m, 1)) if v is None else np.c_[v, np.ones(m)])
        coef = _coefficients(self._p, wv) if m else np.zeros((self.degree + 1, self.degree + 1, 2, k1))
        totals = np.abs(wv).sum(axis=0)
        if allreduce is not None:
            coef, totals = allreduce(coef), allreduce(totals)
        if n == 0:
            sums, shift = np.zeros((0, k1)), np.zeros(0)
        else:
            sums = _evaluate(self._q, coef * self._spectral)
            shift = np.full(n, self.scale + np.log(total_w))
        # Rows whose normaliser the absolute error could spoil beyond _ROW_RTOL: dense.
        bad = np.flatnonzero(sums[:, -1] < self.error_bound(coef, totals) / _ROW_RTOL)
        if dense is not None:
            shift[bad], sums[bad] = dense(bad)
        elif bad.size:
            shift[bad], sums[bad] = exp_kernel_sums(self.queries[bad] @ self.B.T, self.points, w, v)
        return shift, sums


def harmonic_sums(
    B: np.ndarray,
    queries: np.ndarray,
    points: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-15,
) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as ``kernels.exp_kernel_sums(queries @ B.T, points, weights, values)``.

    Returns ``(shift (n,), sums (n, k + 1))`` for the sums ``S_i = sum_j w_j
    exp(<B x_i, y_j>) [v_j, 1] = exp(shift_i) sums_i``: ``queries`` (n, 3) and
    ``points`` (m, 3) on S^2 (to ``1e-11 / max(s, 1)``), ``weights`` (m,) >= 0
    with a positive total, ``values`` (m, k) or None (k = 0); ``B`` (3, 3)
    scaled orthogonal. ``ValueError`` naming the problem otherwise.

    Cost ``O((L + 1)^2 (n + m))`` with ``L = harmonic_degree(s, tol)`` (see
    :func:`harmonic_cost`), plus ``O(m)`` per row sent to the dense fix-up.
    Every row agrees with the dense sum to relative error ``<= 1e-10`` (module
    docstring). ``tol`` is the truncation tolerance relative to
    ``e^s sum w``: the default 1e-15 sits at the round-off level; a larger one
    lowers L a little and sends more rows to the dense fix-up (1e-12 sends
    every row with a normaliser below 1e-2 of ``e^s sum w``: all rows of a
    uniform measure at s = 50).
    """
    return HarmonicPlan(B, queries, points, tol=tol, memory=0)(weights, values)
