"""What checksum verification costs the embedding cache, replaying a grid search's lookups.

In one process, N texts of ALBERT-base's shape (13 hidden states x 768, float16, with a
pooler) filled with synthetic vectors are stored once in each store:

* the memory store, with a RAM bound of half the data, so that about half the blocks live
  in the spill file (whose reads are verified; RAM blocks carry no checksums);
* the folder store, in a temporary folder (every read verified).

Then, in interleaved rounds (verification on, off, on, off...; which goes first alternates
each round), each store replays what ``GridSearchCV`` over pooling {cls, mean, max} x layers
{-1, -2} asks of it: per setting, 4 lookups of every text (3 folds' fits and the refit), in
chunks of 4,096 as the vectorizer does, asking only the summary and layer the setting reads.
``store`` is timed too, into a fresh store per round (its checksums are always computed).
The switch is ``sklearn_albert._cache._integrity.VERIFY``, which only benchmarks flip.

Examples
--------
``python benchmarks/bench_cache_integrity.py --n-texts 2000 --rounds 2``
``python benchmarks/bench_cache_integrity.py --n-texts 20000 --rounds 3``
"""

import argparse
import json
import shutil
import tempfile
import time

import numpy as np

N_HIDDEN_STATES, DIM = 13, 768
POOLINGS = ("cls", "mean", "max")
LAYERS = (-1, -2)
LOOKUPS_PER_SETTING = 4
CHUNK = 4096  # the vectorizer's ASSEMBLY_CHUNK
STORE_BATCH = 512
ROW_BYTES = (3 * N_HIDDEN_STATES + 1) * DIM * 2


def synthetic_batches(texts, seed=0):
    """(texts, Encodings) batches of the shape ALBERT-base gives, distinct per text."""
    from sklearn_albert._cache import Encodings

    rng = np.random.default_rng(seed)
    base = rng.standard_normal((STORE_BATCH, 3, N_HIDDEN_STATES, DIM), dtype=np.float32)
    for first in range(0, len(texts), STORE_BATCH):
        chunk = texts[first : first + STORE_BATCH]
        shift = rng.standard_normal((len(chunk), 1, 1, DIM), dtype=np.float32)
        summaries = base[: len(chunk)] + shift
        yield (
            chunk,
            Encodings(
                summaries,
                summaries[:, 1, -1].copy(),
                np.full(len(chunk), 12, dtype=np.int64),
                np.zeros(len(chunk), dtype=bool),
            ),
        )


def fill(cache, texts):
    """Store every text; the seconds it took."""
    start = time.perf_counter()
    for chunk, encodings in synthetic_batches(texts):
        cache.store("bench", chunk, encodings, storage_dtype="float16")
    return time.perf_counter() - start


def replay(cache, texts):
    """A grid search's lookups of ``texts``; the seconds they took."""
    start = time.perf_counter()
    for pooling in POOLINGS:
        for layer in LAYERS:
            layers = (N_HIDDEN_STATES + layer,)
            for _ in range(LOOKUPS_PER_SETTING):
                for first in range(0, len(texts), CHUNK):
                    found, _ = cache.lookup(
                        "bench", texts[first : first + CHUNK], layers, kinds=[pooling]
                    )
                    if not found.all():
                        raise RuntimeError("a stored text was not found: the replay is void")
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-texts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where the folder store goes (a temp dir)")
    args = parser.parse_args(argv)

    from sklearn_albert._cache import DiskCache, MemoryCache, _integrity

    texts = [f"synthetic text {i}" for i in range(args.n_texts)]
    data_bytes = args.n_texts * ROW_BYTES
    root = tempfile.mkdtemp(prefix="bench_cache_integrity_", dir=args.folder)
    stores = {
        "memory": lambda: MemoryCache(max_bytes=data_bytes // 2),
        "folder": lambda round_: DiskCache(f"{root}/round{round_}"),
    }
    per_round = []
    try:
        memory = stores["memory"]()
        folder = stores["folder"]("replay")
        fill(memory, texts)
        fill(folder, texts)
        info = memory.info()
        print(
            f"{args.n_texts} texts, {data_bytes / 2**20:.0f} MiB of vectors; memory store: "
            f"{info['spilled_entries']} texts in the spill file; folder store in {root}",
            flush=True,
        )
        for round_ in range(args.rounds):
            figures = {"round": round_}
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for verify in order:
                _integrity.VERIFY = verify
                mode = "on" if verify else "off"
                figures[f"memory_lookups_{mode}_s"] = replay(memory, texts)
                figures[f"folder_lookups_{mode}_s"] = replay(folder, texts)
            _integrity.VERIFY = True
            figures["memory_store_s"] = fill(stores["memory"](), texts)
            fresh = stores["folder"](round_)
            figures["folder_store_s"] = fill(fresh, texts)
            fresh.close()
            shutil.rmtree(f"{root}/round{round_}")  # at most two folder stores at a time
            per_round.append(figures)
            print(json.dumps({k: round(v, 3) for k, v in figures.items()}), flush=True)
    finally:
        _integrity.VERIFY = True
        shutil.rmtree(root, ignore_errors=True)

    n_lookups = len(POOLINGS) * len(LAYERS) * LOOKUPS_PER_SETTING
    print(f"\n{n_lookups} lookups of {args.n_texts} texts per replay; seconds summed over rounds")
    for store in ("memory", "folder"):
        on = sum(f[f"{store}_lookups_on_s"] for f in per_round)
        off = sum(f[f"{store}_lookups_off_s"] for f in per_round)
        stored = sum(f[f"{store}_store_s"] for f in per_round)
        print(
            f"{store:>6}: lookups verified {on:.2f} s, unverified {off:.2f} s, "
            f"ratio {on / off:.2f}; store {stored / len(per_round):.2f} s per fill"
        )


if __name__ == "__main__":
    main()
