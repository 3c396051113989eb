"""How bfloat16 Linear layers are called on a CPU with AMX: speed of each batch-invariant layout.

oneDNN's AMX kernels choose how to block a matmul's sum from its height and thread count,
so that a text's vector would depend on its batch. ``PackedLinear`` therefore runs each
bfloat16 Linear layer in calls of a fixed number of rows (``AMX_ROWS_PER_CALL``). Calls of
32 rows keep every row's bits at any thread count; taller calls keep them on one thread
only, so the library runs its 128-row calls on one thread (``_threads.one_torch_thread``),
parallel work coming from the CPU streams. This script times, in one process and
interleaved round by round, on the same ALBERT-base architecture (seeded weights) and the
872 SST-2 dev sentences:

* ``rows=32, all threads``: the layout before (32-row calls on the caller's threads);
* ``rows=64, one thread`` and ``rows=128, one thread`` (the default now);
* ``switch off``: ``SKLEARN_ALBERT_CPU_BATCH_INVARIANT=0`` (one call per matrix on all
  threads, batch-dependent bits).

For each: texts/s over the 872 sentences in one call, the mean latency of 40 one-sentence
calls, and the mean time of calls of 16 sentences. Nothing is cached
(``embedding_cache=None``). The layouts other than the default are set by replacing
``AMX_ROWS_PER_CALL`` and ``one_torch_thread`` in ``sklearn_albert._cpu.packed_linear`` for the
duration of their turn. On a CPU without AMX every layout runs the same code.

Example: ``python benchmarks/bench_amx_calls.py --rounds 3``
"""

import argparse
import contextlib
import os
import statistics
import time

import _common as common
import torch

from sklearn_albert import AlbertVectorizer
from sklearn_albert._cpu import packed_linear
from sklearn_albert._devices import cpu_has_amx

DEFAULT_ONE_THREAD = packed_linear.one_torch_thread
SWITCH = "SKLEARN_ALBERT_CPU_BATCH_INVARIANT"

LAYOUTS = {
    "rows=32, all threads": (32, contextlib.nullcontext, None),
    "rows=64, one thread": (64, DEFAULT_ONE_THREAD, None),
    "rows=128, one thread (default)": (128, DEFAULT_ONE_THREAD, None),
    "switch off": (128, DEFAULT_ONE_THREAD, "0"),
}


@contextlib.contextmanager
def layout(rows, one_thread, switch):
    saved = packed_linear.AMX_ROWS_PER_CALL, packed_linear.one_torch_thread
    saved_switch = os.environ.get(SWITCH)
    packed_linear.AMX_ROWS_PER_CALL, packed_linear.one_torch_thread = rows, one_thread
    os.environ[SWITCH] = "1" if switch is None else switch
    try:
        yield
    finally:
        packed_linear.AMX_ROWS_PER_CALL, packed_linear.one_torch_thread = saved
        if saved_switch is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = saved_switch


def one_round(vectorizer, texts):
    started = time.perf_counter()
    vectorizer.transform(texts)
    texts_per_second = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in texts[:40]:
        vectorizer.transform([text])
    single_ms = (time.perf_counter() - started) / 40 * 1e3
    started = time.perf_counter()
    for start in range(0, 160, 16):
        vectorizer.transform(texts[start : start + 16])
    sixteen_ms = (time.perf_counter() - started) / 10 * 1e3
    return texts_per_second, single_ms, sixteen_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_transformers()
    texts = common.read_sst2_glue_dev()[0]
    vectorizer = AlbertVectorizer(str(common.albert_base_folder()), embedding_cache=None)
    vectorizer.fit(texts[:2])
    print(
        f"{len(texts)} texts; {torch.get_num_threads()} torch threads; AMX: {cpu_has_amx()}; "
        f"dtype_: {vectorizer.dtype_}; load average {os.getloadavg()}"
    )
    samples = {name: [] for name in LAYOUTS}
    for round_index in range(args.rounds):
        for name, settings in LAYOUTS.items():
            with layout(*settings):
                vectorizer.transform(texts[:8])  # warm the kernels of this layout
                samples[name].append(one_round(vectorizer, texts))
        print(f"round {round_index + 1}/{args.rounds} done")
    rows = []
    for name, values in samples.items():
        speed, single, sixteen = (statistics.median(column) for column in zip(*values))
        rows.append(
            {
                "layout": name,
                "texts/s": round(speed, 1),
                "rounds": " ".join(f"{value[0]:.1f}" for value in values),
                "1 text ms": round(single, 1),
                "16 texts ms": round(sixteen, 1),
            }
        )
    columns = [(key, key, "{}") for key in rows[0]]
    print(common.format_table(rows, columns))
    print(f"load average after: {os.getloadavg()}")
    path = common.save_json(
        "amx-calls",
        {"machine": common.machine_info(), "rounds": args.rounds, "rows": rows, "samples": samples},
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
