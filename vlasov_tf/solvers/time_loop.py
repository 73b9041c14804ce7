"""The time bookkeeping every solver shares: output times, switches, resume points, snapshots, progress.

A run goes from ``t0`` (0, or a resume point) to ``T`` through *stops*: the schedule's switches
(where the parameters change; no step straddles one) and the output times (where a snapshot is
taken; every solver lands on them exactly). Times closer than :data:`TIME_RTOL` ``* T`` are the
same time: sums such as ``0.1 + 0.2`` land there by rounding only. A run resumes only at a stop,
and then takes the steps a run from 0 takes after it, so a resumed run is bit for bit the
uninterrupted one (the solvers' tests check this).

:class:`TimeLoop` holds the stops and the outputs still to come; each solver asks it for the
next stop (:meth:`~TimeLoop.next_stop`), the outputs due at its time (:meth:`~TimeLoop.due`),
stores its snapshots through it (:meth:`~TimeLoop.store`, which calls the run's callback) and
draws its bar (:meth:`~TimeLoop.time_bar`).

Design notes: docs/numerics.md §2.8; docs/design.md §5 (resume is bit-exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vlasov_tf.logs import TIME_BAR

__all__ = ["TIME_RTOL", "TimeLoop", "output_times"]

#: Times closer than this fraction of T are one time.
TIME_RTOL = 1e-12


def output_times(t_eval: Sequence[float] | np.ndarray | None, T: float) -> np.ndarray:
    """(n,) checked output times: ``t_eval`` (default ``[0, T]``), finite, strictly increasing, in [0, T].

    A rounding-level overshoot of T (e.g. from ``np.linspace`` sums) is clipped to T.
    """
    times = np.array([0.0, T] if t_eval is None else t_eval, dtype=float).ravel()
    if times.size == 0 or not np.isfinite(times).all():
        raise ValueError(f"output times must be a non-empty list of finite numbers; got {t_eval}")
    if (np.diff(times) <= 0).any():
        raise ValueError("output times must be strictly increasing")
    if times[0] < 0 or times[-1] > T * (1 + TIME_RTOL):
        raise ValueError(f"output times must lie in [0, T] = [0, {T}]; got [{times[0]}, {times[-1]}]")
    return np.minimum(times, T)


@dataclass
class TimeLoop:
    """The stops of a run on [t0, T] and the outputs still to come.

    T : final time.
    stops : (s,) switches and output times from 0 to T, increasing; times within ``tol`` of the
        one before them are dropped (one stop).
    times : (n,) the output times at or after ``t0``: those the run returns.
    t0 : start (0, or the stop a run resumes from).
    tol : ``TIME_RTOL * T``.
    callback : ``callback(t, state)`` after each stored snapshot (for example the run file's append).
    snapshots : the stored states, in time order.
    """

    T: float
    stops: np.ndarray
    times: np.ndarray
    t0: float
    tol: float
    callback: Callable[[float, Any], None] | None = None
    snapshots: list[Any] = field(default_factory=list)
    _next: int = 0

    @classmethod
    def start(
        cls,
        T: float,
        switches: np.ndarray,
        t_eval: Sequence[float] | np.ndarray | None,
        t0: float = 0.0,
        callback: Callable[[float, Any], None] | None = None,
    ) -> TimeLoop:
        """The loop of a run to ``T`` with parameter ``switches`` (including 0 and T), outputs at
        ``t_eval`` (checked by :func:`output_times`), from ``t0``: 0, or a switch or output time
        (else ``ValueError``: a run cannot resume between two stops)."""
        tol = TIME_RTOL * T
        times = output_times(t_eval, T)
        stops = np.union1d(switches, times)
        if t0 != 0.0 and not np.isclose(stops, t0, rtol=0, atol=tol).any():
            raise ValueError(f"t0 = {t0} is neither a switch nor an output time: cannot resume there")
        stops = stops[np.r_[True, np.diff(stops) > tol]]
        return cls(float(T), stops, times[times >= t0 - tol], float(t0), tol, callback)

    def next_stop(self, t: float) -> float:
        """The first stop after ``t`` (beyond the tolerance): where the current piece ends."""
        return float(self.stops[np.searchsorted(self.stops, t + self.tol, side="right")])

    def finished(self, t: float) -> bool:
        """Whether ``t`` is T (within the tolerance)."""
        return t >= self.T - self.tol

    def due(self, t: float) -> Iterator[float]:
        """The output times reached at ``t`` (within the tolerance) and not yet taken, in order."""
        while self._next < len(self.times) and self.times[self._next] <= t + self.tol:
            self._next += 1
            yield float(self.times[self._next - 1])

    def rest(self) -> Iterator[float]:
        """Every output time not yet taken (the end of a run that steps to T itself)."""
        yield from self.due(np.inf)

    def store(self, t: float, state: Any) -> None:
        """Keep ``state`` as the snapshot at ``t`` and pass it to the callback."""
        self.snapshots.append(state)
        if self.callback is not None:
            self.callback(t, state)

    def time_bar(self, enabled: bool, desc: str) -> tqdm:
        """A progress bar over [t0, T] in model time (update it by the time stepped)."""
        return tqdm(
            total=self.T, initial=self.t0, disable=not enabled, desc=desc, unit="t", bar_format=TIME_BAR
        )
