"""Peak memory of one large transform, against the model and the output it must hold.

A fresh child process imports torch, transformers and sklearn_albert, makes the texts,
loads the model (``fit``), and only then runs one ``transform`` of all the texts with
default settings. Its resident memory is read at each stage, and the peak during the
transform is the kernel's high-water mark, reset just before it (``PeakRSS``). Running in a
child keeps the parent's own imports and allocations out of the figures.

The issue's target: peak RSS <= model + output array + 300 MB, where the process that
already holds Python, torch and the texts is the floor, that is

    peak - RSS(after imports and texts) <= model weights + output array + 300 MB.

Both that check and the plain figures are reported, so any other reading of the target can
be checked from the JSON.

Examples
--------
``python benchmarks/bench_memory.py --quick``  (2,000 texts)
``python benchmarks/bench_memory.py``  (100,000 short texts, real MiniLM)
``python benchmarks/bench_memory.py --model albert-base``  (slower: 8x the compute)
"""

import argparse
import json
import os
import subprocess
import sys
import time

import _common as common

RESULT_MARK = "BENCH_MEMORY_RESULT "
ALLOWANCE_MB = 300


# ---------------------------------------------------------------------- the child


def measure_in_this_process(model_name, n_texts, device, embedding_cache):
    """Stage-by-stage RSS of loading ``model_name`` and transforming ``n_texts`` texts."""
    import gc

    stages = {"start": common.current_rss_bytes()}
    import torch  # noqa: F401 - imported here to be counted as part of the floor
    import transformers  # noqa: F401

    from sklearn_albert import AlbertVectorizer, cache_info

    common.quiet_transformers()
    stages["after_imports"] = common.current_rss_bytes()
    texts = common.distinct_generated_sentences(n_texts)
    stages["after_texts"] = common.current_rss_bytes()

    folder = common.model_folder(model_name)
    vectorizer = AlbertVectorizer(str(folder), device=device, embedding_cache=embedding_cache)
    with common.PeakRSS() as loading:
        vectorizer.fit(["warm up"])
    gc.collect()
    stages["after_model_load"] = common.current_rss_bytes()
    print(f"  model loaded; transforming {n_texts} texts ...", file=sys.stderr, flush=True)

    with common.PeakRSS() as transforming:
        start = time.perf_counter()
        features = vectorizer.transform(texts)
        seconds = time.perf_counter() - start
    stages["after_transform"] = common.current_rss_bytes()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    token_counts = common.count_tokens(tokenizer, texts, vectorizer.max_length_)
    return {
        "rss_bytes": stages,
        "model_load_peak_bytes": loading.peak,
        "transform_peak_bytes": transforming.peak,
        "peak_method": transforming.method,
        "model_bytes": weight_bytes(folder),
        "output_bytes": int(features.nbytes),
        "output_shape": list(features.shape),
        "transform_s": seconds,
        "dtype": vectorizer.dtype_,
        "device": vectorizer.device_,
        "n_tokens_mean": sum(token_counts) / len(token_counts),
        "cache_after_transform": cache_info(),
    }


def weight_bytes(folder):
    """Size of the checkpoint's weights as stored (float32 safetensors or a torch bin)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = folder / name
        if path.exists():
            return path.stat().st_size
    raise FileNotFoundError(f"No weights file in {folder}")


# ---------------------------------------------------------------------- the parent


def measure_in_child(args):
    """Run :func:`measure_in_this_process` in a fresh interpreter and return its result."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--model",
        args.model,
        "--n-texts",
        str(args.n_texts),
        "--device",
        args.device,
        "--embedding-cache",
        args.embedding_cache,
    ]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise SystemExit(f"The measuring process failed (exit code {completed.returncode}).")


def judge(child):
    """The target check and the figures a reader compares, in MB."""
    mb = common.megabytes
    stages = {name: mb(value) for name, value in child["rss_bytes"].items()}
    floor = stages["after_texts"]
    peak = mb(child["transform_peak_bytes"])
    model, output = mb(child["model_bytes"]), mb(child["output_bytes"])
    budget = floor + model + output + ALLOWANCE_MB
    cache = mb(child["cache_after_transform"]["bytes"])
    return {
        "rss_mb": stages,
        "baseline_rss_mb": stages["after_model_load"],
        "model_load_peak_mb": mb(child["model_load_peak_bytes"]),
        "peak_rss_mb": peak,
        "model_mb": model,
        "output_mb": output,
        "budget_mb": budget,
        "peak_over_floor_mb": peak - floor,
        "transform_increase_mb": peak - stages["after_model_load"],
        "headroom_mb": budget - peak,
        "within_target": peak <= budget,
        # The in-memory embedding cache keeps what it can hold (up to its bound, 1 GiB by
        # default) on purpose; this tells its share apart from the encode loop's own.
        "embedding_cache_mb": cache,
        "within_target_without_cache": peak - cache <= budget,
    }


def print_report(result):
    figures = result["figures"]
    child = result["child"]
    print(
        f"\n{result['model']} ({child['dtype']} on {child['device']}): transform of "
        f"{result['n_texts']} texts in {child['transform_s']:.0f}s, output "
        f"{tuple(child['output_shape'])} float32, {child['n_tokens_mean']:.1f} tokens per text"
    )
    rows = [
        {"stage": f"RSS {name.replace('_', ' ')}", "mb": value}
        for name, value in figures["rss_mb"].items()
    ]
    rows += [
        {"stage": "peak during model load", "mb": figures["model_load_peak_mb"]},
        {"stage": "PEAK during transform", "mb": figures["peak_rss_mb"]},
        {"stage": "model weights", "mb": figures["model_mb"]},
        {"stage": "output array", "mb": figures["output_mb"]},
        {"stage": "transform's increase over baseline", "mb": figures["transform_increase_mb"]},
        {"stage": f"budget: floor + model + output + {ALLOWANCE_MB}", "mb": figures["budget_mb"]},
    ]
    print(common.format_table(rows, [("memory", "stage", "{}"), ("MB", "mb", "{:.0f}")]))
    verdict = "within" if figures["within_target"] else "OVER"
    print(
        f"peak is {verdict} the target by {abs(figures['headroom_mb']):.0f} MB "
        f"(floor = RSS after imports and texts; peak measured by {child['peak_method']})"
    )
    cache = child["cache_after_transform"]
    used, bound = common.megabytes(cache["bytes"]), common.megabytes(cache["max_bytes"])
    print(
        f"embedding cache after the transform: {cache['entries']} entries, {used:.0f} MB of "
        f"its {bound:.0f} MB bound; without it the peak is "
        f"{'within' if figures['within_target_without_cache'] else 'still OVER'} the target"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=common.MODEL_NAMES, default="minilm")
    parser.add_argument("--n-texts", type=int, default=100_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--embedding-cache",
        default="memory",
        help='"memory" (the default setting), "none", or a folder',
    )
    parser.add_argument("--quick", action="store_true", help="smoke run on 2,000 texts")
    parser.add_argument("--out", default=None, help=f"result folder (default {common.RESULTS_DIR})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_texts = min(args.n_texts, 2_000)
    return args


def main(argv=None):
    args = parse_args(argv)
    cache = None if args.embedding_cache == "none" else args.embedding_cache
    if args.child:
        child = measure_in_this_process(args.model, args.n_texts, args.device, cache)
        print(RESULT_MARK + json.dumps(child), flush=True)
        return child
    print(
        f"Measuring {args.n_texts} texts on {args.model} in a fresh process; "
        f"load average {os.getloadavg()}"
    )
    child = measure_in_child(args)
    result = {
        "benchmark": "memory",
        "created": common.utc_now(),
        "quick": args.quick,
        "machine": common.machine_info(),
        "model": args.model,
        "n_texts": args.n_texts,
        "texts": "generated, distinct, 2 to 14 words",
        "embedding_cache": args.embedding_cache,
        "allowance_mb": ALLOWANCE_MB,
        "figures": judge(child),
        "child": child,
        "load_average_after": list(os.getloadavg()),
    }
    print_report(result)
    path = common.save_json(f"memory-{args.model}", result, args.out)
    print(f"\nsaved {path}")
    return result


if __name__ == "__main__":
    main()
