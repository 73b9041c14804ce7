"""The README's Python examples run as printed (docs that rot fail here)."""

import re
from pathlib import Path


def test_readme_examples_run(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README lost its Python example"
    namespace: dict = {}  # the blocks read as one session
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "(5, 1000, 3) 200" in out and "2 (2, 1080)" in out


def test_readme_test_command_is_what_ci_runs():
    """The README's install-and-test line is the command of .ci/run, word for word."""
    root = Path(__file__).parents[1]
    ci = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"    {ci}\n" in (root / "README.md").read_text()
    assert ci in (root / "CONTRIBUTING.md").read_text().replace("\n  ", " ")
