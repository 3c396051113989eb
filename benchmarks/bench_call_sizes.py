"""What a served pipeline loses to the size of its calls: one call against many small ones.

A server that batches one-text requests calls ``pipeline.predict`` on batches of a few
dozen texts (as many as the clients have in flight), where an offline job makes one call
on all its texts. This benchmark times the same fitted pipeline (``bench_serve.py``'s:
ALBERT-base architecture with seeded weights, the default dtype, LogisticRegression) on
the same SST-2 sentences, in one process, the modes interleaved round after round:

- ``one call``: ``predict`` on all the texts at once (the offline figure);
- ``calls of N``: consecutive slices of ``N`` texts, one call after another (what a
  server's single inference loop does with batches of ``N``);
- ``calls of N, K at a time``: the same slices taken from a shared queue by ``K`` threads
  (calls overlap, so that one call's last batch does not leave a CPU stream idle while
  the next call waits).

With ``--padded-too``, every mode also runs with ``SKLEARN_ALBERT_CPU_UNPADDED=0`` (ALBERT
on padded batches, as before ``_cpu/unpadded.py``), interleaved, its rows marked
"(padded)".

For each: texts/s, texts per CPU second of the process, cores busy, the ratio to ``one
call`` of the same round and the same variant, and the fraction of the matmul peak
measured in the same run (at torch's thread count, in the pipeline's dtype) that the
encoder's useful FLOPs (real tokens only, ``_common.encoder_flops``) reach.

Run from the repository root, offline, on a quiet machine::

    python benchmarks/bench_call_sizes.py --texts 1000 --sizes 36 56 --concurrency 1 2 --rounds 3 \
        --padded-too
"""

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from bench_serve import fit_pipeline, load_texts  # noqa: E402

UNPADDED_SWITCH = "SKLEARN_ALBERT_CPU_UNPADDED"


def run_mode(pipeline, texts, size, concurrency):
    """Seconds of wall and CPU time to predict ``texts`` in calls of ``size`` (None: one call)."""
    cpu_start, start = time.process_time(), time.perf_counter()
    if size is None:
        pipeline.predict(texts)
    else:
        slices = queue.Queue()
        for begin in range(0, len(texts), size):
            slices.put(texts[begin : begin + size])

        def work():
            while True:
                try:
                    part = slices.get_nowait()
                except queue.Empty:
                    return
                pipeline.predict(part)

        workers = [threading.Thread(target=work) for _ in range(concurrency)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return time.perf_counter() - start, time.process_time() - cpu_start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[36, 56])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fit-texts", type=int, default=200)
    parser.add_argument("--out", default=None, help="folder for the JSON result")
    parser.add_argument(
        "--padded-too",
        action="store_true",
        help="also run every mode with SKLEARN_ALBERT_CPU_UNPADDED=0, interleaved",
    )
    args = parser.parse_args()
    for name in ("texts", "rounds", "fit_texts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.sizes) < 1 or min(args.concurrency) < 1:
        parser.error("--sizes and --concurrency take integers of at least 1")

    common.quiet_transformers()
    import torch
    from transformers import AutoConfig, AutoTokenizer

    folder = common.albert_base_folder()
    pipeline = fit_pipeline(folder, args.fit_texts)
    texts, source = load_texts(args.texts)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokens = common.count_tokens(tokenizer, texts, pipeline[0].max_length_)
    flops = common.encoder_flops(AutoConfig.from_pretrained(str(folder)), tokens)
    dtype = pipeline[0].dtype_
    peak = max(common.matmul_peak(dtype if dtype != "int8" else "float32").values())
    pipeline.predict(texts[:64])  # warm-up: weights packed, streams started

    modes = [("one call", None, 1)] + [
        (f"calls of {size}" + (f", {k} at a time" if k > 1 else ""), size, k)
        for size in args.sizes
        for k in args.concurrency
    ]
    variants = {"": "1", " (padded)": "0"} if args.padded_too else {"": None}
    modes = [
        (label + suffix, size, k, switch)
        for label, size, k in modes
        for suffix, switch in variants.items()
    ]
    runs = {label: [] for label, *_ in modes}
    for round_index in range(args.rounds):
        for label, size, concurrency, switch in modes:
            if switch is not None:
                os.environ[UNPADDED_SWITCH] = switch  # read at each call
            wall, cpu = run_mode(pipeline, texts, size, concurrency)
            runs[label].append({"round": round_index, "wall_s": wall, "cpu_s": cpu})
            print(
                f"round {round_index}: {label:24s} {len(texts) / wall:6.1f} texts/s "
                f"{len(texts) / cpu:6.1f} texts per CPU s",
                flush=True,
            )

    rows = []
    for label, *_ in modes:
        one_call = runs["one call" + (" (padded)" if label.endswith("(padded)") else "")]
        ratios = [one_call[i]["wall_s"] / run["wall_s"] for i, run in enumerate(runs[label])]
        walls = [run["wall_s"] for run in runs[label]]
        cpus = [run["cpu_s"] for run in runs[label]]
        wall = statistics.median(walls)
        rows.append(
            {
                "mode": label,
                "texts_per_s": len(texts) / wall,
                "texts_per_cpu_s": len(texts) / statistics.median(cpus),
                "cores": statistics.median(c / w for c, w in zip(cpus, walls)),
                "vs_one_call": statistics.median(ratios),
                "vs_one_call_min": min(ratios),
                "vs_one_call_max": max(ratios),
                "peak_fraction": flops / wall / 1e9 / peak,
            }
        )
    print()
    print(
        f"{len(texts)} texts ({source}), {statistics.mean(tokens):.1f} tokens per text, "
        f"dtype {dtype}, {torch.get_num_threads()} torch threads, matmul peak "
        f"{peak:.0f} GFLOP/s (all threads); medians over {args.rounds} rounds"
    )
    print(
        common.format_table(
            rows,
            [
                ("mode", "mode", "{}"),
                ("texts/s", "texts_per_s", "{:.1f}"),
                ("texts per CPU s", "texts_per_cpu_s", "{:.1f}"),
                ("cores", "cores", "{:.2f}"),
                ("vs one call", "vs_one_call", "{:.2f}"),
                ("min", "vs_one_call_min", "{:.2f}"),
                ("max", "vs_one_call_max", "{:.2f}"),
                ("of matmul peak", "peak_fraction", "{:.1%}"),
            ],
        )
    )
    path = common.save_json(
        "call_sizes",
        {
            "script": "benchmarks/bench_call_sizes.py",
            "argv": sys.argv[1:],
            "machine": common.machine_info(),
            "when": common.utc_now(),
            "texts": len(texts),
            "source": source,
            "mean_tokens": statistics.mean(tokens),
            "dtype": dtype,
            "matmul_peak_gflops": peak,
            "runs": runs,
            "rows": rows,
        },
        args.out,
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
