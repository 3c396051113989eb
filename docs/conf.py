"""Sphinx configuration of the sklearn_albert documentation.

Build with ``docs/build.sh`` (warnings are errors). The gallery runs the scripts in
``examples/`` offline; ``SKLEARN_ALBERT_GALLERY`` chooses which:

* ``all`` (default): every example runs, as the published site shows them;
* ``none``: examples are rendered without running them (fast; for quick checks);
* any other value: a regular expression; only example files whose path matches run.
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# The documentation never uses the network: examples load local or packaged models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sklearn_albert  # noqa: E402

project = "sklearn_albert"
author = "the sklearn_albert developers"
copyright = "the sklearn_albert developers"  # noqa: A001
release = sklearn_albert.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "**/GALLERY_HEADER.rst"]
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_albert {release}"
html_theme_options = {"navigation_with_keys": False, "show_prev_next": False}
html_static_path = []

# Nitpicky (-n in build.sh) catches broken references to this project. The build is
# offline, so there is no intersphinx: references to other projects stay plain text.
nitpick_ignore_regex = [
    (r"py:.*", r"(sklearn|numpy|np|torch|transformers|pandas|pathlib|skops|tqdm)(\..*)?"),
    (r"py:.*", r"(array-like|ndarray|path-like|callable|iterable|default=.*|optional)"),
    (r"py:.*", r"(of|or|and|shape|str_|dtype|float32|int|str|bool|dict|list|tuple)"),
]

autosummary_generate = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# ---------------------------------------------------------------------- gallery

_gallery_choice = os.environ.get("SKLEARN_ALBERT_GALLERY", "all").strip() or "all"
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": {"all": ".*", "none": ".*"}.get(_gallery_choice, _gallery_choice),
    "plot_gallery": "False" if _gallery_choice == "none" else "True",
    "download_all_examples": False,
    "doc_module": ("sklearn_albert",),
    "backreferences_dir": "generated/backreferences",
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "show_memory": False,
    "matplotlib_animations": False,
}

# ---------------------------------------------------------------------- optional pages
# Other parts of the project add these pages; the table of contents lists those present,
# so that the build (which fails on warnings) never points at a missing page.

OPTIONAL_PAGES = {
    "@USER_GUIDE@": ["user_guide"],
    "@MORE_TOPICS@": ["toolbox", "fine_tuning"],
}


def _list_optional_pages(app, docname, source):
    text = source[0]
    for marker, pages in OPTIONAL_PAGES.items():
        present = [page for page in pages if (DOCS / f"{page}.rst").is_file()]
        text = re.sub(
            rf"^(\s*){re.escape(marker)}\s*$",
            lambda match, present=present: "\n".join(match.group(1) + page for page in present),
            text,
            flags=re.MULTILINE,
        )
    source[0] = text


# ---------------------------------------------------------------------- command-line help


def _write_cli_help(app):
    """The --help of each command, so the command-line page never drifts from the code."""
    from sklearn_albert._cli import build_parser

    parser = build_parser()
    folder = DOCS / "_generated"
    folder.mkdir(exist_ok=True)
    helps = {"main": parser.format_help()}
    commands = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in commands.choices.items():
        helps[name] = subparser.format_help()
    for name, text in helps.items():
        path = folder / f"cli_{name}.txt"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


# ---------------------------------------------------------------------- inherited docstrings


def _unlink_foreign_refs(app, what, name, obj, options, lines):
    """Methods inherited from scikit-learn point at its user guide and glossary: keep the words."""
    if not (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        return
    for index, line in enumerate(lines):
        lines[index] = re.sub(
            r":(?:ref|term):`([^`<]*?)\s*(?:<([^`>]*)>)?`",
            lambda match: match.group(1).strip() or match.group(2),
            line,
        )


def setup(app):
    app.connect("builder-inited", _write_cli_help)
    app.connect("autodoc-process-docstring", _unlink_foreign_refs)
    app.connect("source-read", _list_optional_pages)
    # Re-read the page holding the markers on every build: a page may have appeared.
    app.connect("env-get-outdated", lambda app, env, added, changed, removed: ["index"])
