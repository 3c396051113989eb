"""What a grid search costs beyond its classifier, next to one transform, as texts grow.

``GridSearchCV(Pipeline([("vect", AlbertVectorizer), ("clf", RidgeClassifier)]), grid, cv=3)``
with ``grid`` = pooling {cls, mean, max} x layers {-1, -2} x normalize {False, True} x alpha
{1, 10}: 24 candidates, 72 fits and a refit, each transforming its fold. With the embedding
cache the encoder should run once per distinct text, so that the search costs one transform
plus what the classifier costs anyway.

For each size N (distinct texts), in a fresh process (so that its peak RSS is its own), after
the embedding cache is emptied each time (the model stays loaded):

1. one ``transform`` of the N texts;
2. the grid search; a forward pre-hook on the model counts the texts the encoder saw;
3. the same search over precomputed features (each (pooling, layers, normalize) built once,
   untimed, then ``GridSearchCV(RidgeClassifier(), {"alpha": ...}, cv=3)`` timed): the
   classifier's own cost, which no encoder can remove.

The vectorizer's overhead is (2) minus (3); the figure of merit is that overhead divided by
(1) (the issue's goal: at most 1.3). All three run inside
``threadpoolctl.threadpool_limits(1, user_api="blas")``: the classifier's fits (numpy and
scipy each carry an OpenBLAS whose idle threads spin on a 2-core machine) then cost the same
in (2) and (3); torch's own threads are not BLAS threads there and are left as they are.

Texts: distinct SST-2 train sentences (seed 0); above 66,978 all of them, topped up with
the distinct STS-B sentences (train, dev, test) and then with sentences of 5 to 40 words cut
from 20 Newsgroups train posts, all shuffled together (seed 0). Labels are SST-2's, seeded
random ones for the top-up (the random-weight ALBERT-base makes accuracy meaningless anyway).

Also measured at the first size: ``GridSearchCV(n_jobs=2)`` with a disk cache (encoder passes
per distinct text over both workers, from the cache's write count), and the fidelity of the
stored summaries (cached features against ``embedding_cache=None``, and the effect on the
classifier's cross-validation scores).

Examples
--------
``python benchmarks/bench_grid_search.py --quick``
``python benchmarks/bench_grid_search.py --sizes 2000 20000``
``python benchmarks/bench_grid_search.py --sizes 100000 --no-extras``
"""

import argparse
import contextlib
import csv
import gc
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common as common
import numpy as np

POOLINGS = ["cls", "mean", "max"]
LAYERS = [-1, -2]
NORMALIZE = [False, True]
ALPHAS = [1.0, 10.0]
CV = 3
FIDELITY_TEXTS = 600


# ---------------------------------------------------------------------- texts


def _stsb_sentences():
    sentences = []
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        path = common.SHARED / "data" / "stsb" / name
        if path.exists():
            with open(path, encoding="utf-8", newline="") as handle:
                for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                    sentences.extend(row[5:7])
    return sentences


def _newsgroups_sentences():
    path = common.SHARED / "data" / "20newsgroups" / "train.jsonl"
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = " ".join(json.loads(line)["text"].split())
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                words = sentence.split()
                if 5 <= len(words) <= 40 and not re.search(r"[@<>|=_\\]|\w+:", sentence):
                    yield sentence


def distinct_texts(n_texts):
    """``n_texts`` distinct sentences and labels, and where they came from.

    Returns
    -------
    texts : list of str
    labels : ndarray of int
    sources : dict
        How many texts each source gave.
    """
    if not common.sst2_train_path().exists():
        texts = common.distinct_generated_sentences(n_texts)
        labels = np.array([random.Random(i).randint(0, 1) for i in range(n_texts)])
        return texts, labels, {"generated": n_texts}
    texts, labels = common.sample_sst2_train(n_texts, seed=0, distinct=True)
    if len(texts) >= n_texts:
        return texts, np.array(labels), {"sst2-train": len(texts)}
    seen = set(texts)
    sources = {"sst2-train": len(texts)}
    rng = random.Random(0)
    for name, candidates in (
        ("stsb", _stsb_sentences()),
        ("20newsgroups", _newsgroups_sentences()),
    ):
        before = len(texts)
        for sentence in candidates:
            if len(texts) == n_texts:
                break
            if sentence not in seen:
                seen.add(sentence)
                texts.append(sentence)
                labels.append(rng.randint(0, 1))
        sources[name] = len(texts) - before
    if len(texts) < n_texts:
        raise SystemExit(f"Only {len(texts)} distinct sentences are available here.")
    order = list(range(n_texts))
    random.Random(0).shuffle(order)
    return [texts[i] for i in order], np.array([labels[i] for i in order]), sources


# ---------------------------------------------------------------------- measurements


def one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class EncoderCounter:
    """A forward pre-hook counting the texts (rows) the encoder runs on."""

    def __init__(self, vectorizer):
        import torch

        loaded = vectorizer._ensure_loaded()
        self.model = loaded.model_for(getattr(torch, vectorizer.dtype_))
        self.rows = 0
        self._handle = self.model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.rows += int(ids.shape[0])

    def close(self):
        self._handle.remove()


#: CPU seconds of this process (all threads) per timed call, in call order: on a shared
#: machine they move less with other sessions' load than wall seconds do.
CPU_SECONDS = []


def timed(function, *args):
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = function(*args)
    CPU_SECONDS.append(time.process_time() - cpu_start)
    return result, time.perf_counter() - start


def grid_pipeline(vectorizer):
    from sklearn.base import clone
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import Pipeline

    return Pipeline([("vect", clone(vectorizer)), ("clf", RidgeClassifier())])


def grid(normalize):
    params = {"vect__pooling": POOLINGS, "vect__layers": LAYERS, "clf__alpha": ALPHAS}
    if normalize:
        params["vect__normalize"] = NORMALIZE
    return params


def time_one_transform(vectorizer, texts, counter):
    """Step 1: one transform from an empty cache, its CPU seconds, rows and peak RSS."""
    from sklearn_albert import clear_cache

    clear_cache(models=False)
    counter.rows = 0
    with one_blas_thread(), common.PeakRSS() as rss:
        _, seconds = timed(vectorizer.transform, texts)
    print(f"  one transform {seconds:.1f}s", flush=True)
    return {
        "n_texts": len(texts),
        "one_transform_s": seconds,
        "one_transform_cpu_s": CPU_SECONDS[-1],
        "encoder_rows_one_transform": counter.rows,
        "peak_rss_transform_mb": common.megabytes(rss.peak),
    }


def measure_transform(args):
    """Step 1 alone, in this process (``--mode transform``)."""
    from sklearn_albert import AlbertVectorizer

    common.quiet_transformers()
    texts, _, _ = distinct_texts(args.single)
    vectorizer = AlbertVectorizer(str(common.model_folder(args.model)), device=args.device)
    vectorizer.fit(["warm up"]).transform(texts[:16])
    counter = EncoderCounter(vectorizer)
    result = time_one_transform(vectorizer, texts, counter)
    counter.close()
    return {**result, "load_average_after": list(os.getloadavg())}


def measure_size(args):
    """Steps 1 to 3 at one size, in this process; returns a result dictionary."""
    from sklearn.base import clone
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import GridSearchCV

    from sklearn_albert import AlbertVectorizer, cache_info, clear_cache

    common.quiet_transformers()
    texts, labels, sources = distinct_texts(args.single)
    folder = common.model_folder(args.model)
    vectorizer = AlbertVectorizer(str(folder), device=args.device).fit(["warm up"])
    vectorizer.transform(texts[:16])  # one-off kernel set-up, outside every timing
    counter = EncoderCounter(vectorizer)
    print(
        f"{len(texts)} distinct texts {sources}; {args.model} ({vectorizer.dtype_} on "
        f"{vectorizer.device_}); load average {os.getloadavg()}",
        flush=True,
    )

    if args.transform_from:
        # Step 1 ran in its own process (``--mode transform``), e.g. to keep each run under
        # the benchmark lock's time limit at 100,000 texts.
        once = json.loads(Path(args.transform_from).read_text())
        if once["n_texts"] != len(texts):
            raise SystemExit(f"{args.transform_from} measured {once['n_texts']} texts.")
    else:
        once = time_one_transform(vectorizer, texts, counter)
    transform_s, transform_cpu_s = once["one_transform_s"], once["one_transform_cpu_s"]
    transform_rows = once["encoder_rows_one_transform"]

    clear_cache(models=False)
    counter.rows = 0
    search = GridSearchCV(grid_pipeline(vectorizer), grid(args.normalize), cv=CV)
    with one_blas_thread(), common.PeakRSS() as search_rss:
        _, search_s = timed(search.fit, texts, labels)
    search_cpu_s = CPU_SECONDS[-1]
    search_cache, search_rows = cache_info(), counter.rows
    print(f"  grid search {search_s:.1f}s, encoder rows {search_rows}", flush=True)

    classifier_s, classifier_cpu_s, n_feature_sets = 0.0, 0.0, 0
    for pooling in POOLINGS:
        for layers in LAYERS:
            features = (
                clone(vectorizer)
                .set_params(pooling=pooling, layers=layers)
                .fit([])
                .transform(texts)
            )
            for normalize in NORMALIZE if args.normalize else [False]:
                X = features
                if normalize:
                    X = features / np.linalg.norm(features, axis=1, keepdims=True)
                alone = GridSearchCV(RidgeClassifier(), {"alpha": ALPHAS}, cv=CV)
                with one_blas_thread():
                    _, seconds = timed(alone.fit, X, labels)
                classifier_s += seconds
                classifier_cpu_s += CPU_SECONDS[-1]
                n_feature_sets += 1
            del features, X
    counter.close()
    overhead_s = search_s - classifier_s
    print(
        f"  classifier alone {classifier_s:.1f}s; CPU seconds: transform {transform_cpu_s:.1f},"
        f" search {search_cpu_s:.1f}, classifier {classifier_cpu_s:.1f}",
        flush=True,
    )
    return {
        "n_texts": len(texts),
        "sources": sources,
        "dtype": vectorizer.dtype_,
        "device": vectorizer.device_,
        "one_transform_s": transform_s,
        "grid_search_s": search_s,
        "classifier_only_s": classifier_s,
        "vectorizer_overhead_s": overhead_s,
        "overhead_ratio": overhead_s / transform_s,
        "one_transform_cpu_s": transform_cpu_s,
        "grid_search_cpu_s": search_cpu_s,
        "classifier_only_cpu_s": classifier_cpu_s,
        "overhead_ratio_cpu": (search_cpu_s - classifier_cpu_s) / transform_cpu_s,
        "n_candidates": len(search.cv_results_["params"]),
        "n_feature_sets": n_feature_sets,
        "encoder_rows_one_transform": transform_rows,
        "encoder_rows_grid_search": search_rows,
        "encoder_passes_per_text": search_rows / len(texts),
        "grid_search_cache": search_cache,
        "peak_rss_transform_mb": once["peak_rss_transform_mb"],
        "transform_measured_separately": bool(args.transform_from),
        "peak_rss_grid_search_mb": common.megabytes(search_rss.peak),
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "best_params": search.best_params_,
        "load_average_after": list(os.getloadavg()),
    }


def classifier_alone(vectorizer, texts, labels, normalize):
    """Step 3: the classifier's grid on precomputed features; (wall s, CPU s, feature sets)."""
    from sklearn.base import clone
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import GridSearchCV

    wall_s = cpu_s = 0.0
    n_sets = 0
    for pooling in POOLINGS:
        for layers in LAYERS:
            features = (
                clone(vectorizer)
                .set_params(pooling=pooling, layers=layers)
                .fit([])
                .transform(texts)
            )
            for scaled in NORMALIZE if normalize else [False]:
                X = (
                    features / np.linalg.norm(features, axis=1, keepdims=True)
                    if scaled
                    else features
                )
                alone = GridSearchCV(RidgeClassifier(), {"alpha": ALPHAS}, cv=CV)
                with one_blas_thread():
                    _, seconds = timed(alone.fit, X, labels)
                wall_s += seconds
                cpu_s += CPU_SECONDS[-1]
                n_sets += 1
                del X
            del features
    return wall_s, cpu_s, n_sets


def measure_warm(args):
    """The search with the cache filled beforehand, so that the encoder never runs.

    What remains of the search is the vectorizer's lookups (RAM and spill file), feature
    assembly and the classifier; filling the cache times ``store`` (with the spilling) on
    its own. The vectors are synthetic, of the model's real shape: this measures the cache,
    not the encoder, at sizes where a full encode does not fit the benchmark's time.
    """
    from sklearn.model_selection import GridSearchCV

    from sklearn_albert import AlbertVectorizer, cache_info, clear_cache
    from sklearn_albert._cache import MEMORY_CACHE, Encodings

    common.quiet_transformers()
    texts, labels, sources = distinct_texts(args.single)
    vectorizer = AlbertVectorizer(str(common.model_folder(args.model)), device=args.device)
    vectorizer.fit(["warm up"])
    namespace = vectorizer._cache_namespace()
    storage_dtype = "float32" if vectorizer.dtype_ == "float32" else "float16"
    shape = (3, vectorizer.n_hidden_states_, vectorizer.hidden_size_)
    rng = np.random.default_rng(0)
    base = rng.standard_normal((512, *shape), dtype=np.float32)
    clear_cache(models=False)
    with common.PeakRSS() as fill_rss:
        start, fill_cpu = time.perf_counter(), time.process_time()
        for first in range(0, len(texts), 512):
            chunk = texts[first : first + 512]
            shift = rng.standard_normal((len(chunk), 1, 1, shape[-1]), dtype=np.float32)
            summaries = base[: len(chunk)] + shift  # distinct rows, cheaply
            encodings = Encodings(
                summaries,
                summaries[:, 1, -1].copy(),
                np.full(len(chunk), 12, dtype=np.int64),
                np.zeros(len(chunk), dtype=bool),
            )
            MEMORY_CACHE.store(namespace, chunk, encodings, storage_dtype=storage_dtype)
        fill_s, fill_cpu = time.perf_counter() - start, time.process_time() - fill_cpu
    filled = cache_info()
    print(f"  cache filled in {fill_s:.1f}s: {filled}", flush=True)

    counter = EncoderCounter(vectorizer)
    search = GridSearchCV(grid_pipeline(vectorizer), grid(args.normalize), cv=CV)
    with one_blas_thread(), common.PeakRSS() as search_rss:
        _, search_s = timed(search.fit, texts, labels)
    search_cpu_s = CPU_SECONDS[-1]
    print(f"  warm grid search {search_s:.1f}s, encoder rows {counter.rows}", flush=True)
    classifier_s, classifier_cpu_s, _ = classifier_alone(vectorizer, texts, labels, args.normalize)
    print(f"  classifier alone {classifier_s:.1f}s", flush=True)
    counter.close()
    return {
        "n_texts": len(texts),
        "sources": sources,
        "dtype": vectorizer.dtype_,
        "storage_dtype": storage_dtype,
        "fill_s": fill_s,
        "fill_cpu_s": fill_cpu,
        "cache_after_fill": filled,
        "warm_search_s": search_s,
        "warm_search_cpu_s": search_cpu_s,
        "classifier_only_s": classifier_s,
        "classifier_only_cpu_s": classifier_cpu_s,
        "cache_cost_s": fill_s + search_s - classifier_s,
        "cache_cost_cpu_s": fill_cpu + search_cpu_s - classifier_cpu_s,
        "encoder_rows_warm_search": counter.rows,
        "n_candidates": len(search.cv_results_["params"]),
        "peak_rss_fill_mb": common.megabytes(fill_rss.peak),
        "peak_rss_warm_search_mb": common.megabytes(search_rss.peak),
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average_after": list(os.getloadavg()),
    }


def measure_two_jobs(args):
    """``GridSearchCV(n_jobs=2)`` with a disk cache: texts written by both workers together."""
    from sklearn.model_selection import GridSearchCV

    from sklearn_albert import AlbertVectorizer, cache_info

    common.quiet_transformers()
    texts, labels, _ = distinct_texts(args.single)
    folder = tempfile.mkdtemp(prefix="bench_grid_disk_cache_")
    try:
        vectorizer = AlbertVectorizer(
            str(common.model_folder(args.model)), device=args.device, embedding_cache=folder
        )
        search = GridSearchCV(grid_pipeline(vectorizer), grid(args.normalize), cv=CV, n_jobs=2)
        with one_blas_thread():
            _, seconds = timed(search.fit, texts, labels)
        info = cache_info(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "n_texts": len(texts),
        "n_jobs": 2,
        "grid_search_s": seconds,
        "disk_cache": info,
        "encoder_passes_per_text": info["writes"] / len(texts),
    }


def measure_fidelity(args):
    """Cached (stored precision) against uncached features, and the classifier's scores."""
    from sklearn.base import clone
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import cross_val_score

    from sklearn_albert import AlbertVectorizer, clear_cache

    common.quiet_transformers()
    # Seven transforms of these texts (one cached, six without a cache): FIDELITY_TEXTS of
    # them are enough for the error figures, and keep the step to minutes on a loaded machine.
    texts, labels, _ = distinct_texts(min(args.single, FIDELITY_TEXTS))
    vectorizer = AlbertVectorizer(str(common.model_folder(args.model)), device=args.device)
    vectorizer.fit(["warm up"])
    clear_cache(models=False)
    vectorizer.transform(texts)  # fills the cache
    rows = []
    for pooling in POOLINGS:
        for layers in LAYERS:
            cached_vect = clone(vectorizer).set_params(pooling=pooling, layers=layers).fit([])
            cached = cached_vect.transform(texts)
            exact = clone(cached_vect).set_params(embedding_cache=None).fit([]).transform(texts)
            difference = np.abs(cached - exact)
            cosine = (cached * exact).sum(1) / (
                np.linalg.norm(cached, axis=1) * np.linalg.norm(exact, axis=1)
            )
            scores = {}
            for name, X in (("cached", cached), ("exact", exact)):
                with one_blas_thread():
                    scores[name] = cross_val_score(RidgeClassifier(), X, labels, cv=CV)
            rows.append(
                {
                    "pooling": pooling,
                    "layers": layers,
                    "max_abs_error": float(difference.max()),
                    "max_abs_value": float(np.abs(exact).max()),
                    "max_relative_error": float(
                        (difference / np.maximum(np.abs(exact), 1e-3)).max()
                    ),
                    "min_cosine": float(cosine.min()),
                    "cv_accuracy_cached": scores["cached"].tolist(),
                    "cv_accuracy_exact": scores["exact"].tolist(),
                    "max_cv_accuracy_change": float(
                        np.abs(scores["cached"] - scores["exact"]).max()
                    ),
                }
            )
    return {"n_texts": len(texts), "dtype": vectorizer.dtype_, "per_setting": rows}


# ---------------------------------------------------------------------- orchestration


def run_child(args, mode, n_texts):
    """Run one measurement in a fresh process; returns its result dictionary."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    command = [
        sys.executable,
        __file__,
        "--single",
        str(n_texts),
        "--mode",
        mode,
        "--model",
        args.model,
        "--device",
        args.device,
        "--child-out",
        out,
    ]
    if not args.normalize:
        command.append("--no-normalize")
    if args.transform_from and mode == "size":
        command += ["--transform-from", args.transform_from]
    subprocess.run(command, check=True)
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    return result


def plot(sizes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [row["n_texts"] for row in sizes]
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    axes.plot(n, [r["one_transform_s"] for r in sizes], "o-", label="one transform")
    axes.plot(n, [r["grid_search_s"] for r in sizes], "s-", label="grid search")
    axes.plot(
        n,
        [r["vectorizer_overhead_s"] for r in sizes],
        "^-",
        label="grid search minus classifier (vectorizer's cost)",
    )
    axes.plot(n, [r["classifier_only_s"] for r in sizes], "x--", label="classifier alone")
    axes.plot(
        n,
        [1.3 * r["one_transform_s"] for r in sizes],
        ":",
        color="grey",
        label="goal: 1.3x transform",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("distinct texts")
    axes.set_ylabel("seconds")
    axes.set_title(f"GridSearchCV, {sizes[0]['n_candidates']} candidates x {CV} folds, ALBERT-base")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_report(result):
    rows = [
        {
            "n": r["n_texts"],
            "once": r["one_transform_s"],
            "search": r["grid_search_s"],
            "clf": r["classifier_only_s"],
            "ratio": r["overhead_ratio"],
            "passes": r["encoder_passes_per_text"],
            "rss": r["peak_rss_grid_search_mb"],
        }
        for r in result["sizes"]
    ]
    print()
    print(
        common.format_table(
            rows,
            [
                ("distinct texts", "n", "{:,}"),
                ("one transform s", "once", "{:.1f}"),
                ("grid search s", "search", "{:.1f}"),
                ("classifier alone s", "clf", "{:.1f}"),
                ("(search - clf) / transform", "ratio", "{:.2f}"),
                ("encoder passes / text", "passes", "{:.2f}"),
                ("peak RSS MB", "rss", "{:,.0f}"),
            ],
        )
    )
    if result.get("two_jobs"):
        jobs = result["two_jobs"]
        print(
            f"GridSearchCV(n_jobs=2), disk cache, {jobs['n_texts']:,} texts: "
            f"{jobs['encoder_passes_per_text']:.2f} encoder passes per text over both workers "
            f"({jobs['disk_cache']['writes']} written, {jobs['disk_cache']['entries']} entries), "
            f"{jobs['grid_search_s']:.1f}s"
        )
    if result.get("fidelity"):
        fidelity = result["fidelity"]
        worst = {
            key: max(row[key] for row in fidelity["per_setting"])
            for key in ("max_abs_error", "max_relative_error", "max_cv_accuracy_change")
        }
        min_cosine = min(row["min_cosine"] for row in fidelity["per_setting"])
        print(
            f"cached vs uncached features ({fidelity['dtype']}, {fidelity['n_texts']:,} texts, "
            f"6 settings): max abs error {worst['max_abs_error']:.2e}, max relative "
            f"{worst['max_relative_error']:.2e}, min cosine {min_cosine:.9f}, largest change of "
            f"a fold's accuracy {worst['max_cv_accuracy_change']:.4f}"
        )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=common.MODEL_NAMES, default="albert-base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument(
        "--no-normalize", dest="normalize", action="store_false", help="leave normalize out"
    )
    parser.add_argument(
        "--no-extras", dest="extras", action="store_false", help="skip n_jobs=2 and fidelity"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 texts")
    parser.add_argument("--out", default=None, help=f"result folder (default {common.RESULTS_DIR})")
    parser.add_argument(
        "--transform-from",
        default=None,
        help="JSON of a '--single N --mode transform --child-out FILE' run: step 1 taken from it",
    )
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="size", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [300]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.single is not None:
        measure = {
            "size": measure_size,
            "two_jobs": measure_two_jobs,
            "transform": measure_transform,
            "warm": measure_warm,
        }.get(args.mode, measure_fidelity)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # truncation notes of long posts
            result = measure(args)
        Path(args.child_out).write_text(json.dumps(result, default=common._json_default))
        return result
    result = {
        "benchmark": "grid_search",
        "created": common.utc_now(),
        "machine": common.machine_info(),
        "model": args.model,
        "grid": {**grid(args.normalize), "cv": CV},
        "blas": "threadpool_limits(1, user_api='blas') around transform, search and classifier",
        "sizes": [run_child(args, "size", n) for n in args.sizes],
    }
    if args.extras:
        result["two_jobs"] = run_child(args, "two_jobs", args.sizes[0])
        result["fidelity"] = run_child(args, "fidelity", args.sizes[0])
    print_report(result)
    path = common.save_json(f"grid-search-{args.model}", result, args.out)
    png = path.with_suffix(".png")
    plot(result["sizes"], png)
    print(f"\nsaved {path} and {png}")
    return result


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
