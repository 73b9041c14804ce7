"""Sphinx extension: one API page per public module of vlasov_tf, written before the build reads.

Every module and package whose dotted name has no part starting with ``_`` gets ``api/<name>.rst``
with its docstring and its members (``__all__`` where the module has one). A name a module
re-exports from another is listed as a link to where it is defined, so each object is described
once and a stale re-export is a broken reference (a build error). The pages are generated
(git-ignored): nothing here is a second copy of the docstrings.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

PACKAGE = "vlasov_tf"
# Data travelling inside the package (cases, meshes), not code.
SKIP = ("vlasov_tf.shipped",)


def public_modules() -> list[str]:
    """Every public module and package of vlasov_tf, sorted."""
    pkg = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=PACKAGE + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.name.startswith(SKIP):
            continue
        names.append(info.name)
    return sorted(names)


def _top_level(mod: Any) -> tuple[set[str], dict[str, str]]:
    """The names a module's source defines at its top level, and those it imports: name -> module."""
    tree = ast.parse(inspect.getsource(mod))
    package = mod.__name__ if hasattr(mod, "__path__") else mod.__name__.rpartition(".")[0]
    defined: set[str] = set()
    imported: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and node.module:
            source = node.module
            if node.level:  # relative: from .choice import ...
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}"
            imported |= {a.asname or a.name: source for a in node.names}
    return defined, imported


def _link(obj: Any, name: str, source: str) -> str:
    if inspect.ismodule(obj):
        return f":mod:`{obj.__name__}`"
    if inspect.isclass(obj):
        return f":class:`{obj.__module__}.{obj.__qualname__}`"
    if inspect.isfunction(obj):
        return f":func:`{obj.__module__}.{obj.__qualname__}`"
    return f":data:`{source}.{name}`"


def module_page(name: str) -> str:
    mod = importlib.import_module(name)
    title = f"``{name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {name}"]
    exported = getattr(mod, "__all__", None)
    reexported: list[str] = []
    if exported is not None:
        defined, imported = _top_level(mod)
        names = [n for n in exported if not n.startswith("__")]
        own = [n for n in names if n in defined]
        reexported = [n for n in names if n not in defined]
        lines.append(f"   :members: {', '.join(own)}" if own else "   :no-members:")
        if reexported:
            lines += ["", "Also importable from here:", ""]
            lines += [f"- {_link(getattr(mod, n), n, imported.get(n, name))}" for n in reexported]
    children = [m for m in public_modules() if m.rpartition(".")[0] == name]
    if children:
        lines += ["", ".. toctree::", "   :maxdepth: 1", ""] + [f"   {c}" for c in children]
    return "\n".join(lines) + "\n"


def index_page() -> str:
    lines = [
        "API reference",
        "=============",
        "",
        "Generated from the docstrings of every public module (shapes and the mathematics are",
        "stated there). The package's front door, :mod:`vlasov_tf`, re-exports the models and the",
        "particle solver.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    lines += [f"   {m}" for m in public_modules() if m.count(".") <= 1]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    # Unchanged pages keep their time stamp: an incremental build rereads only what changed.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app: Any) -> None:
    out = Path(app.srcdir) / "api"
    out.mkdir(exist_ok=True)
    wanted = {f"{m}.rst" for m in public_modules()} | {"index.rst"}
    for stale in out.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    _write(out / "index.rst", index_page())
    for name in public_modules():
        _write(out / f"{name}.rst", module_page(name))


def canonical_name(dotted: str) -> str | None:
    """Where a re-exported name is defined (``vlasov_tf.kernels.kernel_sums`` ->
    ``vlasov_tf.kernels.choice.kernel_sums``), or None when ``dotted`` is no re-export."""
    module, _, name = dotted.rpartition(".")
    if not module.startswith(PACKAGE):
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    if not hasattr(mod, name) or name not in getattr(mod, "__all__", ()):
        return None
    obj = getattr(mod, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        target = f"{obj.__module__}.{obj.__qualname__}"
    else:
        defined, imported = _top_level(mod)
        if name in defined or name not in imported:
            return None
        target = f"{imported[name]}.{name}"
    return target if target != dotted else None


def resolve_reexport(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """A reference to a public re-export (the path users import) goes to the definition."""
    if node.get("refdomain") != "py":
        return None
    target = canonical_name(node["reftarget"])
    if target is None:
        return None
    domain = env.get_domain("py")
    node = node.deepcopy()
    node["reftarget"] = target
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, node, contnode)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    app.connect("missing-reference", resolve_reexport)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
