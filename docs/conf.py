"""Sphinx configuration of the vlasov_tf documentation site (build: see CONTRIBUTING.md).

The site builds offline: no intersphinx, no remote assets at build time. Warnings are errors
(``sphinx-build -W``) and cross-references are checked (``nitpicky``), so a broken
``:func:`` in a docstring fails the build (tests/test_docs.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the gallery draws without a display

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import vlasov_tf  # noqa: E402

project = "vlasov_tf"
author = "the vlasov_tf developers"
copyright = "the vlasov_tf developers"
version = release = vlasov_tf.__version__ if hasattr(vlasov_tf, "__version__") else "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' numpy-style Parameters / Returns sections
    "field_lists",  # docs/_ext: their ``name : meaning`` entries, read as name and description
    "sphinx.ext.viewcode",
    "myst_parser",  # the theory pages and the guide are Markdown
    "sphinx_gallery.gen_gallery",  # the tutorials: scripts executed at build, figures collected
    "api_pages",  # docs/_ext: one API page per public module
    "case_reference",  # docs/_ext: the case-file reference from vlasov_tf.runs' key tables
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json"]

# -- strictness -------------------------------------------------------------------------------------
nitpicky = True
# Offline: no intersphinx, so names of other packages (numpy, h5py, ...) and of the standard library
# cannot resolve; only vlasov_tf's own references are checked.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!vlasov_tf\b).*"),
    # Type variables of generic helpers have no page of their own.
    (r"py:class", r"vlasov_tf(\.\w+)*\.T"),
]
suppress_warnings = [
    "myst.header",  # the theory pages are included as they are (their heading levels included)
]

# -- autodoc ------------------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
# Types join the parameters a docstring describes; a dataclass lists its fields once.
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autoclass_content = "both"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# The docstrings write ``name : what it is (shape, meaning)``: rendered as text, not as a type to
# cross-reference (a shape such as ``(n, d)`` is not a reference to some attribute ``d``).
napoleon_use_param = False
# Attributes sections read like Parameters sections (text, not types to cross-reference).
napoleon_custom_sections = [("Attributes", "params_style")]

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# -- the gallery ----------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/\d\d_",  # every numbered script is executed
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
}

# -- HTML -------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "vlasov_tf"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "icon_links": [],
}
html_static_path: list[str] = []
