"""How much memory a user's number asks for, checked before anything is allocated or written.

Every entry point that allocates by a number a user gives (mesh levels and cells, token counts,
output counts, ensemble sizes) estimates the bytes it will need from the per-item peaks measured
below (with a margin of about 2 to 3) and calls :func:`check_memory`, which refuses in one line
naming the number when that is more than the memory available now: a ``sphere_mesh(9)`` refined
level after level, wrote 2 GB of files and then exhausted the machine; a circle of 1e9 cells ended
in numpy's memory error after taking many GiB.

The memory available is Linux's ``MemAvailable`` (``/proc/meminfo``: free memory plus what the
kernel can reclaim), read directly rather than through psutil: one line of a file, no dependency;
elsewhere the physical memory (``sysconf``); where neither is known nothing is refused.
"""

from __future__ import annotations

import os

__all__ = [
    "BYTES_PER_CELL",
    "BYTES_PER_CIRCLE_CELL",
    "BYTES_PER_CIRCLE_POINT",
    "BYTES_PER_COST_PAIR",
    "BYTES_PER_NODE_PAIR_DIM",
    "BYTES_PER_OT_PAIR",
    "BYTES_PER_QUANTILE",
    "BYTES_PER_SAMPLE_DIM",
    "BYTES_PER_SPHERE_CELL",
    "BYTES_PER_TOKEN_DIM",
    "TooLarge",
    "available_memory",
    "check_memory",
]

#: Bytes a solver's job holds per grid cell, with a margin of about 3 over the measured peak
#: (ru_maxrss, a step of SA beta = 4, quadratic scheme: 2.9 kB a cell from sphere level 2 to 3).
BYTES_PER_CELL = 8192
#: Bytes a particle job holds per token and dimension, with a margin of about 3 over the measured
#: peak (the adaptive reference on S^2: 0.87 kB a token from 2e4 to 2e5).
BYTES_PER_TOKEN_DIM = 1024
#: Peak bytes a sphere mesh level takes while it is refined from the level below, per cell of the
#: new level: 1.18 kB measured (ru_maxrss, level 4 -> 5 in memory, 1105920 cells; the mesh itself
#: holds 176 B a cell), with a margin of 1.7.
BYTES_PER_SPHERE_CELL = 2048
#: Peak bytes of ``circle_mesh(M)`` per cell: 232 B measured (ru_maxrss, M = 1e7; its arrays
#: hold 112 B a cell), with a margin of 2.2.
BYTES_PER_CIRCLE_CELL = 512
#: Peak bytes of drawing samples of an initial measure, per sample and coordinate: 30-35 B
#: measured (ru_maxrss, 2e6 samples on S^2 of a three-bump vMF mixture and of a perturbed uniform
#: law by rejection), with a margin of about 3.
BYTES_PER_SAMPLE_DIM = 96
#: Peak bytes of the circle's quantile points per point: 529 B measured (2e6 points of a vMF
#: mixture: the Gauss-Legendre nodes of each arc and the Newton steps), with a margin of 2.
BYTES_PER_QUANTILE = 1024
#: Peak bytes of ``equally_spaced_circle`` per point: 40 B measured (2e6 points), margin 2.4.
BYTES_PER_CIRCLE_POINT = 96
#: Peak bytes of an (N, M) geodesic cost matrix per pair: 16 B measured (the matrix and one
#: temporary, N = M = 2500), with a margin of 2.
BYTES_PER_COST_PAIR = 32
#: Peak bytes of exact optimal transport (``ot.emd2``) per pair of atoms: 41 B measured (the cost
#: matrix, its temporaries and POT's plan, N = M = 2500 on S^2 and in R^3), with a margin of 2.3.
BYTES_PER_OT_PAIR = 96
#: Peak bytes of the interpolation's waypoint planner per pair of nodes and per dimension or
#: obstacle (its midpoints and their distances to the obstacles): 14 B measured (2000 nodes, d = 3
#: and 8, 3 and 20 obstacles), with a margin of 2.3.
BYTES_PER_NODE_PAIR_DIM = 32


class TooLarge(ValueError):
    """A number a user gave needs more memory than this machine has available."""


def available_memory() -> int:
    """Bytes of memory available to a new job now (Linux ``MemAvailable``: free memory plus what
    the kernel can reclaim), else the physical memory; 0 if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_memory(need: float, what: str, *, hint: str = "") -> None:
    """:class:`TooLarge` (a ``ValueError``), naming ``what`` (the number asked for), when ``need``
    bytes are more than :func:`available_memory`; nothing when it fits or is unknown."""
    memory = available_memory()
    if memory and need > memory:
        raise TooLarge(
            f"{what} needs about {_gib(need)} GiB, more than the {memory / 2**30:.1f} GiB "
            f"available on this machine{hint}"
        )


def _gib(nbytes: float) -> str:
    gib = nbytes / 2**30
    return f"{gib:.0f}" if gib >= 100 else f"{gib:.3g}"
