"""sklearn_albert.distributed on a real dask.distributed LocalCluster of worker processes.

One cluster (2 worker processes x 1 thread) serves the whole module; the test that kills
a worker runs last. Model loads are counted in each worker process by a pass-through
wrapper around transformers' ``from_pretrained``, installed before any test runs.
"""

import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

pd = pytest.importorskip("pandas", reason="needs pandas (pip install .[test])")
pa = pytest.importorskip("pyarrow", reason="needs pyarrow (pip install .[test])")
dask = pytest.importorskip("dask", reason="needs dask (pip install .[test])")
dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe] (pip install .[test])")
da = pytest.importorskip("dask.array", reason="needs dask[array] (pip install .[test])")
distributed = pytest.importorskip("distributed", reason="needs distributed (pip install .[test])")

import _dask_plugins  # noqa: E402
from _dask_plugins import CountModelLoads  # noqa: E402
from _tiny_model import generated_sentences  # noqa: E402

from sklearn_albert import _hosts  # noqa: E402
from sklearn_albert.distributed import (  # noqa: E402
    EmbedSummary,
    embed_to_parquet,
    parallel_predict,
)

# Repeated texts and a shuffled order, so that order and deduplication both matter.
TEXTS = generated_sentences(150, seed=3) + generated_sentences(30, seed=3)[::-1]
N_PARTITIONS = 12


def _model_loads(dask_worker):
    return os.getpid(), dask_worker.sklearn_albert_model_loads["count"]


def _estimators_unpickled():
    return os.getpid(), _hosts.process_counts()["estimators_unpickled"]


def _allocator_facts():
    encoded = _hosts.process_counts()["estimators_unpickled"] > 0
    tuned = _hosts._allocator_tuned["pid"] == os.getpid()
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), encoded, tuned


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    # The workers cannot import this test module: ship its functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cloudpickle.register_pickle_by_value(_dask_plugins)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.register_plugin(CountModelLoads())
        yield client
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    cloudpickle.unregister_pickle_by_value(_dask_plugins)


@pytest.fixture
def texts():
    return dd.from_pandas(pd.Series(TEXTS, name="text"), npartitions=N_PARTITIONS)


def model_loads(client):
    return dict(client.run(_model_loads).values())


def estimators_unpickled(client):
    return dict(client.run(_estimators_unpickled).values())


def with_an_empty_partition():
    """Three partitions, the middle one empty."""
    pieces = [pd.Series(TEXTS[:40], name="text"), pd.Series([], dtype=object, name="text")]
    pieces.append(pd.Series(TEXTS[40:], name="text", index=range(40, len(TEXTS))))
    return dd.concat([dd.from_pandas(piece, npartitions=1) for piece in pieces])


def test_importing_the_package_imports_neither_dask_nor_torch():
    heavy = "{'dask', 'distributed', 'torch', 'pyspark'}"
    code = f"import sys, sklearn_albert; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_transform_of_a_dask_series_is_lazy_float32_one_block_per_partition(
    client, vectorizer, texts
):
    vectorizer.fit(["warm up"])
    embeddings = vectorizer.transform(texts)
    assert isinstance(embeddings, da.Array)
    assert embeddings.dtype == np.float32
    assert embeddings.numblocks == (N_PARTITIONS, 1)
    computed = embeddings.compute()
    assert computed.dtype == np.float32
    np.testing.assert_allclose(computed, vectorizer.transform(TEXTS), atol=1e-4)


def test_a_one_file_parquet_corpus_embeds_and_predicts(client, vectorizer, tmp_path):
    # dask's array optimization could not fuse a one-partition read_parquet with the
    # estimator's delayed key: "Cannot fuse tasks with multiple outputs" (docs/scaling.rst).
    pd.DataFrame({"text": TEXTS}).to_parquet(tmp_path / "corpus.parquet")
    texts = dd.read_parquet(tmp_path)["text"]
    vectorizer.fit(["warm up"])
    expected = vectorizer.transform(TEXTS)
    np.testing.assert_allclose(vectorizer.transform(texts).compute(), expected, atol=1e-4)
    predicted = parallel_predict(vectorizer, texts, method="transform").compute()
    np.testing.assert_allclose(predicted, expected, atol=1e-4)


def test_workers_that_encode_let_glibc_reuse_freed_memory(client, vectorizer, texts):
    vectorizer.fit(["warm up"])
    vectorizer.transform(texts).compute()
    facts = [fact for fact in client.run(_allocator_facts).values() if fact[1]]
    assert facts  # at least one worker encoded
    for trim, _, tuned in facts:
        # The nanny's small trim threshold (65536 in distributed today) is lifted.
        small = trim is not None and int(trim) < _hosts.ENCODING_TRIM_THRESHOLD
        assert tuned is small


def test_a_one_column_dask_dataframe_with_pandas_output_gives_a_dask_dataframe(
    client, vectorizer, texts
):
    vectorizer.fit(["warm up"]).set_output(transform="pandas")
    frame = texts.to_frame()
    frame.index = frame.index + 1000  # the input's index is kept, as for pandas input
    embedded = vectorizer.transform(frame)
    assert isinstance(embedded, dd.DataFrame)
    computed = embedded.compute()
    expected = vectorizer.transform(TEXTS)
    assert list(computed.columns) == list(vectorizer.get_feature_names_out())
    assert list(computed.index) == list(range(1000, 1000 + len(TEXTS)))
    assert (computed.dtypes == np.float32).all()
    np.testing.assert_allclose(computed.to_numpy(), expected.to_numpy(), atol=1e-4)


def test_the_model_loads_at_most_once_per_worker_process_over_many_partitions(
    client, vectorizer, texts
):
    vectorizer.fit(["warm up"])
    before = estimators_unpickled(client)
    for normalize in (False, True):  # two jobs, each over 12 partitions
        vectorizer.set_params(normalize=normalize).fit(["warm up"]).transform(texts).compute()
    unpickled = {pid: n - before.get(pid, 0) for pid, n in estimators_unpickled(client).items()}
    loads = model_loads(client)
    assert len(loads) == 2
    assert all(n <= 1 for n in loads.values()), loads
    assert sum(loads.values()) >= 1
    # One estimator per job, unpickled at most once per worker however many partitions.
    assert all(n <= 2 for n in unpickled.values()), unpickled
    assert sum(unpickled.values()) >= 2


def test_the_estimator_is_one_graph_key_and_partition_tasks_stay_small(client, vectorizer, texts):
    vectorizer.set_params(store_weights_in_pickle=True).fit(["warm up"])
    weights = len(pickle.dumps(vectorizer))
    assert weights > 100_000  # the weights do travel, once
    graph = dict(vectorizer.transform(texts).__dask_graph__())
    heavy = [key for key, task in graph.items() if len(pickle.dumps(task)) > weights // 2]
    assert len(heavy) == 1 and "sklearn-albert-estimator" in str(heavy[0])
    # One task per partition, keyed (name, i); the (name, i, 0) keys are the array's aliases.
    embed_tasks = [task for key, task in graph.items() if "embed_block" in key[0] and len(key) == 2]
    assert len(embed_tasks) == N_PARTITIONS
    assert max(len(pickle.dumps(task)) for task in embed_tasks) < 10_000

    before = estimators_unpickled(client)
    np.testing.assert_allclose(
        vectorizer.transform(texts).compute(), vectorizer.transform(TEXTS), atol=1e-4
    )
    after = estimators_unpickled(client)
    assert all(after[pid] - before.get(pid, 0) <= 1 for pid in after)


def test_an_empty_partition_works_everywhere(client, vectorizer, tmp_path):
    vectorizer.fit(["warm up"])
    series = with_an_empty_partition()
    expected = vectorizer.transform(TEXTS)

    np.testing.assert_allclose(vectorizer.transform(series).compute(), expected, atol=1e-4)
    summary = embed_to_parquet(series.to_frame(), tmp_path, vectorizer, progress=False)
    assert (summary.rows, summary.files) == (len(TEXTS), 3)
    assert pd.read_parquet(tmp_path / "part-00001.parquet").shape == (0, 2)
    pipeline = Pipeline([("vect", vectorizer), ("clf", LogisticRegression())])
    pipeline.fit(TEXTS, [len(text) % 2 for text in TEXTS])
    np.testing.assert_array_equal(
        parallel_predict(pipeline, series).compute(), pipeline.predict(TEXTS)
    )


def read_parts(folder):
    return pd.read_parquet(folder).reset_index(drop=True)


def test_embed_to_parquet_writes_one_named_file_per_partition(client, vectorizer, texts, tmp_path):
    vectorizer.fit(["warm up"])
    summary = embed_to_parquet(texts.to_frame(), tmp_path / "out", vectorizer, progress=False)

    assert isinstance(summary, EmbedSummary)
    assert (summary.rows, summary.files, summary.skipped) == (len(TEXTS), N_PARTITIONS, 0)
    assert summary.seconds > 0 and summary.texts_per_second == summary.rows / summary.seconds
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    expected_names = [f"part-{i:05d}.parquet" for i in range(N_PARTITIONS)]
    assert names == ["_sklearn_albert_manifest.json", *expected_names]
    schema = pa.parquet.read_schema(tmp_path / "out" / "part-00000.parquet")
    assert schema.field("embedding").type == pa.list_(pa.float32(), vectorizer.n_features_out_)
    assert schema.names == ["id", "embedding"]
    table = read_parts(tmp_path / "out")
    assert list(table["id"]) == list(range(len(TEXTS)))
    np.testing.assert_allclose(np.stack(table["embedding"]), vectorizer.transform(TEXTS), atol=1e-4)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_embed_to_parquet_reads_a_glob_of_files_with_an_id_column(
    client, vectorizer, tmp_path, suffix
):
    vectorizer.fit(["warm up"])
    table = pd.DataFrame({"doc": [f"d{i}" for i in range(len(TEXTS))], "body": TEXTS})
    for n, start in enumerate(range(0, len(TEXTS), 50)):
        piece = table.iloc[start : start + 50]
        path = tmp_path / "in" / f"piece{n}{suffix}"
        path.parent.mkdir(exist_ok=True)
        if suffix == ".csv":
            piece.to_csv(path, index=False)
        elif suffix == ".jsonl":
            piece.to_json(path, orient="records", lines=True)
        else:
            piece.to_parquet(path, index=False)

    summary = embed_to_parquet(
        str(tmp_path / "in" / f"*{suffix}"),
        tmp_path / "out",
        vectorizer,
        text_column="body",
        id_column="doc",
        progress=False,
    )
    assert summary.rows == len(TEXTS)
    written = read_parts(tmp_path / "out")
    assert list(written.columns) == ["doc", "embedding"]
    assert list(written["doc"]) == list(table["doc"])
    np.testing.assert_allclose(
        np.stack(written["embedding"]), vectorizer.transform(TEXTS), atol=1e-4
    )


def test_a_second_run_rewrites_nothing(client, vectorizer, texts, tmp_path):
    vectorizer.fit(["warm up"])
    embed_to_parquet(texts.to_frame(), tmp_path, vectorizer, progress=False)
    stamps = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    time.sleep(0.01)  # so that any rewrite would show in the modification times

    again = embed_to_parquet(texts.to_frame(), tmp_path, vectorizer, progress=False)
    assert (again.rows, again.files, again.skipped) == (0, 0, N_PARTITIONS)
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == stamps


def other_texts(changed_partition=3):
    """TEXTS with the rows of one of the N_PARTITIONS partitions replaced."""
    size = len(TEXTS) // N_PARTITIONS
    start = changed_partition * size
    replacement = generated_sentences(size, seed=99)
    return TEXTS[:start] + replacement + TEXTS[start + size :]


def test_a_folder_of_another_job_is_refused_unless_overwrite(client, vectorizer, texts, tmp_path):
    vectorizer.fit(["warm up"])
    embed_to_parquet(texts.to_frame(), tmp_path, vectorizer, progress=False)
    other = clone(vectorizer).set_params(pooling="cls").fit(["warm up"])
    with pytest.raises(ValueError, match=re.escape("(its settings differ)")):
        embed_to_parquet(texts.to_frame(), tmp_path, other, progress=False)

    # Other data, same settings: one part deleted (as if interrupted), then a rerun.
    (tmp_path / "part-00007.parquet").unlink()
    changed = other_texts(changed_partition=3)
    data_b = dd.from_pandas(pd.Series(changed, name="text"), npartitions=N_PARTITIONS).to_frame()
    expected_message = (
        "holds the parts of another job (other data: the rows of input partition(s) 3 of "
        f"{N_PARTITIONS} differ from those embedded there). Use a new folder, or "
        "overwrite=True"
    )
    with pytest.raises(ValueError, match=re.escape(expected_message)):
        embed_to_parquet(data_b, tmp_path, vectorizer, progress=False)
    fewer = dd.from_pandas(pd.Series(TEXTS, name="text"), npartitions=4).to_frame()
    with pytest.raises(ValueError, match=re.escape(f"{N_PARTITIONS} input partitions then, 4 now")):
        embed_to_parquet(fewer, tmp_path, vectorizer, progress=False)
    assert not (tmp_path / "part-00007.parquet").exists()  # a refusal writes nothing

    summary = embed_to_parquet(data_b, tmp_path, vectorizer, overwrite=True, progress=False)
    assert summary.files == N_PARTITIONS
    np.testing.assert_allclose(
        np.stack(read_parts(tmp_path)["embedding"]), vectorizer.transform(changed), atol=1e-4
    )
    summary = embed_to_parquet(texts.to_frame(), tmp_path, other, overwrite=True, progress=False)
    assert summary.files == N_PARTITIONS
    np.testing.assert_allclose(
        np.stack(read_parts(tmp_path)["embedding"]), other.transform(TEXTS), atol=1e-4
    )


def _flip_a_byte_inside(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0xFF  # inside the first column chunk's pages, before the footer
    path.write_bytes(bytes(data))


def test_damaged_symlinked_or_foreign_part_files_are_computed_again(
    client, vectorizer, texts, tmp_path
):
    vectorizer.fit(["warm up"])
    output = tmp_path / "out"
    embed_to_parquet(texts.to_frame(), output, vectorizer, progress=False)

    def part(index):
        return output / f"part-{index:05d}.parquet"

    _flip_a_byte_inside(part(1))  # damaged pages, footer intact
    part(2).write_bytes(part(2).read_bytes()[:-100])  # short: no footer
    part(3).unlink()
    part(3).symlink_to(part(4))  # a link, even to a file of this job
    part(5).write_bytes(part(6).read_bytes())  # another partition's file
    elsewhere = tmp_path / "elsewhere"  # another job's file for this partition
    other = clone(vectorizer).set_params(pooling="max").fit(["warm up"])
    embed_to_parquet(texts.to_frame(), elsewhere, other, progress=False)
    part(8).write_bytes((elsewhere / "part-00008.parquet").read_bytes())

    summary = embed_to_parquet(texts.to_frame(), output, vectorizer, progress=False)

    assert (summary.files, summary.skipped) == (5, N_PARTITIONS - 5)
    assert not any(path.is_symlink() for path in output.iterdir())
    written = read_parts(output)
    assert list(written["id"]) == list(range(len(TEXTS)))
    np.testing.assert_allclose(
        np.stack(written["embedding"]), vectorizer.transform(TEXTS), atol=1e-4
    )


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function", "transform"])
def test_parallel_predict_on_a_joblib_loaded_pipeline_equals_the_local_call(
    client, vectorizer, texts, tmp_path, method
):
    labels = [("good" in text) + ("bad" in text) for text in TEXTS]  # three classes
    pipeline = Pipeline([("vect", vectorizer), ("clf", LogisticRegression(max_iter=500))])
    if method == "transform":
        pipeline = Pipeline([("vect", vectorizer)])
    joblib.dump(pipeline.fit(TEXTS, labels), tmp_path / "pipeline.joblib")
    loaded = joblib.load(tmp_path / "pipeline.joblib")

    result = parallel_predict(loaded, texts, method=method)
    assert isinstance(result, da.Array)
    assert result.numblocks[0] == N_PARTITIONS
    computed = result.compute()
    expected = getattr(loaded, method)(TEXTS)
    assert computed.dtype == expected.dtype and computed.shape == expected.shape
    np.testing.assert_allclose(computed, expected, atol=1e-4)


def test_wrong_inputs_say_what_would_work(client, vectorizer, texts):
    vectorizer.fit(["warm up"])
    frame = dd.from_pandas(pd.DataFrame({"a": TEXTS, "b": TEXTS}), npartitions=2)
    with pytest.raises(ValueError, match=re.escape("expected one column of texts")):
        vectorizer.transform(frame)
    with pytest.raises(TypeError, match=re.escape("must be a dask Series")):
        vectorizer.transform(da.from_array(np.array(TEXTS)))
    with pytest.raises(ValueError, match=re.escape("Got method='fit'; expected one of")):
        parallel_predict(vectorizer, texts, method="fit")
    with pytest.raises(ValueError, match=re.escape("Got text_column='body' but")):
        embed_to_parquet(texts.to_frame(), "unused", vectorizer, text_column="body")


def test_grid_search_under_the_dask_joblib_backend_equals_the_local_one(client, vectorizer):
    labels = [int("good" in text or "great" in text) for text in TEXTS]
    search = GridSearchCV(
        Pipeline([("vect", vectorizer), ("clf", LogisticRegression())]),
        {"vect__pooling": ["mean", "cls"]},
        cv=2,
        n_jobs=2,
    )
    # In this process: loky's fresh worker processes would each import torch and reload.
    local = clone(search).set_params(n_jobs=1).fit(TEXTS, labels)
    with joblib.parallel_backend("dask"):
        on_dask = clone(search).fit(TEXTS, labels)
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(on_dask.predict(TEXTS), local.predict(TEXTS))


def test_the_command_line_embeds_on_a_scheduler_and_resumes(
    client, tiny_albert_path, vectorizer, tmp_path, capsys
):
    from sklearn_albert import _cli

    pieces = tmp_path / "in"
    pieces.mkdir()
    for n, start in enumerate(range(0, len(TEXTS), 60)):
        chunk = pd.DataFrame({"body": TEXTS[start : start + 60]})
        chunk.to_json(pieces / f"piece{n}.jsonl", orient="records", lines=True)
    argv = [str(pieces / "*.jsonl"), "-o", str(tmp_path / "out"), "--column", "body", "-q"]
    argv += ["--scheduler", client.scheduler.address, "--model", str(tiny_albert_path)]
    argv += ["--device", "cpu", "--dtype", "float32", "--offline"]

    assert _cli.main(["embed", *argv]) == 0
    assert "Wrote 3 part(s), 180 texts, to" in capsys.readouterr().err
    written = read_parts(tmp_path / "out")
    expected = vectorizer.set_params(device="cpu", embedding_cache=None).fit([]).transform(TEXTS)
    np.testing.assert_allclose(np.stack(written["embedding"]), expected, atol=1e-4)
    assert _cli.main(["embed", *argv]) == 0
    assert "Wrote 0 part(s), 0 texts" in capsys.readouterr().err

    # Other data in the same files, one part gone: refused, not resumed.
    (tmp_path / "out" / "part-00001.parquet").unlink()
    changed = pd.DataFrame({"body": generated_sentences(60, seed=98)})
    changed.to_json(pieces / "piece1.jsonl", orient="records", lines=True)
    assert _cli.main(["embed", *argv]) != 0
    assert "other data: the rows of input partition(s) 1 of 3 differ" in capsys.readouterr().err


def _busiest_worker_pid(client):
    """The process id of a worker that is running a task now, or None."""
    processing = client.processing()
    pids = client.run(os.getpid)
    for address, keys in processing.items():
        if keys:
            return pids[address]
    return None


def test_a_worker_killed_mid_job_leaves_complete_output_with_every_id_once(
    client, vectorizer, tmp_path
):
    """Runs last: the killed worker's replacement serves no later test in this module."""
    vectorizer.fit(["warm up"])
    n_partitions = 24
    many = generated_sentences(720, seed=5)
    frame = dd.from_pandas(pd.DataFrame({"text": many}), npartitions=n_partitions)
    output = tmp_path / "out"
    outcome = {}

    def run_job():
        try:
            outcome["summary"] = embed_to_parquet(frame, output, vectorizer, progress=False)
        except BaseException as error:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = error

    pids_before = set(client.run(os.getpid).values())
    job = threading.Thread(target=run_job)
    job.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and job.is_alive():
        if output.exists() and any(output.glob("part-*.parquet")):
            victim = _busiest_worker_pid(client)
        time.sleep(0.005)
    assert victim is not None, "the job ended before a worker could be killed"
    finished_at_kill = len(list(output.glob("part-*.parquet")))
    os.kill(victim, signal.SIGKILL)
    job.join(timeout=120)

    assert "error" not in outcome, outcome.get("error")
    assert finished_at_kill < n_partitions  # the kill happened mid-job
    assert victim not in set(client.run(os.getpid).values()) and victim in pids_before
    names = sorted(path.name for path in output.iterdir())
    assert names == ["_sklearn_albert_manifest.json"] + [
        f"part-{i:05d}.parquet" for i in range(n_partitions)
    ]
    written = read_parts(output)
    assert sorted(written["id"]) == list(range(len(many)))  # every id, exactly once
    np.testing.assert_allclose(
        np.stack(written["embedding"]), vectorizer.transform(many), atol=1e-4
    )


def test_quantized_output_keeps_its_dtype_lazily_and_in_parquet(
    client, vectorizer, texts, tmp_path
):
    vectorizer.set_params(output_dtype="int8", truncate_dim=16).fit(TEXTS[:30])
    expected = vectorizer.transform(TEXTS)

    embeddings = vectorizer.transform(texts)
    embed_to_parquet(texts.to_frame(), tmp_path / "out", vectorizer, progress=False)

    assert embeddings.dtype == np.int8
    np.testing.assert_array_equal(embeddings.compute(), expected)
    schema = pa.parquet.read_schema(tmp_path / "out" / "part-00000.parquet")
    assert schema.field("embedding").type == pa.list_(pa.int8(), 16)
    np.testing.assert_array_equal(np.stack(read_parts(tmp_path / "out")["embedding"]), expected)
    # Other fitted ranges write other numbers: the folder is another job's.
    refitted = clone(vectorizer).fit(TEXTS[30:])
    with pytest.raises(ValueError, match="quantization_ranges"):
        embed_to_parquet(texts.to_frame(), tmp_path / "out", refitted, progress=False)
