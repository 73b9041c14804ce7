"""The package's layout holds (docs/design.md §8): no import cycles, no private names imported
across modules, modules of one idea each, every subpackage installed by a wheel."""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: "No module over ~600 lines unless one idea needs it" (CONTRIBUTING.md).
MAX_LINES = 660


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> path of every module of ``root/vlasov_tf`` (the shipped data left out)."""
    out = {}
    for path in sorted((root / "vlasov_tf").rglob("*.py")):
        if "shipped" in path.parts:
            continue
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module, imported name or None) of every import of a package module in module ``name``, at
    any depth (a function's lazy import included), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, None) if sub in known else (base, alias.name))
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return [(m, n) for m, n in found if m in known and m != name]


def import_cycle(known: dict[str, Path]) -> list[str] | None:
    """A cycle of imports (depth-first search for a back edge), or None."""
    graph = {m: sorted({dep for dep, _ in imports(m, p, known)}) for m, p in known.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep in graph[m]:
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    return next((c for m in graph if m not in state and (c := visit(m))), None)


def private_imports(known: dict[str, Path]) -> list[str]:
    return [
        f"{m} imports {name} from {dep}"
        for m, p in known.items()
        for dep, name in imports(m, p, known)
        if name and name.startswith("_") and not name.startswith("__")
    ]


def test_no_import_cycles():
    assert import_cycle(modules(ROOT)) is None


def test_no_private_name_is_imported_across_modules():
    assert private_imports(modules(ROOT)) == []


def test_modules_hold_one_idea():
    long = {m: n for m, p in modules(ROOT).items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_subpackage_is_installed():
    """A subpackage missing from pyproject's list would be left out of a wheel (test_install builds one)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in modules(ROOT).items() if p.name == "__init__.py"}
    assert packages <= listed, sorted(packages - listed)


def test_the_checks_see_a_lazy_cycle_and_a_private_import(tmp_path):
    pkg = tmp_path / "vlasov_tf"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from vlasov_tf.sub.b import _helper\n")
    (pkg / "sub" / "b.py").write_text("def _helper():\n    from .. import a\n")
    known = modules(tmp_path)
    assert import_cycle(known) == ["vlasov_tf.a", "vlasov_tf.sub.b", "vlasov_tf.a"]
    assert private_imports(known) == ["vlasov_tf.a imports _helper from vlasov_tf.sub.b"]
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n"
    (pkg / "sub" / "b.py").write_text(typing_only)
    assert import_cycle(modules(tmp_path)) is None
