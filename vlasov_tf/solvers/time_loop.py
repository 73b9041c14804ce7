"""The time bookkeeping every solver shares: output times, switches, resume points, snapshots, progress.

A run goes from ``t0`` (0, or a resume point) to ``T`` through *stops*: the schedule's switches
(where the parameters change; no step straddles one) and the output times (where a snapshot is
taken; every solver lands on them exactly). Times closer than :data:`TIME_RTOL` ``* T`` are the
same time: sums such as ``0.1 + 0.2`` land there by rounding only. A run resumes only at a stop,
and then takes the steps a run from 0 takes after it, so a resumed run is bit for bit the
uninterrupted one (the solvers' tests check this).

:class:`TimeLoop` holds the stops and the outputs still to come; each solver asks it for the
next stop (:meth:`~TimeLoop.next_stop`), the outputs due at its time (:meth:`~TimeLoop.due`),
stores its snapshots through it (:meth:`~TimeLoop.store`) and draws its bar
(:meth:`~TimeLoop.time_bar`).

What a run reports to are :class:`Tracker` s, in order: at every output (the state, and the steps
taken and rejected since the previous one) and after every step. :class:`Callback` and
:class:`StepCounts` adapt the solvers' ``callback=`` and ``step_counts=`` functions;
:class:`ProgressBar` draws the bar in model time. A solver passes them on rank 0 only.

Design notes: docs/numerics.md §2.8; docs/design.md §5 (resume is bit-exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlasov_tf.logs import TIME_BAR, Progress

__all__ = [
    "TIME_RTOL",
    "Callback",
    "ProgressBar",
    "StepCounts",
    "TimeLoop",
    "Tracker",
    "output_times",
    "trackers_of",
]

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


class Tracker:
    """What a run reports to; every hook does nothing unless a subclass overrides it.

    ``start(t0, T)`` before the first step, ``at_step(t, dt)`` after every accepted step (``t``
    the time reached), ``at_output(t, state, taken, rejected)`` at every output time (``state``
    the solver's snapshot; the steps accepted and rejected since the previous output, 0 where a
    solver does not count them), ``finish()`` at the end, also of a run that failed.
    """

    def start(self, t0: float, T: float) -> None:
        pass

    def at_step(self, t: float, dt: float) -> None:
        pass

    def at_output(self, t: float, state: Any, taken: int, rejected: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Callback(Tracker):
    """``fn(t, state)`` at every output (a solver's ``callback=``)."""

    fn: Callable[[float, Any], None]

    def at_output(self, t: float, state: Any, taken: int, rejected: int) -> None:
        self.fn(t, state)


@dataclass
class StepCounts(Tracker):
    """``fn(t, taken, rejected)`` at every output (the grid's ``step_counts=``)."""

    fn: Callable[[float, int, int], None]

    def at_output(self, t: float, state: Any, taken: int, rejected: int) -> None:
        self.fn(t, taken, rejected)


@dataclass
class ProgressBar(Tracker):
    """A job's progress over [t0, T] in model time, advanced by every step: logged every minute
    (:class:`vlasov_tf.logs.Progress`), and a bar on stderr when ``bar``."""

    desc: str
    bar: bool = True
    _bar: Progress | None = field(default=None, repr=False)

    def start(self, t0: float, T: float) -> None:
        self._bar = Progress(T, initial=t0, desc=self.desc, bar=self.bar, bar_format=TIME_BAR)

    def at_step(self, t: float, dt: float) -> None:
        if self._bar is not None:
            self._bar.update(dt)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()


def trackers_of(
    given: Iterable[Tracker] = (),
    callback: Callable[[float, Any], None] | None = None,
    step_counts: Callable[[float, int, int], None] | None = None,
) -> list[Tracker]:
    """The trackers of a solver's keywords: ``step_counts``, then ``callback`` (the counts before
    the snapshot: a run killed between the two recounts them), then the ``given`` ones."""
    out: list[Tracker] = [] if step_counts is None else [StepCounts(step_counts)]
    return out + ([] if callback is None else [Callback(callback)]) + list(given)


@dataclass
class TimeLoop:
    """The stops of a run on [t0, T] and the outputs still to come.

    Attributes
    ----------
    T : final time.
    stops : (s,) switches and output times from 0 to T, increasing; times within ``tol`` of the
        one before them are dropped (one stop).
    times : (n,) the output times at or after ``t0``: those the run returns.
    t0 : start (0, or the stop a run resumes from).
    tol : ``TIME_RTOL * T``.
    trackers : told of each stored snapshot (for example the run file's append) and of each step.
    snapshots : the stored states, in time order.
    """

    T: float
    stops: np.ndarray
    times: np.ndarray
    t0: float
    tol: float
    trackers: list[Tracker] = field(default_factory=list)
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
        trackers: Iterable[Tracker] = (),
    ) -> TimeLoop:
        """The loop of a run to ``T`` with parameter ``switches`` (including 0 and T), outputs at
        ``t_eval`` (checked by :func:`output_times`), from ``t0``: 0, or a switch or output time
        (else ``ValueError``: a run cannot resume between two stops). ``callback(t, state)``: a
        :class:`Callback` before the ``trackers``."""
        tol = TIME_RTOL * T
        times = output_times(t_eval, T)
        stops = np.union1d(switches, times)
        if t0 != 0.0 and not np.isclose(stops, t0, rtol=0, atol=tol).any():
            raise ValueError(f"t0 = {t0} is neither a switch nor an output time: cannot resume there")
        stops = stops[np.r_[True, np.diff(stops) > tol]]
        told = trackers_of(trackers, callback)
        return cls(float(T), stops, times[times >= t0 - tol], float(t0), tol, told)

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

    def store(self, t: float, state: Any, taken: int = 0, rejected: int = 0) -> None:
        """Keep ``state`` as the snapshot at ``t`` and tell the trackers, with the steps ``taken``
        and ``rejected`` since the previous output."""
        self.snapshots.append(state)
        for tracker in self.trackers:
            tracker.at_output(t, state, taken, rejected)

    def stepped(self, t: float, dt: float) -> None:
        """Tell the trackers of a step of ``dt`` that reached ``t``."""
        for tracker in self.trackers:
            tracker.at_step(t, dt)

    @contextmanager
    def tracking(self) -> Iterator[TimeLoop]:
        """Start the trackers, and finish them however the block ends."""
        for tracker in self.trackers:
            tracker.start(self.t0, self.T)
        try:
            yield self
        finally:
            for tracker in self.trackers:
                tracker.finish()

    def time_bar(self, enabled: bool, desc: str) -> Progress:
        """A job's progress over [t0, T] in model time (update it by the time stepped): logged every
        minute, and a bar when ``enabled``."""
        return Progress(self.T, initial=self.t0, desc=desc, bar=enabled, bar_format=TIME_BAR)
