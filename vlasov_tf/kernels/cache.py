"""Quantities derived from read-only point arrays, computed once per array.

A finite-volume grid sums over the same cell centres at the same face midpoints at
every stage (mesh arrays are read-only), so their directions, angles and norms need
not be recomputed each time. A read-only array is taken to be immutable: its derived
quantities are kept, keyed by the array's identity, until the array is freed (or the
least recently used of more than ``MAX_ENTRIES`` is dropped). Writable arrays (tokens
that move), and read-only views of writable ones, are never cached.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import numpy as np

__all__ = ["MAX_ENTRIES", "cached_names", "derived", "frozen", "immutable"]

T = TypeVar("T")

#: Most entries kept (the least recently used dropped first): a schedule's blocks each derive
#: their own queries.
MAX_ENTRIES = 64

_store: OrderedDict[tuple[int, str], tuple[weakref.ref, object]] = OrderedDict()
_lock = threading.RLock()  # re-entrant: dropping an entry can free arrays whose callbacks forget theirs


def immutable(arr: np.ndarray) -> bool:
    """Read-only, and so is every array it views (a read-only view of a writable array can change).

    What :func:`derived` caches for; a caller may test it first to skip building a cache key.
    """
    a: np.ndarray | None = arr
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return True


def derived(arr: np.ndarray, name: str, fn: Callable[[np.ndarray], T]) -> T:
    """``fn(arr)``, remembered under ``name`` while ``arr`` lives if ``arr`` is read-only."""
    if not immutable(arr):
        return fn(arr)
    key = (id(arr), name)
    with _lock:
        hit = _store.get(key)
        if hit is not None and hit[0]() is arr:
            _store.move_to_end(key)
            return hit[1]  # type: ignore[return-value]
    value = fn(arr)
    with _lock:
        while len(_store) >= MAX_ENTRIES:
            _store.popitem(last=False)
        _store[key] = (weakref.ref(arr, lambda _: _forget(key)), value)
    return value


def cached_names(arr: np.ndarray) -> list[str]:
    """The names of the quantities kept for ``arr`` (for tests and curious users)."""
    with _lock:
        return [name for (ident, name), (ref, _) in _store.items() if ident == id(arr) and ref() is arr]


def _forget(key: tuple[int, str]) -> None:
    with _lock:
        _store.pop(key, None)


def frozen(arr: np.ndarray) -> np.ndarray:
    """``arr`` marked read-only (for derived arrays that are themselves cache keys)."""
    arr.flags.writeable = False
    return arr
