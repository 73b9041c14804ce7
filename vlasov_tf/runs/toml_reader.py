"""Typed access to parsed TOML whose every error names the file and the key.

Case files (:mod:`vlasov_tf.runs.cases`) and interpolation cases
(:mod:`vlasov_tf.interpolation.cases`) read their values through :class:`TomlReader`; a bad
value is one ``ValueError('<file>: <key> <problem>')``, with the closest allowed key suggested
for a misspelt one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from vlasov_tf.geometry.measures import SPHERE_ATOL

__all__ = ["TomlReader", "show_value", "toml_type"]


def toml_type(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return f"a {type(v).__name__}"


def show_value(v: Any) -> str:
    """A value for an error message: numbers as they are, strings and booleans with their type."""
    if isinstance(v, bool | str):
        return f"{toml_type(v)} ({v!r})"
    if isinstance(v, list | dict):
        return toml_type(v)
    return repr(v)


class TomlReader:
    """Typed access to parsed TOML; every failure is ``ValueError('<source>: <key> ...')``."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ValueError(f"{self.source}: {key} {problem}")

    def missing(self, key: str, hint: str = "") -> NoReturn:
        raise ValueError(f"{self.source}: missing required key {key}" + (f" ({hint})" if hint else ""))

    def table(
        self, v: Any, key: str, allowed: Sequence[str], required: Sequence[str] = (), what: str = ""
    ) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(key, f"must be a table, got {show_value(v)}")
        for name in v:
            if name not in allowed:
                full = f"{key}.{name}" if key else name
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f"in {what or f'[{key}]'}" if key else "at the top level"
                raise ValueError(
                    f"{self.source}: unknown key {full} (allowed {where}: {', '.join(allowed)}){hint}"
                )
        for name in required:
            if name not in v:
                self.missing(f"{key}.{name}" if key else name)
        return v

    def real(self, v: Any, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.fail(key, f"must be a number, got {show_value(v)}")
        x = float(v)
        if not math.isfinite(x):
            self.fail(key, f"must be finite, got {x!r}")
        return x

    def positive(self, v: Any, key: str) -> float:
        x = self.real(v, key)
        if not x > 0:
            self.fail(key, f"must be > 0, got {x!r}")
        return x

    def integer(self, v: Any, key: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"must be an integer, got {show_value(v)}")
        if lo is not None and v < lo:
            self.fail(key, f"must be >= {lo}, got {v}" if hi is None else f"must lie in {lo}..{hi}, got {v}")
        if hi is not None and v > hi:
            self.fail(
                key, f"must lie in {lo}..{hi}, got {v}" if lo is not None else f"must be <= {hi}, got {v}"
            )
        return v

    def string(self, v: Any, key: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(v, str):
            self.fail(key, f"must be a string, got {show_value(v)}")
        if choices is not None and v not in choices:
            self.fail(key, f"must be one of {', '.join(repr(c) for c in choices)}; got {v!r}")
        return v

    def array(self, v: Any, key: str, length: int | None = None, what: str = "") -> list:
        if not isinstance(v, list):
            self.fail(key, f"must be an array{what}, got {show_value(v)}")
        if length is not None and len(v) != length:
            self.fail(key, f"must have {length} {'entry' if length == 1 else 'entries'}{what}, got {len(v)}")
        if not v:
            self.fail(key, "must not be empty")
        return v

    def reals(self, v: Any, key: str, length: int | None = None, what: str = "") -> np.ndarray:
        return np.array([self.real(x, f"{key}[{i}]") for i, x in enumerate(self.array(v, key, length, what))])

    def matrix(self, v: Any, key: str, rows: int, cols: int) -> np.ndarray:
        shape = f" ({rows} rows of {cols} numbers)"
        return np.array(
            [self.reals(r, f"{key}[{i}]", cols) for i, r in enumerate(self.array(v, key, rows, shape))]
        )

    def unit(self, v: Any, key: str, d: int) -> np.ndarray:
        x = self.reals(v, key, d, f" (a unit vector in R^{d})")
        norm = float(np.linalg.norm(x))
        if abs(norm - 1.0) > SPHERE_ATOL:
            self.fail(key, f"must be a unit vector (|x| = 1 to {SPHERE_ATOL:g}), got |x| = {norm:.9g}")
        return x / norm

    def counts(self, v: Any, key: str, lo: int, hi: int | None = None) -> tuple[int, ...]:
        """An integer or a strictly increasing array of integers in [lo, hi]."""
        items = (
            [v] if isinstance(v, int) and not isinstance(v, bool) else self.array(v, key, what=" of integers")
        )
        keys = [key] if not isinstance(v, list) else [f"{key}[{i}]" for i in range(len(items))]
        out = tuple(self.integer(x, k, lo, hi) for x, k in zip(items, keys, strict=True))
        for i in range(1, len(out)):
            if out[i] <= out[i - 1]:
                self.fail(
                    f"{key}[{i}]", f"must be larger than {key}[{i - 1}] = {out[i - 1]} (strictly increasing)"
                )
        return out


# -- the sections -------------------------------------------------------------------------------------
