"""Quantities derived from read-only point arrays, computed once per array.

A finite-volume grid sums over the same cell centres at the same face midpoints at
every stage (mesh arrays are read-only), so their directions, angles and norms need
not be recomputed each time. A read-only array is taken to be immutable: its derived
quantities are kept, keyed by the array's identity, until the array is freed.
Writable arrays (tokens that move) are never cached.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

import numpy as np

__all__ = ["derived", "frozen"]

T = TypeVar("T")

#: Most entries kept (oldest dropped first): a schedule's blocks each derive their own queries.
MAX_ENTRIES = 64

_store: dict[tuple[int, str], tuple[weakref.ref, object]] = {}


def derived(arr: np.ndarray, name: str, fn: Callable[[np.ndarray], T]) -> T:
    """``fn(arr)``, remembered under ``name`` while ``arr`` lives if ``arr`` is read-only."""
    if arr.flags.writeable:
        return fn(arr)
    key = (id(arr), name)
    hit = _store.get(key)
    if hit is not None and hit[0]() is arr:
        return hit[1]  # type: ignore[return-value]
    value = fn(arr)
    while len(_store) >= MAX_ENTRIES:
        _store.pop(next(iter(_store)))
    _store[key] = (weakref.ref(arr, lambda _, key=key: _store.pop(key, None)), value)
    return value


def frozen(arr: np.ndarray) -> np.ndarray:
    """``arr`` marked read-only (for derived arrays that are themselves cache keys)."""
    arr.flags.writeable = False
    return arr
