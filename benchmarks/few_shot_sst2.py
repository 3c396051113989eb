"""Few-shot SST-2: frozen embeddings, contrastive adaptation and SetFit, interleaved.

For each seed, ``--per-class`` labelled sentences of each class are drawn from SST-2 train
(``numpy.random.RandomState(seed)``); then, one after the other in this process, on the
same texts and the same pretrained all-MiniLM-L6-v2:

- ``frozen``: ``make_pipeline(AlbertVectorizer(model), LogisticRegression())``;
- ``contrastive``: the same with ``fine_tune="contrastive"`` (plus any ``--set``);
- ``setfit`` (when the setfit package is installed and ``--setfit`` is given): SetFit's
  trainer with its default arguments and the same seed.

Accuracy is on the first ``--n-test`` GLUE dev sentences; ``fit`` times the training only
(loading the model included, predicting excluded). The machine is shared: read the fit
times as ratios within a seed (same load, interleaved), and keep the recorded load
average with them.

Run from the repository root, offline::

    python benchmarks/few_shot_sst2.py --seeds 0 1 --setfit
    python benchmarks/few_shot_sst2.py --set fine_tune_epochs=5 fine_tune_learning_rate=1e-4

A JSON record goes to ``benchmarks/results/``.
"""

import argparse
import ast
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    machine_info,
    minilm_folder,
    quiet_transformers,
    read_sst2_glue_dev,
    sample_sst2_train,
    save_json,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--n-test", type=int, default=872)
    parser.add_argument("--setfit", action="store_true", help="also run SetFit's defaults")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE", help="AlbertVectorizer options"
    )
    return parser.parse_args(argv)


def few_labels(per_class, seed, pool):
    """``per_class`` sentences of each label from ``pool``, drawn with ``seed``."""
    texts, labels = pool
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(labels == label), per_class, replace=False) for label in (0, 1)]
    )
    return [texts[row] for row in rows], labels[rows]


def run_pipeline(model, options, seed, train, test):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_albert import AlbertVectorizer, clear_cache

    clear_cache(models=False)
    pipe = make_pipeline(
        AlbertVectorizer(model, random_state=seed, **options), LogisticRegression(max_iter=1000)
    )
    started = time.perf_counter()
    pipe.fit(*train)
    seconds = time.perf_counter() - started
    history = getattr(pipe[0], "fine_tune_history_", None)
    return {
        "fit_s": seconds,
        "accuracy": float(pipe.score(*test)),
        "losses": None if history is None else [record["train_loss"] for record in history],
    }


def run_setfit(model, seed, train, test):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    started = time.perf_counter()
    setfit_model = SetFitModel.from_pretrained(str(model))
    # No checkpoint written (SetFit's default saves one into ./checkpoints): not its cost.
    arguments = TrainingArguments(
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
        output_dir=tempfile.mkdtemp(prefix="setfit-"),
    )
    dataset = Dataset.from_dict({"text": train[0], "label": [int(v) for v in train[1]]})
    Trainer(model=setfit_model, args=arguments, train_dataset=dataset).train()
    seconds = time.perf_counter() - started
    predictions = np.asarray(setfit_model.predict(test[0]))
    return {"fit_s": seconds, "accuracy": float((predictions == np.asarray(test[1])).mean())}


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_transformers()
    options = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            options[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[name] = value
    model = minilm_folder()
    pool = sample_sst2_train(10**6)
    dev_texts, dev_labels = read_sst2_glue_dev()
    test = (dev_texts[: args.n_test], dev_labels[: args.n_test])
    rounds = []
    for seed in args.seeds:
        train = few_labels(args.per_class, seed, pool)
        record = {"seed": seed, "load_before": os.getloadavg()}
        record["frozen"] = run_pipeline(model, {}, seed, train, test)
        record["contrastive"] = run_pipeline(
            model, {"fine_tune": "contrastive", **options}, seed, train, test
        )
        if args.setfit:
            record["setfit"] = run_setfit(model, seed, train, test)
            record["time_ratio"] = record["contrastive"]["fit_s"] / record["setfit"]["fit_s"]
        record["load_after"] = os.getloadavg()
        print(json.dumps(record), flush=True)
        rounds.append(record)
    summary = {
        name: float(np.mean([r[name]["accuracy"] for r in rounds]))
        for name in ("frozen", "contrastive", "setfit")
        if name in rounds[0]
    }
    print("mean accuracy:", json.dumps(summary))
    if args.setfit:
        print("contrastive / setfit fit time:", [round(r["time_ratio"], 2) for r in rounds])
    save_json(
        "few_shot_sst2",
        {"args": vars(args), "options": options, "rounds": rounds, "machine": machine_info()},
    )


if __name__ == "__main__":
    main()
