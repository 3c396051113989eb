"""Encoding speed of AlbertVectorizer against its peers, on the same model and texts.

Every system runs in this one process, in interleaved rounds (each system once per round,
the order rotated from round to round) so that a change in machine load hits all of them
alike; the median of the rounds is reported. The systems, all mean-pooling the last layer:

* ``AlbertVectorizer`` with default settings, with ``dtype="float32"`` and, on CPU, with
  ``dtype="int8"``;
* ``sentence-transformers``: ``SentenceTransformer`` built from the same folder with a mean
  ``Pooling`` module, ``encode(batch_size=32)``; the reference for the ratios;
* the ``transformers`` ``pipeline("feature-extraction", batch_size=32)``, mean over each
  text's own tokens;
* the one-text-at-a-time loop the tutorials write (tokenizer then model per text), timed
  on a subsample and scaled by its own text count.

The AlbertVectorizer embedding cache is emptied before every timed call, and its fit (the
model load) happens before timing: rounds after the first are not free.

Reported per system: texts/s, tokens/s (real tokens, special tokens included, no padding),
ratio to sentence-transformers, the useful model GFLOP/s as a fraction of the matmul peak
measured in the same run (float32, and the system's own compute precision), peak RSS
during the call, and cosine similarity of its embeddings to AlbertVectorizer float32.

On CUDA (``--device cuda``, or ``auto`` with a GPU) the GPU mode adds float16, bfloat16 and
float32 at several batch sizes for both AlbertVectorizer and sentence-transformers.

Examples
--------
``python benchmarks/bench_encode.py --quick``  (a one-minute smoke run)
``python benchmarks/bench_encode.py``  (ALBERT-base on SST-2 dev, then a MiniLM fidelity check)
``python benchmarks/bench_encode.py --model albert-base minilm``
"""

import argparse
import gc
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common as common
import _peers as peers
import numpy as np

REFERENCE_SYSTEM = "sentence_transformers"

#: Peer processes started by ``--peers-python``, stopped when their model is done.
_REMOTE_PEERS = []
#: The interpreter and package versions of each, for the JSON.
PEER_ENVIRONMENTS = []


@dataclass
class System:
    """One way of turning the benchmark texts into mean-pooled embeddings.

    Attributes
    ----------
    name : str
        Short key, used in the JSON.
    label : str
        What a reader sees in tables and charts.
    compute_dtype : str
        Precision of its matmuls ("float32", "bfloat16", "float16"), for the peak fraction.
    text_index : ndarray of int
        Which of the benchmark texts it encodes (all, or a subsample).
    run : callable
        ``run(texts) -> ndarray of shape (n_texts, dim)``.
    before_each : callable
        Called before every timed call, outside the timing.
    batch_size : int or None
    """

    name: str
    label: str
    compute_dtype: str
    text_index: np.ndarray
    run: object
    before_each: object = lambda: None
    batch_size: object = None
    times: list = field(default_factory=list)
    peak_rss: list = field(default_factory=list)
    rss_increase: list = field(default_factory=list)
    gpu_peak: list = field(default_factory=list)
    cache_hits: int = 0
    last_output: object = None
    reported: object = None  # for a system timed in another process: its last call's facts


# ---------------------------------------------------------------------- the systems


def albert_vectorizer_system(folder, n_texts, *, device, name, label, **params):
    """AlbertVectorizer, fitted (model loaded) now, its cache emptied before each call."""
    from sklearn_albert import AlbertVectorizer, clear_cache

    # int8 calibrates on what fit sees: the 300 seeded SST-2 train sentences the peers use.
    warm_up = peers.calibration_texts() if params.get("dtype") == "int8" else ["warm up"]
    vectorizer = AlbertVectorizer(str(folder), device=device, **params).fit(warm_up)
    return System(
        name=name,
        label=label,
        compute_dtype=vectorizer.dtype_,
        text_index=np.arange(n_texts),
        run=vectorizer.transform,
        before_each=lambda: clear_cache(models=False),
        batch_size=vectorizer.batch_size,
    )


def sentence_transformers_system(folder, n_texts, *, device, dtype="float32", batch_size=32):
    """SentenceTransformer(Transformer(folder), Pooling(mean)) and its ``encode``."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    transformer = Transformer(str(folder))
    if hasattr(transformer, "get_embedding_dimension"):
        dimension = transformer.get_embedding_dimension()
    else:  # sentence-transformers < 6
        dimension = transformer.get_word_embedding_dimension()
    model = SentenceTransformer(
        modules=[transformer, Pooling(dimension, pooling_mode="mean")], device=device
    )
    if dtype != "float32":
        model.to(getattr(torch, dtype))

    def encode(texts):
        embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=False)
        return np.asarray(embeddings, dtype=np.float32)

    return System(
        name=sentence_transformers_name(dtype, batch_size),
        label=f"sentence-transformers encode, {dtype}, batch {batch_size}",
        compute_dtype=dtype,
        text_index=np.arange(n_texts),
        run=encode,
        batch_size=batch_size,
    )


def sentence_transformers_name(dtype, batch_size):
    """``sentence_transformers`` for the default encode, else with dtype and batch size."""
    if dtype == "float32" and batch_size == 32:
        return REFERENCE_SYSTEM
    return f"{REFERENCE_SYSTEM}_{dtype}_b{batch_size}"


def pipeline_system(folder, token_counts, *, device, batch_size=32):
    """``pipeline("feature-extraction")`` and a mean over each text's own tokens.

    The pipeline pads the texts of a batch to a common length and hands each one back
    padded, so the mean is taken over the first ``token_count`` rows: what a careful user
    must do to get the same embedding as the others. ``return_tensors=True`` spares the
    conversion of every token vector to Python floats that the default output pays.
    """
    import torch
    from transformers import pipeline

    extractor = pipeline(
        "feature-extraction",
        model=str(folder),
        tokenizer=str(folder),
        device=device,
        dtype=torch.float32,
    )

    def encode(texts):
        outputs = extractor(
            texts, batch_size=batch_size, return_tensors=True, tokenize_kwargs={"truncation": True}
        )
        return np.stack(
            [
                output[0, :count].mean(dim=0).float().cpu().numpy()
                for output, count in zip(outputs, token_counts)
            ]
        )

    return System(
        name="pipeline",
        label=f"transformers feature-extraction pipeline, batch {batch_size}",
        compute_dtype="float32",
        text_index=np.arange(len(token_counts)),
        run=encode,
        batch_size=batch_size,
    )


def one_at_a_time_system(folder, text_index, *, device):
    """Tokenizer and model called once per text, as the tutorials write it."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).to(device).eval()

    def encode(texts):
        rows = []
        for text in texts:
            inputs = tokenizer(text, return_tensors="pt", truncation=True).to(device)
            with torch.no_grad():
                output = model(**inputs)
            rows.append(output.last_hidden_state.mean(dim=1)[0].float().cpu().numpy())
        return np.stack(rows)

    return System(
        name="one_at_a_time",
        label=f"one text at a time (tutorial loop, {len(text_index)} texts)",
        compute_dtype="float32",
        text_index=text_index,
        run=encode,
        batch_size=1,
    )


def build_systems(model_name, folder, texts, token_counts, args, calibration_seconds):
    """The systems of the CPU comparison, or the larger set of the GPU mode."""
    n_texts = len(texts)
    loop_index = np.sort(
        np.random.default_rng(0).choice(n_texts, min(args.loop_texts, n_texts), replace=False)
    )
    systems = [
        albert_vectorizer_system(
            folder,
            n_texts,
            device=args.device,
            name="albert_default",
            label="AlbertVectorizer, default settings",
        ),
        albert_vectorizer_system(
            folder,
            n_texts,
            device=args.device,
            dtype="float32",
            name="albert_float32",
            label='AlbertVectorizer, dtype="float32"',
        ),
        sentence_transformers_system(folder, n_texts, device=args.device),
    ]
    if not args.peers:
        systems += [
            pipeline_system(folder, token_counts, device=args.device),
            one_at_a_time_system(folder, loop_index, device=args.device),
        ]
    if args.device == "cpu":
        systems.insert(
            2,
            albert_vectorizer_system(
                folder,
                n_texts,
                device=args.device,
                dtype="int8",
                name="albert_int8",
                label='AlbertVectorizer, dtype="int8"',
            ),
        )
    if args.gpu_mode:
        systems += gpu_sweep_systems(folder, n_texts, args)
    if args.batch_variant and args.device == "cpu":
        systems += batch_variant_systems(folder, n_texts, args)
    if args.device == "cpu" and static_int8_available():
        systems += cpu_int8_systems(model_name, folder, n_texts, args, calibration_seconds)
    return systems


def batch_variant_systems(folder, n_texts, args):
    """The default and float32 AlbertVectorizer with CPU batch invariance switched off.

    ``SKLEARN_ALBERT_CPU_BATCH_INVARIANT=0`` is set during their calls only (the attention
    reads it at each call), so that the ratio to ``albert_default`` and ``albert_float32``
    is the cost of batch invariance, measured in the same interleaved rounds.
    """
    from sklearn_albert._cpu import BATCH_INVARIANT_SWITCH

    systems = []
    for dtype, name in (("auto", "albert_default"), ("float32", "albert_float32")):
        system = albert_vectorizer_system(
            folder,
            n_texts,
            device=args.device,
            dtype=dtype,
            name=f"{name}_batch_variant",
            label=f'AlbertVectorizer, dtype="{dtype}", {BATCH_INVARIANT_SWITCH}=0',
        )
        system.run = _with_environment(system.run, BATCH_INVARIANT_SWITCH, "0")
        systems.append(system)
    return systems


def _with_environment(run, variable, value):
    def run_with(texts):
        previous = os.environ.get(variable)
        os.environ[variable] = value
        try:
            return run(texts)
        finally:
            if previous is None:
                del os.environ[variable]
            else:
                os.environ[variable] = previous

    return run_with


def static_int8_available():
    """Whether OpenVINO and NNCF (the ``int8`` extra) are importable here."""
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("openvino", "nncf"))


def cpu_int8_systems(model_name, folder, n_texts, args, calibration_seconds):
    """With ``--peers``, the runtimes a user would pick instead of ours.

    Our static int8 runs as ``albert_int8`` (``AlbertVectorizer(dtype="int8")``, calibrated
    by its ``fit`` on the same 300 sentences). ``calibration_seconds`` receives the
    calibration time of each calibrated system. With ``--peers-python``, the peers run in
    that interpreter (``_peer_server.py``), driven from here.
    """
    import torch

    if not args.peers:
        return []
    threads = torch.get_num_threads()
    if args.peers_python:
        remote = RemotePeers(args.peers_python, model_name, folder, threads)
        _REMOTE_PEERS.append(remote)
        calibration_seconds.update(remote.calibration_seconds)
        return remote.systems(n_texts)
    built, seconds = peers.build_peer_systems(model_name, folder, threads=threads)
    calibration_seconds.update(seconds)
    return [System(text_index=np.arange(n_texts), **system) for system in built]


class RemotePeers:
    """The peers running in another interpreter (``_peer_server.py``), one process for all."""

    def __init__(self, python, model_name, folder, threads):
        import subprocess
        import tempfile

        here = Path(__file__).resolve().parent
        environment = dict(os.environ, PYTHONPATH=str(here.parent))
        self._process = subprocess.Popen(
            [python, str(here / "_peer_server.py")],
            cwd=here,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=environment,
        )
        self._folder = Path(tempfile.mkdtemp(prefix="bench_peers_"))
        self._send({"model_name": model_name, "folder": str(folder), "threads": threads})
        hello = self._receive()
        self.calibration_seconds = hello["calibration_seconds"]
        self.versions = hello["versions"]
        PEER_ENVIRONMENTS.append({"python": python, "versions": self.versions})
        self._described = hello["systems"]

    def _send(self, message):
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()

    def _receive(self):
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer process ended (exit status {self._process.poll()})")
        return json.loads(line)

    def systems(self, n_texts):
        built = []
        for described in self._described:
            system = System(
                text_index=np.arange(n_texts), run=None, **{k: described[k] for k in described}
            )
            system.run = self._runner(system)
            built.append(system)
        return built

    def _runner(self, system):
        def run(texts):
            out = self._folder / f"{system.name}.npy"
            self._send({"op": "run", "name": system.name, "texts": list(texts), "out": str(out)})
            system.reported = self._receive()
            return np.load(out)

        return run

    def stop(self):
        if self._process.poll() is None:
            self._send({"op": "stop"})
            self._process.wait(timeout=60)


def gpu_sweep_systems(folder, n_texts, args):
    """float16, bfloat16 and float32 at each batch size, for both libraries."""
    systems = []
    for dtype in ("float16", "bfloat16", "float32"):
        for batch_size in args.batch_sizes:
            if dtype == "float32" and batch_size == 32:
                continue  # both are in the main comparison already
            systems.append(
                albert_vectorizer_system(
                    folder,
                    n_texts,
                    device=args.device,
                    dtype=dtype,
                    batch_size=batch_size,
                    name=f"albert_{dtype}_b{batch_size}",
                    label=f"AlbertVectorizer, {dtype}, batch {batch_size}",
                )
            )
            systems.append(
                sentence_transformers_system(
                    folder, n_texts, device=args.device, dtype=dtype, batch_size=batch_size
                )
            )
    return systems


# ---------------------------------------------------------------------- timing


def time_call(system, texts, device):
    """Run ``system`` once on its texts; record time, memory and output."""
    import torch

    from sklearn_albert import cache_info

    system.before_each()
    gc.collect()
    hits_before = cache_info()["hits"]
    on_cuda = str(device).startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    subset = [texts[i] for i in system.text_index]
    with common.PeakRSS() as memory:
        common.synchronize(device)
        start = time.perf_counter()
        output = system.run(subset)
        common.synchronize(device)
        elapsed = time.perf_counter() - start
    if system.reported is not None:  # timed where it ran, in the peers' interpreter
        elapsed = system.reported["seconds"]
        memory.peak, memory.before = system.reported["peak_rss"], system.reported["rss_before"]
    system.times.append(elapsed)
    system.peak_rss.append(memory.peak)
    system.rss_increase.append(max(memory.peak - memory.before, 0))
    if on_cuda:
        system.gpu_peak.append(torch.cuda.max_memory_allocated())
    system.cache_hits += cache_info()["hits"] - hits_before
    system.last_output = output


def warm_up(systems, texts, n_warm_up):
    """One untimed call per system on its first ``n_warm_up`` texts (all of them by default).

    A whole pass, as the peers' figures in the CPU issue were measured: oneDNN builds a
    kernel for each matmul shape the first time it meets it (5-8 ms per shape and layer
    type on a 2-core AMX machine, about a tenth of a first pass of ALBERT-base over SST-2
    dev in bfloat16), OpenVINO and ONNX Runtime do the same for their own, and a long job
    meets each shape once. ``--quick`` warms up on 16 texts.
    """
    for system in systems:
        keep = system.text_index
        system.text_index = keep[:n_warm_up]
        system.before_each()
        system.run([texts[i] for i in system.text_index])
        system.text_index = keep


def run_rounds(systems, texts, *, rounds, device, after_each_round=None):
    """Interleaved rounds: every system once per round, the order rotated each round.

    ``after_each_round`` (if given) is called after every round: the matmul peak is sampled
    there, between the systems, so that a quiet spell anywhere in the run is caught.
    """
    for round_index in range(rounds):
        shift = round_index % len(systems)
        order = systems[shift:] + systems[:shift]
        print(f"  round {round_index + 1}/{rounds}:", end="", flush=True)
        for system in order:
            time_call(system, texts, device)
            print(f" {system.name} {system.times[-1]:.1f}s", end=";", flush=True)
        print()
        if after_each_round is not None:
            after_each_round()


# ---------------------------------------------------------------------- figures


def cosine_rows(left, right):
    """Row-wise cosine similarity of two float arrays."""
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return np.sum(left * right, axis=1) / np.maximum(norms, 1e-30)


def summarize(system, token_counts, config):
    """The figures of one system from its timed calls."""
    counts = [token_counts[i] for i in system.text_index]
    median = statistics.median(system.times)
    return {
        "name": system.name,
        "label": system.label,
        "compute_dtype": system.compute_dtype,
        "batch_size": system.batch_size,
        "n_texts": len(counts),
        "n_tokens": int(sum(counts)),
        "times_s": [round(t, 4) for t in system.times],
        "median_s": median,
        "texts_per_s": len(counts) / median,
        "tokens_per_s": sum(counts) / median,
        "model_gflops_per_s": common.encoder_flops(config, counts) / median / 1e9,
        "peak_rss_mb": common.megabytes(max(system.peak_rss)),
        "rss_increase_mb": common.megabytes(max(system.rss_increase)),
        "gpu_peak_mb": common.megabytes(max(system.gpu_peak)) if system.gpu_peak else None,
        "cache_hits_during_timing": system.cache_hits,
    }


def add_peak_fractions(rows, peaks):
    """Useful model FLOP/s over the matmul peak, in float32 and in the system's own dtype."""
    for row in rows:
        own_peak = peaks.get(row["compute_dtype"])
        row["peak_fraction_float32"] = row["model_gflops_per_s"] / peaks["float32"]
        row["peak_fraction_own_dtype"] = row["model_gflops_per_s"] / own_peak if own_peak else None
        for dtype in ("bfloat16", "int8"):
            if peaks.get(dtype):
                row[f"peak_fraction_{dtype}"] = row["model_gflops_per_s"] / peaks[dtype]


def add_ratios(rows):
    """Speed relative to sentence-transformers' default encode, and to its same setting."""
    by_name = {row["name"]: row for row in rows}
    reference = by_name[REFERENCE_SYSTEM]["texts_per_s"]
    for row in rows:
        row["vs_sentence_transformers"] = row["texts_per_s"] / reference
        twin = by_name.get(sentence_transformers_name(row["compute_dtype"], row["batch_size"]))
        if row["name"].startswith("albert_") and twin is not None:
            row["vs_sentence_transformers_same_setting"] = row["texts_per_s"] / twin["texts_per_s"]
    peers = [row for row in rows if not row["name"].startswith("albert_")]
    fastest = max(peers, key=lambda row: row["texts_per_s"])
    for row in rows:
        row["vs_fastest_peer"] = row["texts_per_s"] / fastest["texts_per_s"]
    loop = by_name.get("one_at_a_time")
    if loop is not None:
        for row in rows:
            row["vs_one_at_a_time"] = row["texts_per_s"] / loop["texts_per_s"]


def parity(systems, reference_name="albert_float32"):
    """Cosine of each system's embeddings to ``reference_name``'s on the same texts."""
    reference = next(s for s in systems if s.name == reference_name).last_output
    result = {}
    for system in systems:
        cosines = cosine_rows(system.last_output, reference[system.text_index])
        result[system.name] = {"min": float(cosines.min()), "mean": float(cosines.mean())}
    return result


def measure_peaks(device, quick):
    """Matmul GFLOP/s per precision and kernel on ``device``, on torch's thread count.

    Returns
    -------
    peaks : dict
        ``{dtype: {kernel: GFLOP/s}}``, see ``_common.matmul_peak``.
    """
    on_cuda = str(device).startswith("cuda")
    dtypes = ("float32", "bfloat16", "float16") if on_cuda else ("float32", "bfloat16")
    size = 1024 if quick else (8192 if on_cuda else 2048)
    repeats = 3 if quick else 5
    peaks = {
        dtype: common.matmul_peak(dtype, device=device, size=size, repeats=repeats)
        for dtype in dtypes
    }
    if not on_cuda and static_int8_available():
        peaks["int8"] = {
            "openvino_fc": common.int8_matmul_peak(size=size, repeats=repeats),
        }
    return peaks


def best_peaks(samples):
    """``{dtype: GFLOP/s}``: the best of every sample and kernel, and the same per kernel."""
    dtypes = [dtype for dtype in samples[0] if all(dtype in sample for sample in samples)]
    by_kernel = {
        dtype: {
            kernel: max(sample[dtype][kernel] for sample in samples) for kernel in samples[0][dtype]
        }
        for dtype in dtypes
    }
    return {dtype: max(kernels.values()) for dtype, kernels in by_kernel.items()}, by_kernel


# ---------------------------------------------------------------------- one model


def bench_model(model_name, texts, args, peak_samples):
    """Time every system on ``model_name``; return its figures and fidelity.

    A matmul peak sample is appended to ``peak_samples`` after every round.
    """
    from transformers import AutoConfig, AutoTokenizer

    import sklearn_albert

    folder = common.model_folder(model_name)
    config = AutoConfig.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    token_counts = common.count_tokens(tokenizer, texts, config.max_position_embeddings)
    print(
        f"\n== {model_name}: {len(texts)} texts, {sum(token_counts)} tokens, "
        f"{common.encoder_flops(config, [1]) / 1e6:.0f} MFLOP per token (1-token text)"
    )
    calibration_seconds = {}
    systems = build_systems(model_name, folder, texts, token_counts, args, calibration_seconds)
    warm_up(systems, texts, n_warm_up=min(16, len(texts)) if args.quick else len(texts))
    run_rounds(
        systems,
        texts,
        rounds=args.rounds,
        device=args.device,
        after_each_round=lambda: peak_samples.append(measure_peaks(args.device, args.quick)),
    )
    rows = [summarize(system, token_counts, config) for system in systems]
    add_ratios(rows)
    result = {
        "model": model_name,
        "folder": str(folder),
        "mflop_per_token": common.encoder_flops(config, token_counts) / sum(token_counts) / 1e6,
        "n_texts": len(texts),
        "n_tokens": int(sum(token_counts)),
        "systems": rows,
        "cosine_to_albert_float32": parity(systems),
        "cosine_to_sentence_transformers": parity(systems, REFERENCE_SYSTEM),
        "calibration_seconds": calibration_seconds,
    }
    if args.stsb:
        result["stsb_test_spearman"] = stsb_per_system(systems)
    del systems
    while _REMOTE_PEERS:
        _REMOTE_PEERS.pop().stop()
    sklearn_albert.clear_cache()
    gc.collect()
    return result


def stsb_per_system(systems):
    """STS-B test Spearman of each system's pair cosines (None where STS-B is absent)."""
    stsb = common.read_stsb_test()
    if stsb is None:
        return None
    scores, first, second = stsb
    sentences = list(dict.fromkeys(first + second))
    position = {sentence: index for index, sentence in enumerate(sentences)}
    left = [position[sentence] for sentence in first]
    right = [position[sentence] for sentence in second]
    result = {}
    for system in systems:
        if len(system.text_index) < len(system.last_output) or system.name == "one_at_a_time":
            continue
        system.before_each()
        embeddings = np.asarray(system.run(sentences), dtype=np.float64)
        pair_cosines = cosine_rows(embeddings[left], embeddings[right])
        result[system.name] = common.spearman(pair_cosines, scores)
    return result


def minilm_fidelity(texts, device):
    """How far reduced precision moves the real MiniLM's embeddings from float32.

    For the default precision and, on CPU, ``dtype="int8"``: the cosine of each text's
    embedding to its float32 one, and, where ``../shared`` has STS-B, the test-set Spearman
    correlation of pair cosines with the gold scores at every precision.
    """
    from sklearn_albert import AlbertVectorizer

    folder = common.minilm_folder()
    dtypes = ["float32", "auto"] + (["int8"] if device == "cpu" else [])
    vectorizers = {
        dtype: AlbertVectorizer(str(folder), device=device, dtype=dtype, embedding_cache=None)
        for dtype in dtypes
    }
    exact = vectorizers["float32"].fit(["x"]).transform(texts)
    stsb = common.read_stsb_test()
    result = {"n_texts": len(texts), "stsb_test_pairs": None if stsb is None else len(stsb[0])}
    for dtype, vectorizer in vectorizers.items():
        vectorizer.fit(peers.calibration_texts() if dtype == "int8" else ["x"])
        cosines = cosine_rows(vectorizer.transform(texts), exact)
        figures = {"dtype": vectorizer.dtype_}
        if dtype != "float32":
            figures.update(cosine_min=float(cosines.min()), cosine_mean=float(cosines.mean()))
        if stsb is not None:
            scores, first, second = stsb
            pair_cosines = cosine_rows(vectorizer.transform(first), vectorizer.transform(second))
            figures["stsb_test_spearman"] = common.spearman(pair_cosines, scores)
        result["default" if dtype == "auto" else dtype] = figures
    return result


# ---------------------------------------------------------------------- output


TABLE_COLUMNS = [
    ("system", "label", "{}"),
    ("texts/s", "texts_per_s", "{:.1f}"),
    ("tokens/s", "tokens_per_s", "{:.0f}"),
    ("vs ST", "vs_sentence_transformers", "{:.2f}x"),
    ("vs loop", "vs_one_at_a_time", "{:.1f}x"),
    ("fp32 peak", "peak_fraction_float32", "{:.0%}"),
    ("own peak", "peak_fraction_own_dtype", "{:.0%}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("+RSS MB", "rss_increase_mb", "{:.0f}"),
]


def print_report(payload):
    peaks = ", ".join(
        f"{dtype} {best:.0f} ("
        + ", ".join(
            f"{kernel} {value:.0f}"
            for kernel, value in payload["matmul_peak_gflops_by_kernel"][dtype].items()
        )
        + ")"
        for dtype, best in payload["matmul_peak_gflops"].items()
    )
    print(f"\nmatmul peak GFLOP/s ({payload['machine']['torch_threads']} threads): {peaks}")
    for result in payload["models"]:
        print(
            f"\n{result['model']}: {result['n_texts']} texts, {result['n_tokens']} tokens, "
            f"{result['mflop_per_token']:.0f} MFLOP/token, median of {payload['rounds']} rounds"
        )
        columns = list(TABLE_COLUMNS)
        if payload["gpu_mode"]:
            columns.insert(
                4, ("vs ST same dtype+batch", "vs_sentence_transformers_same_setting", "{:.2f}x")
            )
        if payload["device"].startswith("cuda"):
            columns.append(("GPU MB", "gpu_peak_mb", "{:.0f}"))
        if payload.get("peers"):
            columns = [
                c
                for c in columns
                if c[1] not in ("vs_one_at_a_time", "peak_fraction_float32", "rss_increase_mb")
            ]
            columns.insert(5, ("bf16 peak", "peak_fraction_bfloat16", "{:.0%}"))
            columns.insert(6, ("int8 peak", "peak_fraction_int8", "{:.0%}"))
            columns.insert(4, ("vs fastest peer", "vs_fastest_peer", "{:.2f}x"))
            to_st = result["cosine_to_sentence_transformers"]
            stsb = result.get("stsb_test_spearman") or {}
            for row in result["systems"]:
                row["cosine_to_st"] = (
                    f"{to_st[row['name']]['min']:.5f} / {to_st[row['name']]['mean']:.6f}"
                )
                row["stsb"] = stsb.get(row["name"])
            columns += [("cos to ST fp32 min/mean", "cosine_to_st", "{}")]
            if stsb:
                columns += [("STS-B", "stsb", "{:.4f}")]
        print(common.format_table(result["systems"], columns))
        if result.get("calibration_seconds"):
            print(
                "calibration seconds: "
                + ", ".join(
                    f"{name} {'reused' if value is None else f'{value:.1f}'}"
                    for name, value in result["calibration_seconds"].items()
                )
            )
        cosines = result["cosine_to_albert_float32"]
        print(
            "cosine to AlbertVectorizer float32 (min): "
            + ", ".join(f"{name} {value['min']:.5f}" for name, value in cosines.items())
        )
    fidelity = payload.get("minilm_fidelity")
    if fidelity:
        print(f"\nreal MiniLM fidelity ({fidelity['n_texts']} texts; STS-B test Spearman):")
        for key in ("float32", "default", "int8"):
            figures = fidelity.get(key)
            if figures is None:
                continue
            line = f"  {key} ({figures['dtype']}):"
            if "cosine_min" in figures:
                line += (
                    f" cosine to float32 min {figures['cosine_min']:.6f}, "
                    f"mean {figures['cosine_mean']:.6f};"
                )
            if "stsb_test_spearman" in figures:
                line += f" STS-B Spearman {figures['stsb_test_spearman']:.4f}"
            print(line)


def save_chart(payload, path):
    """Horizontal bars of texts/s per system, one panel per model, ratio to ST on each bar."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no chart")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = payload["models"]
    height = sum(0.35 * len(result["systems"]) + 1.2 for result in models)
    figure, axes = plt.subplots(len(models), 1, figsize=(9, height), squeeze=False)
    for axis, result in zip(axes[:, 0], models):
        rows = result["systems"]
        labels = [row["label"] for row in rows]
        speeds = [row["texts_per_s"] for row in rows]
        colors = ["tab:blue" if row["name"].startswith("albert") else "tab:gray" for row in rows]
        bars = axis.barh(labels, speeds, color=colors)
        for bar, row in zip(bars, rows):
            axis.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {row['vs_sentence_transformers']:.2f}x",
                va="center",
                fontsize=8,
            )
        axis.invert_yaxis()
        axis.set_xlabel("texts per second (higher is better)")
        axis.set_title(
            f"{result['model']} on {payload['texts']['source']} "
            f"({result['n_texts']} texts), {payload['device']}, "
            f"{payload['machine']['torch_threads']} threads",
            fontsize=10,
        )
        axis.margins(x=0.15)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------- main


def load_texts(source, n_texts):
    """The benchmark texts, distinct, and the name of where they came from."""
    if source == "sst2-dev" and common.sst2_glue_dev_path().exists():
        texts = list(dict.fromkeys(common.read_sst2_glue_dev()[0]))
    elif source == "sst2-train" and common.sst2_train_path().exists():
        texts = common.sample_sst2_train(n_texts or 20_000, distinct=True)[0]
    else:
        if source != "generated":
            print(f"{source} is not available here; using generated sentences.")
        source = "generated"
        texts = common.distinct_generated_sentences(n_texts or 872)
    return texts[:n_texts] if n_texts else texts, source


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", choices=common.MODEL_NAMES, default=["albert-base"])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument(
        "--texts",
        choices=("sst2-dev", "sst2-train", "generated"),
        default=None,
        help="default: sst2-dev on CPU, 20,000 SST-2 train sentences on GPU",
    )
    parser.add_argument("--n-texts", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--loop-texts", type=int, default=100, help="texts the one-at-a-time loop is timed on"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[32, 128, 512],
        help="batch sizes of the GPU mode",
    )
    parser.add_argument(
        "--gpu-mode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the dtype x batch size sweep (default: on with CUDA)",
    )
    parser.add_argument(
        "--no-fidelity",
        action="store_true",
        help="skip the MiniLM fidelity check (default and int8 against float32)",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="add the CPU peers (the anchors extra): ST onnx / onnx int8 / openvino / "
        "openvino f32 / openvino static int8, fastembed; drops the pipeline and the loop",
    )
    parser.add_argument(
        "--peers-python",
        default=None,
        help="run the peers in this interpreter (e.g. .venv-anchors/bin/python, with "
        "transformers 4.57 for optimum-intel) and AlbertVectorizer in this one",
    )
    parser.add_argument(
        "--stsb",
        action="store_true",
        help="STS-B test Spearman of every system (for --model minilm)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch (and every runtime's) thread count"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 64 texts, 1 round, 16 loop texts, small matmul",
    )
    parser.add_argument(
        "--batch-variant",
        action="store_true",
        help="on CPU, add the default and float32 AlbertVectorizer with batch invariance "
        "off (SKLEARN_ALBERT_CPU_BATCH_INVARIANT=0 during their calls): what it costs",
    )
    parser.add_argument("--out", default=None, help=f"result folder (default {common.RESULTS_DIR})")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.gpu_mode is None:
        args.gpu_mode = args.device.startswith("cuda")
    if args.texts is None:
        args.texts = "sst2-train" if args.gpu_mode else "sst2-dev"
    if args.quick:
        args.n_texts = min(args.n_texts or 64, 64)
        args.rounds, args.loop_texts = 1, min(args.loop_texts, 16)
        args.batch_sizes = args.batch_sizes[:2]
    return args


def main(argv=None):
    args = parse_args(argv)
    common.quiet_transformers()
    texts, source = load_texts(args.texts, args.n_texts)
    machine = common.machine_info()
    print(
        f"{len(texts)} texts from {source}; device {args.device}; "
        f"{machine['torch_threads']} torch threads; load average {machine['load_average']}"
    )
    peak_samples = [measure_peaks(args.device, args.quick)]
    results = [bench_model(name, texts, args, peak_samples) for name in args.model]
    peak_samples.append(measure_peaks(args.device, args.quick))
    # Load only ever lowers a measurement: the best sample is the closest to the peak.
    peaks, peaks_by_kernel = best_peaks(peak_samples)
    for result in results:
        add_peak_fractions(result["systems"], peaks)
    payload = {
        "benchmark": "encode",
        "created": common.utc_now(),
        "device": args.device,
        "rounds": args.rounds,
        "gpu_mode": args.gpu_mode,
        "quick": args.quick,
        "peers": args.peers,
        "peers_environments": PEER_ENVIRONMENTS,
        "texts": {"source": source, "n_texts": len(texts)},
        "machine": machine,
        "load_average_after": list(os.getloadavg()),
        "matmul_peak_gflops": peaks,  # int8: GOP/s
        "matmul_peak_gflops_by_kernel": peaks_by_kernel,
        "matmul_peak_gflops_samples": peak_samples,
        "models": results,
    }
    if not args.no_fidelity and common.minilm_available():
        fidelity_texts = texts if len(texts) <= 872 else texts[:872]
        payload["minilm_fidelity"] = minilm_fidelity(fidelity_texts, args.device)
    json_path = common.save_json(f"encode-{args.device.replace(':', '')}", payload, args.out)
    chart_path = json_path.with_suffix(".png")
    save_chart(payload, chart_path)
    print_report(payload)
    print(f"\nsaved {json_path}\n      {chart_path}")
    return payload


if __name__ == "__main__":
    main()
