"""Opt-in wall-time accounting of the solvers' parts, for benchmarks (nothing is recorded unless asked)::

    from vlasov_tf import profiling

    with profiling.profile() as prof:
        solve_grid(...)
    prof.seconds["dense"], prof.counts["dense.pairs"], prof.seconds["halo"]

Sections: ``"dense"`` every dense kernel sum
(:func:`~vlasov_tf.kernels.dense.exp_kernel_sums`, counts ``dense.pairs``),
``"sums.<method>"`` every :func:`~vlasov_tf.kernels.kernel_sums` call by the method that
ran it, ``"ring"`` whole dense ring calls under MPI (counts ``ring.calls``), ``"ring.merge"``
their log-sum-exp merges (counts ``ring.merge.rows``), ``"halo"`` halo exchanges. Sections
nest (a ring call contains its dense sums), so they do not add up to the run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

__all__ = ["Profile", "active", "profile", "section"]


@dataclass
class Profile:
    """Accumulated wall seconds per section and counters (pairs, calls, rows)."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


_active: list[Profile] = []


@contextmanager
def profile() -> Iterator[Profile]:
    """Record the sections run inside the block (in this process) into a new :class:`Profile`."""
    prof = Profile()
    _active.append(prof)
    try:
        yield prof
    finally:
        _active.remove(prof)


def active() -> bool:
    """Whether a profile is recording (a hot loop may skip opening its sections when not)."""
    return bool(_active)


def section(name: str, **counts: float) -> AbstractContextManager[None]:
    """Time the block as section ``name`` and add ``counts`` (as ``name.key``) to every active profile.

    With no active profile this is one shared do-nothing context manager (~0.2 us a block: the
    solvers' inner loops open a few sections per step), not a new generator.
    """
    if not _active:
        return _NOTHING
    return _timed(name, counts)


_NOTHING = nullcontext()


@contextmanager
def _timed(name: str, counts: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - t0
        for prof in _active:
            prof.seconds[name] += elapsed
            for key, value in counts.items():
                prof.counts[f"{name}.{key}"] += value
