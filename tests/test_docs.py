"""The documentation site builds with warnings as errors (docs/conf.py: references checked).

Needs the ``docs`` extra (the README's test command and .ci/run install it); without it the
build is skipped with that reason. The build executes the tutorials (examples/), so it is the
test that they run and draw their figures: about 2.5 minutes on 2 busy cores (1 minute of CPU).
"""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# The build executes every tutorial, the learned Transformer's (examples/07) with JAX and optax.
NEEDED = ("sphinx", "pydata_sphinx_theme", "myst_parser", "sphinx_gallery", "jax", "optax")
missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"the docs extra is not installed (pip install -e '.[docs]'): no {missing}"
)


def sphinx_build(src: Path, out: Path) -> subprocess.CompletedProcess:
    """A fresh strict build (-W: warnings are errors; -E: every page reread)."""
    # The tutorials run again even where an earlier build left their results (docs/auto_examples).
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
           "-D", "sphinx_gallery_conf.run_stale_examples=True",
           "-d", str(out / "doctrees"), str(src), str(out / "html")]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = sphinx_build(ROOT / "docs", out)
    assert result.returncode == 0, result.stderr[-6000:]
    return out / "html"


def test_site_builds_strictly_with_api_and_tutorials(site):
    # The API reference holds the docstrings themselves, not empty stubs.
    api = (site / "api" / "vlasov_tf.solvers.particles.html").read_text()
    assert "Move N weighted tokens by the flow" in api
    assert 'id="vlasov_tf.solvers.particles.solve_particles"' in api
    # Every public module has its page.
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    from api_pages import public_modules

    pages = {p.stem for p in (site / "api").glob("vlasov_tf*.html")}
    assert set(public_modules()) <= pages and len(pages) > 50
    # The theory pages are there, and the case-file reference.
    for page in ("equations", "numerics", "kernel_sums", "design", "interpolation", "case_files"):
        assert (site / f"{page}.html").is_file(), page
    # Each tutorial ran and its figures are on its page.
    tutorials = sorted((site / "auto_examples").glob("[0-9][0-9]_*.html"))
    scripts = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))
    assert [p.stem for p in tutorials] == [p.stem for p in scripts] and len(tutorials) >= 7
    for page in tutorials:
        figures = [f for f in (site / "_images").glob(f"sphx_glr_{page.stem}_*.png")]
        assert figures, f"{page.name} shows no figure"


def test_broken_reference_and_bad_docstring_fail_the_build(tmp_path):
    """The strict settings catch what they are there for: a reference to a name that does not
    exist and a docstring that is not valid reStructuredText each fail a build."""
    (tmp_path / "src").mkdir()
    (tmp_path / "broken_docs.py").write_text(textwrap.dedent('''
        """A module."""

        def referring():
            """Uses :func:`vlasov_tf.solvers.particles.no_such_function`."""

        def unrendered():
            """Mass |m| of a cell."""
    '''))
    (tmp_path / "src" / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        __file__ = {str(ROOT / "docs" / "conf.py")!r}
        exec(compile(open(__file__).read(), __file__, "exec"))
        drop = ("sphinx_gallery.gen_gallery", "api_pages", "case_reference")
        extensions = [e for e in extensions if e not in drop]
    """))
    (tmp_path / "src" / "index.rst").write_text("Test\n====\n\n.. automodule:: broken_docs\n   :members:\n")
    result = sphinx_build(tmp_path / "src", tmp_path / "out")
    assert result.returncode != 0
    assert "no_such_function" in result.stderr and "reference target not found" in result.stderr
    assert "Undefined substitution referenced" in result.stderr
