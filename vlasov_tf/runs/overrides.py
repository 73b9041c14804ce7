"""A case's ``--set`` overrides: read from the command line, and spelled into the run file's name.

Shared by the commands of :mod:`vlasov_tf.cli` and ``vlasov-tf learn``
(:func:`vlasov_tf.learning.runner.learn_command`).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from typing import Any

__all__ = ["parse_overrides", "run_name"]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["model.beta=9", ...]`` -> ``{"model.beta": 9.0, ...}``: each value read as TOML (a bare
    word that is not TOML, such as ``linear``, as a string). ValueError names a malformed item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.beta=9")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
                raise ValueError(f"--set {item!r}: {value!r} is not a TOML value") from None
            out[key] = value
    return out


def run_name(case, name: str | None = None) -> str:
    """The run file's stem: ``name``, else the case name followed by each override as key-value
    (other ASCII characters than letters, digits, ``.``, ``_`` and ``-`` dropped, any other
    character as ``u`` and its code point: ``ß`` -> ``u00df``), so that the points of a sweep do not
    share a file."""
    if name is not None:
        return name
    parts = [case.name]
    for key, value in case.overrides:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text = "".join(c if c.isascii() else f"u{ord(c):04x}" for c in f"{key}-{text}")
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "", text.replace(", ", "_").replace(",", "_")))
    return "-".join(parts)
