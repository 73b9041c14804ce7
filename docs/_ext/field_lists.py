"""Sphinx extension: the docstrings' ``name : what it is`` entries read as name and description.

vlasov_tf's numpy-style sections (Parameters, Returns, Attributes, ...) write each entry as
``name : (shape) meaning`` on one line, continued indented, rather than numpydoc's
``name : type`` line followed by the description. Before napoleon reads a docstring, such an entry
becomes ``name`` with the rest as its description, so the site shows "name -- (shape) meaning"
instead of taking the meaning for a type. Nothing else is touched.
"""

from __future__ import annotations

import re
from typing import Any

# Returns sections are left alone: there a lone word is read as a type.
SECTIONS = {"Parameters", "Other Parameters", "Attributes"}
ENTRY = re.compile(r"^(?P<names>\*{0,2}\w+(?:, \*{0,2}\w+)*) : (?P<rest>.+)$")


def split_entries(lines: list[str]) -> None:
    """Rewrite ``lines`` in place (the autodoc-process-docstring contract)."""
    out: list[str] = []
    in_section = False
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() in SECTIONS and set(nxt.strip()) == {"-"}:
            in_section = True
            out.append(line)
            continue
        if in_section and line and not line[0].isspace() and not set(line.strip()) <= {"-"}:
            match = ENTRY.match(line)
            if match:
                out += [match["names"], "    " + match["rest"]]
                continue
            if not line.startswith(" "):
                in_section = line.strip() == ""
        out.append(line)
    lines[:] = out


def process(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    split_entries(lines)


def setup(app: Any) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.napoleon")
    # Napoleon listens at the default priority 500: this runs first.
    app.connect("autodoc-process-docstring", process, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
