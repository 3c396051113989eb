"""How bfloat16 Linear layers are called on a CPU with AMX: speed of each batch-invariant layout.

oneDNN's AMX kernels choose how to block a matmul's sum from its height and thread count,
so that a text's vector would depend on its batch. ``PackedLinear`` therefore runs each
bfloat16 Linear layer in calls of a fixed number of rows (``AMX_ROWS_PER_CALL``, now 256),
the rows left in calls of half or a quarter of that (``call_heights``, at least
``AMX_SHORT_CALL_ROWS`` = 64). Calls of 32 rows keep every row's bits at any thread count;
taller calls keep them on one thread only, so the library runs its calls on one thread
(``_threads.one_torch_thread``), parallel work coming from the CPU streams. This script
times, in one process and interleaved round by round, on the same ALBERT-base
architecture (seeded weights) and the 872 SST-2 dev sentences:

* ``rows=32, all threads``: the layout of 2026-12-06 (32-row calls on the caller's
  threads);
* ``rows=128, one thread``: the layout of 2026-12-07 04:00 (every call 128 rows);
* ``rows=256, copies``: today's heights, with the data movement of those two layouts
  (the whole input copied to add the zero rows, the outputs joined even for one call:
  ``copying_forward`` below);
* ``rows=256 (default)``: the layout now (only the last call's rows copied, one call's
  output returned as it is);
* ``switch off``: ``SKLEARN_ALBERT_CPU_BATCH_INVARIANT=0`` (one call per matrix on all
  threads, batch-dependent bits).

Running the part of each ALBERT layer after attention in blocks of 256 rows, so that
no Linear call's outputs are joined, was tried the same way (2026-12-07 07:40): 279.9
texts/s against 278.3, within the rounds' spread; it is not kept either.

Splitting calls of a few sentences across the streams from 32 tokens per stream
(``_batching.STREAM_MIN_TOKENS`` is 128) was tried with this script on 2026-12-07 and
made calls of 4 sentences slower (62.2 ms against 38.1); it is not kept.

For each: texts/s over the 872 sentences in one call, the mean latency of 40 one-sentence
calls, and the mean time of calls of 4 and of 16 sentences. Nothing is cached
(``embedding_cache=None``). The layouts other than the default are set by replacing
those constants, ``one_torch_thread`` and ``PackedLinear.forward`` in the library's
module for the duration of their turn. On a CPU without AMX every layout but ``switch
off`` runs the same code.

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


def copying_forward(self, inputs):
    """``PackedLinear.forward`` as it moved data before 2026-12-07 07:30 (for the layouts
    of that time): the whole input copied to add zero rows, every output joined."""
    inputs = inputs.to(self.dtype)
    tile = packed_linear.rows_per_call(self.dtype)
    if tile is None:
        return self._matmul(inputs.contiguous())
    rows = inputs.reshape(-1, inputs.shape[-1]).contiguous()
    n_rows = len(rows)
    heights = packed_linear.call_heights(n_rows, tile)
    if sum(heights) > n_rows:
        rows = torch.cat([rows, rows.new_zeros(sum(heights) - n_rows, rows.shape[1])])
    starts = [0]
    for height in heights[:-1]:
        starts.append(starts[-1] + height)
    with packed_linear.one_torch_thread():
        outputs = torch.cat(
            [self._matmul(rows[start : start + h]) for start, h in zip(starts, heights)]
        )
    return outputs[:n_rows].reshape(*inputs.shape[:-1], outputs.shape[-1])


DEFAULT_FORWARD = packed_linear.PackedLinear.forward
NOW = {
    "AMX_ROWS_PER_CALL": 256,
    "AMX_SHORT_CALL_ROWS": 64,
    "one_torch_thread": DEFAULT_ONE_THREAD,
    "forward": DEFAULT_FORWARD,
    "switch": "1",
}
BEFORE = {"forward": copying_forward}
LAYOUTS = {
    "rows=32, all threads": {
        **NOW,
        **BEFORE,
        "AMX_ROWS_PER_CALL": 32,
        "AMX_SHORT_CALL_ROWS": 32,
        "one_torch_thread": contextlib.nullcontext,
    },
    "rows=128, one thread": {
        **NOW,
        **BEFORE,
        "AMX_ROWS_PER_CALL": 128,
        "AMX_SHORT_CALL_ROWS": 128,
    },
    "rows=256, copies": {**NOW, **BEFORE},
    "rows=256 (default)": NOW,
    "switch off": {**NOW, "switch": "0"},
}


@contextlib.contextmanager
def layout(settings):
    """Run with ``settings``: constants of ``packed_linear``, its ``PackedLinear.forward``
    and the batch-invariance switch."""
    constants = ("AMX_ROWS_PER_CALL", "AMX_SHORT_CALL_ROWS", "one_torch_thread")
    saved = {name: getattr(packed_linear, name) for name in constants}
    saved_switch = os.environ.get(SWITCH)
    for name in constants:
        setattr(packed_linear, name, settings[name])
    packed_linear.PackedLinear.forward = settings["forward"]
    os.environ[SWITCH] = settings["switch"]
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(packed_linear, name, value)
        packed_linear.PackedLinear.forward = DEFAULT_FORWARD
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
    for start in range(0, 80, 4):
        vectorizer.transform(texts[start : start + 4])
    four_ms = (time.perf_counter() - started) / 20 * 1e3
    started = time.perf_counter()
    for start in range(0, 160, 16):
        vectorizer.transform(texts[start : start + 16])
    sixteen_ms = (time.perf_counter() - started) / 10 * 1e3
    return texts_per_second, single_ms, four_ms, sixteen_ms


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
            with layout(settings):
                vectorizer.transform(texts[:8])  # warm the kernels of this layout
                samples[name].append(one_round(vectorizer, texts))
        print(f"round {round_index + 1}/{args.rounds} done")
    rows = []
    for name, values in samples.items():
        speed, single, four, sixteen = (statistics.median(column) for column in zip(*values))
        rows.append(
            {
                "layout": name,
                "texts/s": round(speed, 1),
                "rounds": " ".join(f"{value[0]:.1f}" for value in values),
                "1 text ms": round(single, 1),
                "4 texts ms": round(four, 1),
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
