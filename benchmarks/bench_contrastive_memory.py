"""Memory of one contrastive step: the whole batch against gradient caching in chunks.

When a step of ``AlbertVectorizer(fine_tune="contrastive")`` runs out of memory, it is
retried in chunks with gradient caching (``_contrastive.train_step``). This measures what
that buys and costs on the real all-MiniLM-L6-v2 (dropout on, as in training): one step on
the 16 longest of the first 200 texts of the 20 Newsgroups four-class subset (cut to
``max_length=256``), whole, then in chunks of ``--chunk`` texts. Each variant runs in a
child process of its own (the peak resident memory is the child's ``ru_maxrss``: the
increase during the step, after AdamW's state was allocated by a warm-up step on two
texts), one thread, variants alternated from round to round. CPU seconds, not wall time,
compare on a shared machine.

Run from the repository root, offline::

    python benchmarks/bench_contrastive_memory.py --rounds 2 --chunk 4
"""

import argparse
import json
import os
import subprocess
import sys

from _common import REPO_ROOT, SHARED, minilm_folder

CHILD = r"""
import json, resource, sys, time
from types import SimpleNamespace
import torch
from transformers import AutoModel, AutoTokenizer
from sklearn_albert._contrastive import train_step
from sklearn_albert._finetuning import make_optimization

folder, data, chunk = sys.argv[1], sys.argv[2], sys.argv[3]
chunk = None if chunk == "none" else int(chunk)
torch.set_num_threads(1)
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder).train()
rows = [json.loads(line) for line in open(data)][:200]
texts = sorted((row["text"] for row in rows), key=len)[-16:]
batch = tokenizer(texts, truncation=True, max_length=256, padding=True, return_tensors="pt")
tensors, labels = (batch["input_ids"], batch["attention_mask"]), torch.arange(16) % 4
settings = SimpleNamespace(pooling=("mean",), layers=(6,), layer_aggregation="mean")
optimization = make_optimization(
    model, learning_rate=5e-5, weight_decay=0.01, warmup=0.1, total_steps=10,
    compute_dtype=torch.float32,
)
options = dict(settings=settings, compute_dtype=torch.float32, batch_size=16)
warm_up = tuple(tensor[:2] for tensor in tensors)
train_step(model, optimization, warm_up, labels[:2], chunk_size=None, **options)
before, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
train_step(model, optimization, tensors, labels, chunk_size=chunk, **options)
print(json.dumps({
    "chunk": chunk,
    "tokens": list(tensors[0].shape),
    "step_peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
    "cpu_s": time.process_time() - cpu,
}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=4)
    args = parser.parse_args()
    data = SHARED / "data" / "20newsgroups" / "subset4_train.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    results = {"none": [], str(args.chunk): []}
    for round_ in range(args.rounds):
        variants = list(results) if round_ % 2 == 0 else list(results)[::-1]
        for variant in variants:
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(minilm_folder()), str(data), variant],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            record = json.loads(done.stdout.splitlines()[-1])
            print(json.dumps(record), flush=True)
            results[variant].append(record)
    whole, chunked = results["none"], results[str(args.chunk)]
    print(
        f"chunks of {args.chunk} / whole batch: peak memory "
        f"{mean(chunked, 'step_peak_mb') / mean(whole, 'step_peak_mb'):.2f}x, CPU time "
        f"{mean(chunked, 'cpu_s') / mean(whole, 'cpu_s'):.2f}x"
    )


def mean(records, key):
    return sum(record[key] for record in records) / len(records)


if __name__ == "__main__":
    main()
