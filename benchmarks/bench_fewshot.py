"""Few-shot text classification: our contrastive adaptation against SetFit (issue 21).

Every system learns from the same few labelled texts per class (the same draws), with the
real pretrained all-MiniLM-L6-v2 as its body, and is scored on the same held-out texts:

========== ==========================================================================
setfit     SetFit 1.2.0 with its defaults: ``SetFitModel.from_pretrained(folder)``,
           ``Trainer(args=TrainingArguments(seed=seed, report_to="none",
           save_strategy="no"))`` (no checkpoint written); its head is its default
           ``LogisticRegression()``
ours       ``make_pipeline(AlbertVectorizer(folder, fine_tune="contrastive",
           random_state=seed, max_length=256), LogisticRegression(max_iter=1000))``
           (unit-length rows: ``normalize="auto"`` with ``fine_tune``, as SetFit's body
           normalises)
frozen     ``make_pipeline(AlbertVectorizer(folder, max_length=256),
           LogisticRegression(max_iter=1000))``: mean-pooled frozen embeddings
classifier ``AlbertClassifier(folder, max_length=256, random_state=seed)``, otherwise defaults
========== ==========================================================================

``max_length=256`` is the ``max_seq_length`` SetFit's body reads from the MiniLM folder's
``sentence_bert_config.json``, so every system sees the same tokens.

Each fit and its prediction run in a fresh child process (``multiprocessing`` "spawn"),
one at a time, so that the peak resident memory (``ru_maxrss`` of the child, imports and
model included) belongs to one system. The fit time runs from the folder on disk to a
trained model (SetFit: ``from_pretrained`` + ``Trainer`` + ``train``; ours: the pipeline's
``fit``, which loads the model); prediction is timed separately. For each draw the systems
run back to back, the order rotated from one draw to the next, so that a change in the
machine's load hits all of them alike.

``--throughput`` adds a short training run of the random-weight ALBERT-base architecture
(see ``_common.albert_base_folder``) on 64 SST-2 texts per class: pairs per second of
SetFit's trainer against our contrastive fit.

Run from the repository root, offline (``pip install setfit==1.2.0`` for the SetFit side)::

    python benchmarks/bench_fewshot.py --datasets sst2 --sizes 8 16 --seeds 5
    python benchmarks/bench_fewshot.py --datasets 20ng --sizes 8      # all 1,502 test posts

Results are appended to ``--out`` (JSON) after every fit, so a partial run keeps its data.

To choose settings without looking at the test set, ``--validation N`` scores every fit on
``N`` texts drawn from the training split instead (outside the draw, per seed;
``--validation-min-words`` keeps only texts of at least that many words, so that SST-2's
short training phrases do not stand in for its test sentences). Its rows are labelled
``(validation)`` and never pooled with test rows. A sweep of our settings, on seeds that
the test table does not use::

    python benchmarks/bench_fewshot.py --datasets sst2 --sizes 64 --seeds 5 --first-seed 100 \
        --systems ours --validation 400 --validation-min-words 12 --ours fine_tune_epochs=10
"""

import argparse
import csv
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

SYSTEMS = ("setfit", "ours", "frozen", "classifier")
DATASETS = ("sst2", "20ng")
MAX_LENGTH = 256

# ---------------------------------------------------------------------- data


def _read_sst2_train():
    with open(_common.sst2_train_path(), encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        # train.tsv repeats a few phrases: draw from the distinct ones.
        distinct = {row["sentence"]: int(row["label"]) for row in rows}
    return list(distinct), list(distinct.values())


def _read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [row["text"] for row in rows], [row["label"] for row in rows]


def load_dataset(name, test_cap):
    """``(train texts, train labels, test texts, test labels)`` of data set ``name``.

    The test set is capped at ``test_cap`` texts drawn with ``random.Random(0)`` (None or 0:
    all).
    """
    if name == "sst2":
        X_train, y_train = _read_sst2_train()
        X_test, y_test = _common.read_sst2_glue_dev()
    elif name == "20ng":
        folder = _common.SHARED / "data" / "20newsgroups"
        X_train, y_train = _read_jsonl(folder / "subset4_train.jsonl")
        X_test, y_test = _read_jsonl(folder / "subset4_test.jsonl")
    else:
        raise ValueError(f"Got dataset={name!r} but expected one of {DATASETS}.")
    if test_cap and test_cap < len(X_test):
        keep = sorted(random.Random(0).sample(range(len(X_test)), test_cap))
        X_test = [X_test[i] for i in keep]
        y_test = [y_test[i] for i in keep]
    return X_train, y_train, X_test, y_test


def draw(X, y, per_class, seed):
    """``per_class`` texts of each class, drawn with ``random.Random(seed * 1000 + per_class)``,
    shuffled; the same draw for every system."""
    rng = random.Random(seed * 1000 + per_class)
    chosen = []
    for label in sorted(set(y)):
        members = [i for i, value in enumerate(y) if value == label]
        chosen.extend(rng.sample(members, per_class))
    rng.shuffle(chosen)
    return [X[i] for i in chosen], [y[i] for i in chosen]


def validation_draw(X, y, drawn, size, seed, min_words=0):
    """``size`` training texts outside ``drawn``, of at least ``min_words`` words, to score on.

    Drawn with ``random.Random(seed)``; the test set is never touched.
    """
    drawn = set(drawn)
    pool = [i for i, text in enumerate(X) if text not in drawn and len(text.split()) >= min_words]
    if size > len(pool):
        raise ValueError(
            f"--validation {size} asks for more texts than the {len(pool)} training texts "
            f"left outside the draw with at least {min_words} words; ask for fewer."
        )
    chosen = random.Random(seed).sample(pool, size)
    return [X[i] for i in chosen], [y[i] for i in chosen]


def data_label(record):
    """The data set's name in tables: validation rows never pool with test rows."""
    if record.get("scored_on") == "validation":
        return f"{record['dataset']} (validation)"
    return record["dataset"]


# ---------------------------------------------------------------------- systems (child side)


def _cpu_seconds():
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit_setfit(folder, X, y, seed, fit_options):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(folder))
    loaded = time.perf_counter()
    # SetFit's default saves a checkpoint (model and optimizer) into ./checkpoints at the
    # end of training: disk writes, not training, so none is written.
    args = TrainingArguments(
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
        output_dir=tempfile.mkdtemp(prefix="setfit-"),
        **fit_options,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"text": X, "label": y})
    )
    trainer.train()
    info = {
        "max_seq_length": model.model_body.max_seq_length,
        "load_s": loaded,  # made relative by the caller
        "trainer_state": {
            "global_step": getattr(getattr(trainer, "state", None), "global_step", None)
        },
    }
    return model, info


def _fit_ours(folder, X, y, seed, fit_options):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_albert import AlbertVectorizer

    pipeline = make_pipeline(
        AlbertVectorizer(
            str(folder),
            fine_tune="contrastive",
            random_state=seed,
            max_length=MAX_LENGTH,
            **fit_options,
        ),
        LogisticRegression(max_iter=1000),
    )
    pipeline.fit(X, y)
    vectorizer = pipeline[0]
    info = {
        "max_length": vectorizer.max_length_,
        "dtype": vectorizer.dtype_,
        "fine_tune_history": getattr(vectorizer, "fine_tune_history_", None),
        "fine_tune_epochs": getattr(vectorizer, "fine_tune_epochs_", None),
        "fine_tune_learning_rate": getattr(vectorizer, "fine_tune_learning_rate_", None),
    }
    return pipeline, info


def _fit_frozen(folder, X, y, seed, fit_options):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_albert import AlbertVectorizer

    pipeline = make_pipeline(
        AlbertVectorizer(str(folder), max_length=MAX_LENGTH, **fit_options),
        LogisticRegression(max_iter=1000),
    )
    pipeline.fit(X, y)
    return pipeline, {"max_length": pipeline[0].max_length_, "dtype": pipeline[0].dtype_}


def _fit_classifier(folder, X, y, seed, fit_options):
    from sklearn_albert import AlbertClassifier

    classifier = AlbertClassifier(
        str(folder), max_length=MAX_LENGTH, random_state=seed, **fit_options
    )
    classifier.fit(X, y)
    return classifier, {"max_length": classifier.max_length_, "dtype": classifier.dtype_}


_FITS = {
    "setfit": _fit_setfit,
    "ours": _fit_ours,
    "frozen": _fit_frozen,
    "classifier": _fit_classifier,
}


def _commit():
    """The checkout's commit, so that a long run's records say which code each fit ran."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
    )
    return done.stdout.strip() or None


def _child(connection, system, folder, X, y, X_test, y_test, seed, fit_options):
    """Fit ``system`` and score it, in a fresh process; send a dict back."""
    try:
        import warnings

        import numpy as np
        import torch  # noqa: F401  (imports outside the timing)

        # Every system's imports stay outside the timing: importing setfit loads
        # transformers' BERT modules, so they are loaded here for the others too (2.7 s of
        # a cold child's first fit otherwise).
        import transformers.models.albert.modeling_albert  # noqa: F401
        import transformers.models.bert.modeling_bert  # noqa: F401

        import sklearn_albert  # noqa: F401

        _common.quiet_transformers()
        warnings.filterwarnings("ignore")
        if system == "setfit":
            import datasets
            import setfit  # noqa: F401

            datasets.disable_progress_bars()
        rss_before = _peak_rss_mib()
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        model, info = _FITS[system](folder, X, y, seed, fit_options)
        fit_s = time.perf_counter() - start
        fit_cpu_s = _cpu_seconds() - cpu_start
        if "load_s" in info:
            info["load_s"] = info["load_s"] - start
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        predicted = model.predict(X_test)
        predict_s = time.perf_counter() - start
        predict_cpu_s = _cpu_seconds() - cpu_start
        predicted = np.asarray([str(value) for value in np.asarray(predicted).tolist()])
        accuracy = float(np.mean(predicted == np.asarray([str(value) for value in y_test])))
        connection.send(
            {
                "status": "ok",
                "accuracy": accuracy,
                "fit_s": fit_s,
                "predict_s": predict_s,
                "fit_cpu_s": fit_cpu_s,
                "predict_cpu_s": predict_cpu_s,
                "peak_rss_mib": _peak_rss_mib(),
                "rss_after_imports_mib": rss_before,
                "info": info,
                "commit": _commit(),
            }
        )
    except BaseException as error:  # noqa: BLE001  (reported, not raised, across the pipe)
        connection.send(
            {
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-3000:],
            }
        )
    finally:
        connection.close()


def run_in_child(system, folder, X, y, X_test, y_test, seed, fit_options, timeout):
    """Run one fit and prediction in a spawned process; a dict with the figures or the error."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(sender, system, folder, X, y, X_test, y_test, seed, fit_options),
    )
    started = time.perf_counter()
    process.start()
    sender.close()
    result = None
    if receiver.poll(timeout):
        try:
            result = receiver.recv()
        except EOFError:
            result = None
    if result is None:
        if process.is_alive():
            process.terminate()
            result = {"status": "timeout", "timeout_s": timeout}
        else:
            result = {"status": "crashed"}
    process.join(30)
    if process.is_alive():
        process.kill()
        process.join()
    result["exitcode"] = process.exitcode
    result["wall_s"] = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------- throughput (ALBERT-base)


def _child_throughput(connection, system, folder, X, y, seed, options):
    try:
        import warnings

        import torch  # noqa: F401

        _common.quiet_transformers()
        warnings.filterwarnings("ignore")
        start = time.perf_counter()
        if system == "setfit":
            import datasets
            from datasets import Dataset
            from setfit import SetFitModel, Trainer, TrainingArguments

            datasets.disable_progress_bars()
            model = SetFitModel.from_pretrained(str(folder))
            model.model_body.max_seq_length = MAX_LENGTH
            args = TrainingArguments(
                seed=seed,
                report_to="none",
                show_progress_bar=False,
                save_strategy="no",
                output_dir=tempfile.mkdtemp(prefix="setfit-"),
                max_steps=options["steps"],
            )
            trainer = Trainer(
                model=model, args=args, train_dataset=Dataset.from_dict({"text": X, "label": y})
            )
            loaded = time.perf_counter()
            cpu_start = _cpu_seconds()
            trainer.train_embeddings(
                *trainer.dataset_to_parameters(trainer.train_dataset), args=args
            )
            train_s = time.perf_counter() - loaded
            pairs = options["steps"] * args.embedding_batch_size
            texts = 2 * pairs  # SetFit encodes both texts of every pair
        else:
            from sklearn_albert import AlbertVectorizer

            params = {"fine_tune_epochs": 1, **options.get("ours_params", {})}
            # Load the checkpoint once outside the timing: the process-wide registry hands
            # the same weights to the next vectorizer, so its fit times the adaptation
            # (plus a token count of the texts), as train_embeddings does for SetFit.
            AlbertVectorizer(str(folder), max_length=MAX_LENGTH).fit(list(X[:2]))
            vectorizer = AlbertVectorizer(
                str(folder),
                fine_tune="contrastive",
                random_state=seed,
                max_length=MAX_LENGTH,
                **params,
            )
            loaded = time.perf_counter()
            cpu_start = _cpu_seconds()
            vectorizer.fit(X, y)
            train_s = time.perf_counter() - loaded
            # Every batch of B texts is encoded once and counts its B (B - 1) / 2 pairs.
            epochs = vectorizer.fine_tune_epochs_
            size = vectorizer.fine_tune_batch_size
            batches = [size] * (len(X) // size) + ([len(X) % size] if len(X) % size else [])
            pairs = epochs * sum(b * (b - 1) // 2 for b in batches)
            texts = epochs * len(X)
        connection.send(
            {
                "status": "ok",
                "setup_s": loaded - start,
                "train_s": train_s,
                "train_cpu_s": _cpu_seconds() - cpu_start,
                "pairs": pairs,
                "pairs_per_s": pairs / train_s,
                "texts": texts,
                "texts_per_s": texts / train_s,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    except BaseException as error:  # noqa: BLE001
        connection.send(
            {
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-3000:],
            }
        )
    finally:
        connection.close()


def run_throughput_child(system, folder, X, y, seed, options, timeout):
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_throughput, args=(sender, system, folder, X, y, seed, options)
    )
    process.start()
    sender.close()
    result = receiver.recv() if receiver.poll(timeout) else {"status": "timeout"}
    if process.is_alive():
        process.terminate()
    process.join()
    return result


# ---------------------------------------------------------------------- output


def cpu_model():
    """``lscpu``'s model name."""
    listing = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def load_and_machine():
    return {
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "load_average": list(os.getloadavg()),
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write(path, payload):
    temporary = Path(str(path) + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    temporary.replace(path)


def _mean_or_none(values):
    values = [value for value in values if value is not None]
    return statistics.mean(values) if values else None


def _figure(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def summarize(records):
    """Rows ``(dataset, size, system) -> figures`` over the seeds that ran."""
    groups = {}
    for record in records:
        if record["result"].get("status") != "ok":
            continue
        key = (data_label(record), record["per_class"], record["system"])
        groups.setdefault(key, []).append(record)
    rows = {}
    for key, group in groups.items():
        accuracy = [r["result"]["accuracy"] for r in group]
        rows[key] = {
            "n_seeds": len(group),
            "seeds": sorted(r["seed"] for r in group),
            "acc_mean": statistics.mean(accuracy),
            "acc_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
            "fit_s": statistics.mean(r["result"]["fit_s"] for r in group),
            "predict_s": statistics.mean(r["result"]["predict_s"] for r in group),
            "fit_cpu_s": _mean_or_none(r["result"].get("fit_cpu_s") for r in group),
            "peak_rss_mib": max(r["result"]["peak_rss_mib"] for r in group),
            "load_1min": statistics.mean(r["load_before"][0] for r in group),
        }
    return rows


def paired_ratios(records):
    """Ours against SetFit on the draws both ran: accuracy difference and time ratio."""
    by_draw = {}
    for record in records:
        if record["result"].get("status") == "ok":
            # Only fits of one run pair up: their times were taken back to back.
            key = (data_label(record), record["per_class"], record["seed"], record.get("source"))
            by_draw.setdefault(key, {})[record["system"]] = record["result"]
    out = {}
    for (dataset, size, seed, _), systems in by_draw.items():
        if "ours" in systems and "setfit" in systems:
            entry = out.setdefault(
                (dataset, size), {"seeds": [], "diff": [], "ratio": [], "cpu_ratio": []}
            )
            ours, setfit = systems["ours"], systems["setfit"]
            entry["seeds"].append(seed)
            entry["diff"].append(ours["accuracy"] - setfit["accuracy"])
            entry["ratio"].append(ours["fit_s"] / setfit["fit_s"])
            if ours.get("fit_cpu_s") and setfit.get("fit_cpu_s"):
                entry["cpu_ratio"].append(ours["fit_cpu_s"] / setfit["fit_cpu_s"])
    return out


def table(records):
    rows = summarize(records)
    lines = [
        "| data | per class | system | seeds | accuracy mean ± std | fit s | fit CPU s "
        "| predict s | peak RSS MiB | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, size, system), row in sorted(
        rows.items(), key=lambda item: (item[0][0], item[0][1], SYSTEMS.index(item[0][2]))
    ):
        lines.append(
            f"| {dataset} | {size} | {system} | {row['n_seeds']} "
            f"| {100 * row['acc_mean']:.1f} ± {100 * row['acc_std']:.1f} "
            f"| {row['fit_s']:.1f} | {_figure(row['fit_cpu_s'])} | {row['predict_s']:.1f} "
            f"| {row['peak_rss_mib']:.0f} "
            f"| {row['load_1min']:.1f} |"
        )
    lines += [
        "",
        "Ours against SetFit, means over all seeds each ran (accuracy goal: at least -0.5):",
        "",
        "| data | per class | seeds ours / SetFit | ours − SetFit mean accuracy (points) |",
        "|---|---|---|---|",
    ]
    for dataset, size in sorted({key[:2] for key in rows}):
        ours, setfit = rows.get((dataset, size, "ours")), rows.get((dataset, size, "setfit"))
        if ours and setfit:
            lines.append(
                f"| {dataset} | {size} | {ours['n_seeds']} / {setfit['n_seeds']} "
                f"| {100 * (ours['acc_mean'] - setfit['acc_mean']):+.1f} |"
            )
    lines += [
        "",
        "Paired on the draws where both ran back to back in one run:",
        "",
        "| data | per class | seeds (both ran) | ours − SetFit acc (points, mean) "
        "| goal ≥ −0.5 | ours / SetFit fit time (mean of per-draw ratios) | goal ≤ 0.5 "
        "| ours / SetFit fit CPU time (x) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, size), entry in sorted(paired_ratios(records).items()):
        diff = 100 * statistics.mean(entry["diff"])
        ratio = statistics.mean(entry["ratio"])
        lines.append(
            f"| {dataset} | {size} | {len(entry['seeds'])} | {diff:+.1f} "
            f"| {'met' if diff >= -0.5 else 'NOT met'} | {ratio:.2f}x "
            f"| {'met' if ratio <= 0.5 else 'NOT met'} "
            f"| {_figure(_mean_or_none(entry['cpu_ratio']), 2)} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- main


def parse_options(pairs):
    import ast

    options = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            options[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[name] = value
    return options


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 64])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--test-cap",
        type=int,
        default=0,
        help="at most this many test texts per data set (random.Random(0)); 0 (default): all",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per fit")
    parser.add_argument(
        "--validation",
        type=int,
        default=0,
        metavar="N",
        help="score on N training texts outside each draw instead of the test set",
    )
    parser.add_argument(
        "--validation-min-words",
        type=int,
        default=0,
        help="validation texts have at least this many words",
    )
    parser.add_argument(
        "--ours",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="extra AlbertVectorizer parameters for 'ours' (a side run)",
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="also time ALBERT-base (random weights) training, SetFit vs ours",
    )
    parser.add_argument("--throughput-steps", type=int, default=8, help="SetFit's steps")
    parser.add_argument(
        "--throughput-per-class",
        type=int,
        default=64,
        help="labelled SST-2 texts per class for the throughput run (ours: one epoch)",
    )
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--out", default="fewshot-results.json")
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="JSON",
        help="print the table of these result files (records pooled) and exit",
    )
    args = parser.parse_args()
    if args.validation < 0 or args.validation_min_words < 0:
        parser.error("--validation and --validation-min-words take integers >= 0")
    if args.table:
        records = []
        for name in args.table:
            for record in json.loads(Path(name).read_text())["records"]:
                records.append({**record, "source": name})
        print(table(records))
        return

    folder = _common.minilm_folder()
    test_cap = args.test_cap or None
    out = Path(args.out)
    payload = {
        "script": "benchmarks/bench_fewshot.py",
        "argv": sys.argv[1:],
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count()},
        "start": load_and_machine(),
        "max_length": MAX_LENGTH,
        "test_cap": test_cap,
        "ours_options": parse_options(args.ours),
        "scored_on": "validation" if args.validation else "test",
        "records": [],
        "throughput": [],
    }
    write(out, payload)
    print(f"{payload['machine']}; {payload['start']['uptime']}", flush=True)

    draw_index = 0
    for dataset in [] if args.only_throughput else args.datasets:
        X_all, y_all, X_test, y_test = load_dataset(dataset, test_cap)
        for per_class in args.sizes:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                X, y = draw(X_all, y_all, per_class, seed)
                X_eval, y_eval = X_test, y_test
                if args.validation:
                    X_eval, y_eval = validation_draw(
                        X_all, y_all, X, args.validation, seed, args.validation_min_words
                    )
                shift = draw_index % len(args.systems)
                order = args.systems[shift:] + args.systems[:shift]
                draw_index += 1
                for system in order:
                    options = payload["ours_options"] if system == "ours" else {}
                    load_before = list(os.getloadavg())
                    result = run_in_child(
                        system, folder, X, y, X_eval, y_eval, seed, options, args.timeout
                    )
                    record = {
                        "dataset": dataset,
                        "per_class": per_class,
                        "seed": seed,
                        "system": system,
                        "n_train": len(X),
                        "n_test": len(X_eval),
                        "scored_on": payload["scored_on"],
                        "load_before": load_before,
                        "load_after": list(os.getloadavg()),
                        "result": result,
                    }
                    payload["records"].append(record)
                    write(out, payload)
                    if result["status"] == "ok":
                        print(
                            f"{data_label(record)} {per_class}/class seed {seed} {system:10s} "
                            f"acc {result['accuracy']:.4f} fit {result['fit_s']:7.1f}s "
                            f"predict {result['predict_s']:6.1f}s "
                            f"peak {result['peak_rss_mib']:5.0f} MiB "
                            f"load {load_before[0]:.1f}",
                            flush=True,
                        )
                    else:
                        print(
                            f"{dataset} {per_class}/class seed {seed} {system}: "
                            f"{result['status']} {result.get('error', '')}",
                            flush=True,
                        )
                        if result.get("traceback"):
                            print(result["traceback"], flush=True)

    if args.throughput or args.only_throughput:
        albert = _common.albert_base_folder()
        X_all, y_all, _, _ = load_dataset("sst2", test_cap)
        X, y = draw(X_all, y_all, args.throughput_per_class, 0)
        options = {"steps": args.throughput_steps, "ours_params": payload["ours_options"]}
        for system in ("setfit", "ours"):
            load_before = list(os.getloadavg())
            result = run_throughput_child(system, albert, X, y, 0, options, args.timeout)
            payload["throughput"].append(
                {"system": system, "load_before": load_before, "result": result}
            )
            write(out, payload)
            print(f"ALBERT-base throughput {system}: {result}", flush=True)

    payload["end"] = load_and_machine()
    payload["table_markdown"] = table(payload["records"])
    write(out, payload)
    print(payload["table_markdown"])
    print(f"{payload['end']['uptime']}; results in {out}")


if __name__ == "__main__":
    main()
