"""What running on Dask costs: 2 worker processes x 1 thread against 1 process x 2 threads.

On one machine the engine can only cost, never gain, compute: the figure of merit is the
throughput ratio (texts/s on the cluster over texts/s in one process, goal >= 0.9, i.e.
at most 10% lost to scheduling, serialisation and per-partition batching). Measured, in
this order:

1. in-process: ``AlbertVectorizer.transform`` of the texts, torch at 2 threads, after a
   warm-up transform (the model loaded), no embedding cache;
2. the same vectorizer on ``LocalCluster(n_workers=2, threads_per_worker=1,
   processes=True)`` (dask gives each worker process OMP_NUM_THREADS=1, checked): after
   a warm-up job, ``vectorizer.transform(dask Series).compute()`` over ``--partitions``
   partitions (4 by default: 1,250 texts each; each partition is length-sorted and
   batched on its own, so with partitions of a few hundred texts the batches pad more
   than one process sorting all 5,000: 20 partitions of 250 gave a ratio of 0.78, and the
   same slowdown without dask, 10 calls of 250 texts against one of 2,500 in a worker).
   1 and 2 alternate for ``--rounds`` rounds (the cluster sits idle during
   1) and the medians are compared;
3. the task graph: pickled bytes of each partition's embedding task and of the one key
   holding the estimator (default pickle, and with ``store_weights_in_pickle=True``);
4. model loads per worker process, counted by a pass-through wrapper around
   transformers' ``from_pretrained`` installed in each worker before it loads anything;
5. recovery: ``embed_to_parquet`` of ``--recovery-texts`` texts, once undisturbed, once
   with the busiest worker SIGKILLed after a third of the parts are written: the seconds
   until the nanny's replacement worker is back, the extra job time, and a check that
   every id is written exactly once.

Examples
--------
``python benchmarks/bench_distributed.py --quick`` (smoke run: tiny counts)
``flock -x /tmp/sklearn_albert_bench.lock python benchmarks/bench_distributed.py``
(5,000 SST-2 train sentences, ALBERT-base random weights: about 5 min on 2 idle cores)
"""

import argparse
import os
import signal
import statistics
import tempfile
import threading
import time
import warnings

import _common as common
import numpy as np


def _worker_facts(dask_worker):
    import torch

    from sklearn_albert import _hosts

    return {
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads(),
        "model_loads": dask_worker.sklearn_albert_model_loads["count"],
        "estimators_unpickled": _hosts.process_counts()["estimators_unpickled"],
    }


def load_texts(n_texts):
    if common.sst2_train_path().exists():
        texts, _ = common.sample_sst2_train(n_texts, seed=0, distinct=True)
        return texts, "sst2-train"
    print("SST-2 is not available here; using generated sentences.")
    return common.distinct_generated_sentences(n_texts), "generated"


def in_process(vectorizer, texts):
    import torch

    torch.set_num_threads(2)
    vectorizer.transform(texts[:64])  # warm-up: kernels, packed weights
    started = time.perf_counter()
    vectorizer.transform(texts)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "texts_per_second": len(texts) / seconds, "torch_threads": 2}


def warm_up_cluster(vectorizer, texts):
    """A first small job: each worker loads the model (the timed jobs then reuse it)."""
    import dask.dataframe as dd
    import pandas as pd

    warm = dd.from_pandas(pd.Series(texts[:64], name="text"), npartitions=2)
    started = time.perf_counter()
    vectorizer.transform(warm).compute()
    return time.perf_counter() - started


def on_cluster(vectorizer, series, n_texts):
    started = time.perf_counter()
    result = vectorizer.transform(series).compute()
    seconds = time.perf_counter() - started
    assert result.shape == (n_texts, vectorizer.n_features_out_)
    return {"seconds": seconds, "texts_per_second": n_texts / seconds}


def graph_bytes(vectorizer, series):
    """Pickled bytes of the graph's estimator key and of each partition's task."""
    import cloudpickle
    from sklearn.base import clone

    def measure(estimator):
        graph = dict(estimator.transform(series).__dask_graph__())
        sizes = {key: len(cloudpickle.dumps(task)) for key, task in graph.items()}
        estimator_keys = [key for key in sizes if "sklearn-albert-estimator" in str(key)]
        tasks = [n for key, n in sizes.items() if "embed_block" in key[0] and len(key) == 2]
        inputs = [n for key, n in sizes.items() if "frompandas" in str(key)]
        return {
            "estimator_keys": len(estimator_keys),
            "estimator_key_bytes": sum(sizes[key] for key in estimator_keys),
            "task_bytes_per_partition": float(np.mean(tasks)),
            "task_bytes_max": max(tasks),
            "input_data_bytes_per_partition": float(np.mean(inputs)),
        }

    with_weights = clone(vectorizer).set_params(store_weights_in_pickle=True).fit([])
    return {"default_pickle": measure(vectorizer), "weights_in_pickle": measure(with_weights)}


def recovery(client, vectorizer, texts, n_partitions):
    """embed_to_parquet undisturbed, then with a worker SIGKILLed a third of the way."""
    import dask.dataframe as dd
    import pandas as pd

    from sklearn_albert.distributed import embed_to_parquet

    frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=n_partitions)
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as folder:
        plain = embed_to_parquet(frame, f"{folder}/plain", vectorizer, progress=False)
        output = f"{folder}/killed"
        outcome = {}

        def job():
            outcome["summary"] = embed_to_parquet(frame, output, vectorizer, progress=False)

        runner = threading.Thread(target=job)
        runner.start()
        victim = None
        while victim is None and runner.is_alive():
            if _parts_written(output) >= n_partitions // 3:
                pids = client.run(os.getpid)
                busy = [address for address, keys in client.processing().items() if keys]
                victim = pids[busy[0]] if busy else None
            time.sleep(0.01)
        if victim is None:
            runner.join()
            return {"error": "the job ended before a worker could be killed"}
        killed_at = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        back = None
        while back is None and time.perf_counter() - killed_at < 300:
            pids = _worker_pids(client)
            if len(pids) == 2 and victim not in pids:
                back = time.perf_counter() - killed_at
            elif int(time.perf_counter() - killed_at) % 15 == 0:
                print(f"  waiting for the replacement worker: workers now {pids}", flush=True)
            time.sleep(0.2)
        print(f"  killed worker {victim}; replacement up after {back} s", flush=True)
        runner.join()
        written = pd.read_parquet(output)
        return {
            "texts": len(texts),
            "partitions": n_partitions,
            "undisturbed_seconds": plain.seconds,
            "with_kill_seconds": outcome["summary"].seconds,
            "extra_seconds": outcome["summary"].seconds - plain.seconds,
            "replacement_worker_up_seconds": back,
            "every_id_once": sorted(written["id"]) == list(range(len(texts))),
            "leftover_files": sorted(n for n in os.listdir(output) if n.startswith(".")),
        }


def _worker_pids(client):
    """Process ids of the workers that answer now (a dying one may not)."""
    from distributed.comm.core import CommClosedError

    try:
        return set(client.run(os.getpid, on_error="ignore").values())
    except (CommClosedError, OSError):
        return set()


def _parts_written(folder):
    if not os.path.isdir(folder):
        return 0
    return sum(name.startswith("part-") for name in os.listdir(folder))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=common.MODEL_NAMES, default="albert-base")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of the timed job (4: 1,250 texts each, the size docs/scaling.rst "
        "advises; small partitions pad more, see the docstring)",
    )
    parser.add_argument("--recovery-texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    parser.add_argument("--skip-recovery", action="store_true", help="no killed-worker run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 texts")
    parser.add_argument("--out", default=None, help=f"result folder (default {common.RESULTS_DIR})")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.partitions, args.recovery_texts, args.rounds = 200, 8, 200, 1
    common.quiet_transformers()
    warnings.filterwarnings("ignore", message=".*truncated.*")

    from distributed import Client, LocalCluster

    from sklearn_albert import AlbertVectorizer

    folder = common.model_folder(args.model)
    texts, source = load_texts(args.texts)
    machine = common.machine_info()
    vectorizer = AlbertVectorizer(str(folder), embedding_cache=None).fit([])
    print(f"{args.model}: {len(texts)} {source} texts, dtype {vectorizer.dtype_}")

    import dask.dataframe as dd
    import pandas as pd

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        import _dask_plugins  # tests/, on the path through _common
        import cloudpickle

        cloudpickle.register_pickle_by_value(_dask_plugins)  # workers need not import it
        client.register_plugin(_dask_plugins.CountModelLoads())
        series = dd.from_pandas(pd.Series(texts, name="text"), npartitions=args.partitions)
        warm_up = warm_up_cluster(vectorizer, texts)
        # Rounds alternate which side goes first; the idle cluster costs nothing meanwhile.
        rounds = []
        for round_ in range(args.rounds):
            sides = ("in_process", "cluster") if round_ % 2 == 0 else ("cluster", "in_process")
            measured = {}
            for side in sides:
                if side == "in_process":
                    measured[side] = in_process(vectorizer, texts)
                else:
                    measured[side] = on_cluster(vectorizer, series, len(texts))
            measured["ratio"] = (
                measured["cluster"]["texts_per_second"] / measured["in_process"]["texts_per_second"]
            )
            print(
                f"round {round_ + 1}: in-process 1 x 2 threads "
                f"{measured['in_process']['texts_per_second']:.1f} texts/s, cluster 2 x 1 "
                f"thread {measured['cluster']['texts_per_second']:.1f} texts/s, ratio "
                f"{measured['ratio']:.3f}",
                flush=True,
            )
            rounds.append(measured)
        facts = list(client.run(_worker_facts).values())
        print(f"workers: {facts}", flush=True)
        graph = graph_bytes(vectorizer, series)
        recovered = None
        if not args.skip_recovery:
            recovered = recovery(
                client, vectorizer, texts[: args.recovery_texts], max(6, args.partitions // 2)
            )
    local_tps = statistics.median(r["in_process"]["texts_per_second"] for r in rounds)
    cluster_tps = statistics.median(r["cluster"]["texts_per_second"] for r in rounds)
    ratio = cluster_tps / local_tps
    print(f"in-process 1 x 2 threads: {local_tps:.1f} texts/s (median of {len(rounds)})")
    print(
        f"cluster 2 x 1 thread:     {cluster_tps:.1f} texts/s over {args.partitions} "
        f"partitions (median; warm-up job {warm_up:.1f} s)"
    )
    print(f"throughput ratio:         {ratio:.3f} (goal >= 0.9)")
    print(f"workers:                  {facts}")
    default = graph["default_pickle"]
    weights = graph["weights_in_pickle"]
    print(
        f"graph bytes:              {default['task_bytes_per_partition']:.0f} per partition task"
        f", estimator key {default['estimator_key_bytes']} B once "
        f"({weights['estimator_key_bytes'] / 2**20:.1f} MiB once with weights, tasks still "
        f"{weights['task_bytes_per_partition']:.0f} B); input data "
        f"{default['input_data_bytes_per_partition']:.0f} B per partition"
    )
    print(f"recovery:                 {recovered}")
    payload = {
        "script": "bench_distributed.py",
        "when": common.utc_now(),
        "model": args.model,
        "dtype": vectorizer.dtype_,
        "texts": len(texts),
        "text_source": source,
        "quick": args.quick,
        "partitions": args.partitions,
        "rounds": rounds,
        "in_process_texts_per_second": local_tps,
        "cluster_texts_per_second": cluster_tps,
        "cluster_warm_up_seconds": warm_up,
        "throughput_ratio": ratio,
        "workers": facts,
        "graph": graph,
        "recovery": recovered,
        "machine": machine,
        "load_average_after": list(os.getloadavg()),
    }
    print(f"Wrote {common.save_json('distributed', payload, args.out)}")


if __name__ == "__main__":  # the workers unpickle this script's functions by value
    main()
