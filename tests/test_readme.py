"""The README's and the user guide's Python examples run as printed (docs that rot fail here)."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
#: The pages whose Python examples run, in this order as one session (a page may use what an
#: earlier one defined).
PAGES = ["README.md"] + [
    f"docs/guide/{name}.md"
    for name in (
        "runs parallel studies interpolate learning python noise kinetic kinetic_particles "
        "tests benchmarks layout"
    ).split()
]


def test_every_guide_page_is_run():
    assert {f"docs/guide/{p.name}" for p in (ROOT / "docs" / "guide").glob("*.md")} <= set(PAGES)


def test_readme_examples_run(capsys):
    namespace: dict = {}  # the blocks read as one session
    ran = 0
    for page in PAGES:
        text = (ROOT / page).read_text()
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
            exec(compile(block, page, "exec"), namespace)
            ran += 1
    assert ran >= 3, "the README and the guide lost their Python examples"
    out = capsys.readouterr().out
    assert "(5, 1000, 3) 200" in out and "2 (2, 1080)" in out


def test_readme_test_command_is_what_ci_runs():
    """The README's install-and-test line is the command of .ci/run, word for word."""
    root = Path(__file__).parents[1]
    ci = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"    {ci}\n" in (root / "README.md").read_text()
    assert ci in (root / "CONTRIBUTING.md").read_text().replace("\n  ", " ")


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or an attribute of the longest module prefix of it."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_readme_and_docs_name_modules_that_exist():
    """Every `vlasov_tf/...py` path and dotted `vlasov_tf.x.y` module the README, CONTRIBUTING and
    docs/ name exists (a move must update them)."""
    root = Path(__file__).parents[1]
    texts = [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("**/*.md"))]
    missing = []
    for path in texts:
        text = path.read_text()
        for name in set(re.findall(r"\bvlasov_tf/[\w/]+\.py\b", text)):
            if not (root / name).is_file():
                missing.append(f"{path.name}: {name}")
        for dotted in sorted(set(re.findall(r"\bvlasov_tf(?:\.[a-z_]+)+", text))):
            if not resolves(dotted):
                missing.append(f"{path.name}: {dotted}")
    assert not missing, missing
