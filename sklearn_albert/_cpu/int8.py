"""Static int8 encoding on CPU: activation ranges calibrated from texts, run by OpenVINO.

Dynamic int8 quantization (what ``torch.ao.quantization.quantize_dynamic`` does) scales
each activation by the range of the *batch* it sits in, so one text's vector depends on
its neighbours, and it re-measures those ranges on every call. Static int8 measures the
ranges once, on calibration texts, and then uses the same scales for every text: rows are
computed independently of each other and of padding, and the int8 matmuls need no
per-call range pass.

How an encoder is built (:func:`calibrate_int8`):

1. The float32 Hugging Face encoder is traced into an OpenVINO model whose outputs are
   every hidden state (embedding output first) and, when the model has one, the pooler
   output. Tracing unrolls ALBERT's shared layer: each of its applications becomes its own
   part of the graph, so each gets its own activation ranges, as they must (one range for
   all twelve applications is what collapses ALBERT int8, ONNX Runtime issue #11701).
2. NNCF's post-training quantization (``model_type=TRANSFORMER``) runs the calibration
   texts one at a time, unpadded (padding would add the statistics of tokens nobody
   reads), records the range of every matmul input, and writes int8 weights (per output
   channel) and fixed activation quantizers into the model.
3. OpenVINO's CPU plugin compiles it: int8 matmuls on AVX512-VNNI or AMX where the CPU has
   them (AVX2 otherwise, with less gain), the rest in float32.

Calling the encoder runs a batch on the ``streams`` concurrent OpenVINO inference streams
that are free (one thread each, by default two streams on two or more threads): a caller
alone splits its batch into row chunks across all of them, while the engine calls it from
one worker thread per stream, so that each batch runs whole on a stream of its own and no
stream waits while the caller caches the last batch. Each chunk is cropped to its own
longest text. Every row goes through the same compiled kernels and the same summation
order whatever chunk it lands in, which is what makes the result batch-invariant
(bit-identical in our tests): inside the compiled graph each attention's keys are padded
(masked) to a multiple of :data:`KEY_MULTIPLE`, where OpenVINO's attention kernel sums a
row's keys in the same order whatever the chunk's width.

The calibrated model is kept as OpenVINO IR: ``model.xml`` (the graph, data only) and
``model.bin`` (weights and quantizer ranges), plus ``int8.json``; :meth:`to_files` and
:meth:`StaticInt8Encoder.from_files` move it through pickle, save and load without pickle
or code.
"""

import hashlib
import json
import logging
import queue
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._calibration_texts import builtin_calibration_texts

__all__ = [
    "StaticInt8Encoder",
    "builtin_calibration_texts",
    "calibrate_int8",
    "check_int8_supported",
    "cpu_int8_features",
    "select_calibration_ids",
]

logger = logging.getLogger("sklearn_albert")

#: At most this many distinct texts calibrate an encoder (a seeded random sample of them).
MAX_CALIBRATION_TEXTS = 300

#: Fewer distinct texts than this give ranges too narrow to trust: the caller should
#: calibrate on :func:`builtin_calibration_texts` instead (``fit(["x"])``).
MIN_CALIBRATION_TEXTS = 32

#: Seed of the calibration sample.
CALIBRATION_SEED = 0

#: The optional extra that installs the runtime.
INSTALL_HINT = 'pip install "sklearn-albert[int8]"'

#: Attention keys are padded (masked) to a multiple of this many inside the compiled graph.
#: OpenVINO's CPU attention sums a row's keys in an order that depends on the number of
#: keys unless it is a multiple of 16; a last-bit difference there can flip an int8
#: rounding downstream (0.011 on ALBERT-base's mean-pooled vectors between batch sizes 1,
#: 7 and 64, 0.04 on a token vector of MiniLM). With the keys padded, a text's vector is
#: bit-identical whatever it is batched with (measured on OpenVINO 2026.4). Padding the
#: whole chunk to a multiple of 16 tokens instead did the same, but cost 23% more tokens
#: in every matmul on SST-2 dev, and 10% of the int8 encoder's speed.
KEY_MULTIPLE = 16

FORMAT_VERSION = 1
FILE_NAMES = ("model.xml", "model.bin", "int8.json")


# ---------------------------------------------------------------------- checks


def check_int8_supported(device, *, calibrate=True):
    """Raise a clear error when static int8 cannot run here.

    Parameters
    ----------
    device : str or torch.device
        The device the estimator was asked to use.
    calibrate : bool, default=True
        Also require NNCF, which only calibration needs (a calibrated encoder loaded from
        files runs on OpenVINO alone).

    Raises
    ------
    ValueError
        If ``device`` is not a CPU.
    ImportError
        If OpenVINO (or, with ``calibrate``, NNCF) is not installed.
    """
    device_type = getattr(device, "type", None) or str(device).split(":")[0]
    if device_type != "cpu":
        raise ValueError(
            f"dtype='int8' runs on CPU only, but got device={str(device)!r}. Static int8 runs "
            "on OpenVINO's CPU plugin. Use device='cpu' with dtype='int8', or keep this device "
            "with dtype='float16' or dtype='bfloat16' (or 'auto')."
        )
    missing = [
        name
        for name, needed in (("openvino", True), ("nncf", calibrate))
        if needed and not _importable(name)
    ]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ImportError(
            f"dtype='int8' needs {' and '.join(missing)}, which {verb} not installed."
            f" Install the int8 extra: {INSTALL_HINT}; or use dtype='auto' "
            "(bfloat16 or float32 on CPU), which needs nothing more."
        )


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def cpu_int8_features():
    """The CPU's int8 dot-product instruction sets, from ``/proc/cpuinfo`` (Linux only).

    Returns
    -------
    features : list of str
        Among ``"amx_int8"``, ``"avx512_vnni"``, ``"avx_vnni"``; empty when none is found
        or the file cannot be read. Without any of them int8 still runs, on AVX2, and
        gains little over float32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [name for name in ("amx_int8", "avx512_vnni", "avx_vnni") if name in flags]


# ---------------------------------------------------------------------- calibration


def select_calibration_ids(calibration_ids, *, limit=MAX_CALIBRATION_TEXTS, seed=CALIBRATION_SEED):
    """The distinct token-id lists that calibrate: at most ``limit``, a seeded sample.

    Parameters
    ----------
    calibration_ids : list of list of int
    limit : int, default=MAX_CALIBRATION_TEXTS
    seed : int, default=CALIBRATION_SEED

    Returns
    -------
    selected : list of list of int
        In their original order; empty lists (texts with no tokens at all) are dropped.
    """
    distinct = list(dict.fromkeys(tuple(int(i) for i in row) for row in calibration_ids if row))
    if len(distinct) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(distinct), limit, replace=False))
        distinct = [distinct[i] for i in keep]
    return [list(row) for row in distinct]


def calibrate_int8(model, calibration_ids, *, pad_id, threads=None, streams=None, progress=False):
    """Build a static int8 encoder from a float32 encoder and calibration token ids.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The float32 encoder (``AutoModel``), in eval mode, on CPU. It is traced, not
        modified.
    calibration_ids : list of list of int
        Token ids per calibration text, special tokens added, cropped to the model's
        maximum length. At most :data:`MAX_CALIBRATION_TEXTS` distinct ones are used (a
        seeded random sample, :func:`select_calibration_ids`); each runs on its own,
        unpadded.
    pad_id : int
        The tokenizer's padding id: fills the tracing example (masked, so it never
        reaches a real token).
    threads : int, default=None
        CPU threads of the compiled encoder; None means ``torch.get_num_threads()``.
    streams : int, default=None
        Concurrent inference streams a batch is split across; None means 2 when there
        are at least 2 threads, else 1.
    progress : bool, default=False
        Show NNCF's calibration progress bars, on stderr. False shows nothing: NNCF
        draws them on stdout otherwise, where they would mix with a program's output.

    Returns
    -------
    encoder : StaticInt8Encoder

    Raises
    ------
    ValueError
        If no calibration text has any token.
    ImportError
        If OpenVINO or NNCF is missing (see :func:`check_int8_supported`).
    """
    check_int8_supported("cpu")
    import nncf
    import openvino as ov
    import torch

    selected = select_calibration_ids(calibration_ids)
    if not selected:
        raise ValueError(
            f"calibration_ids holds no text with any token (got {len(calibration_ids)} "
            "entries); pass token ids of real texts, or builtin_calibration_texts() tokenized."
        )
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(row) for row in selected)
    if limit is not None and longest > limit:
        raise ValueError(
            f"calibration_ids holds a text of {longest} tokens, longer than the model's "
            f"max_position_embeddings={limit}; crop the ids to the model's maximum length "
            "(special tokens included) before calibrating."
        )
    start = time.perf_counter()
    has_pooler, n_hidden_states = _output_layout(model, selected[0])
    example = _example_batch(selected, pad_id)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        float_model = ov.convert_model(
            _traced_encoder(model, has_pooler),
            example_input=example,
            input=[
                ("input_ids", ov.PartialShape([-1, -1]), ov.Type.i64),
                ("attention_mask", ov.PartialShape([-1, -1]), ov.Type.i64),
            ],
        )
    dataset = nncf.Dataset(
        [np.asarray([row], dtype=np.int64) for row in selected],
        lambda ids: {"input_ids": ids, "attention_mask": np.ones_like(ids)},
    )
    previous_level = nncf.common.logging.nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with _nncf_progress_bars(shown=progress):
            quantized = nncf.quantize(
                float_model,
                dataset,
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(selected),
            )
    finally:
        nncf.set_log_level(previous_level)
    xml, weights = _serialize(quantized)
    meta = {
        "format_version": FORMAT_VERSION,
        "n_hidden_states": n_hidden_states,
        "has_pooler": has_pooler,
        "hidden_size": int(model.config.hidden_size),
        "model_type": str(getattr(model.config, "model_type", "")),
        "pad_id": int(pad_id),
        "n_calibration_texts": len(selected),
        "n_calibration_tokens": int(sum(len(row) for row in selected)),
        "calibration_seconds": round(time.perf_counter() - start, 3),
        "openvino_version": ov.__version__ if hasattr(ov, "__version__") else ov.get_version(),
        "nncf_version": nncf.__version__,
    }
    return StaticInt8Encoder(xml, weights, meta, threads=threads, streams=streams)


@contextmanager
def _nncf_progress_bars(*, shown):
    """NNCF's progress bars on stderr when ``shown``, else nowhere.

    NNCF draws them with rich's process-wide console, which writes to stdout: a
    ``sklearn-albert info --json`` or any program piping its stdout would get them mixed
    into its output. The console's own ``quiet`` and ``stderr`` switches redirect rich's
    output alone (swapping ``sys.stdout`` would also swallow other threads' prints).
    """
    from rich import get_console

    console = get_console()
    previous = console.quiet, console.stderr
    console.quiet, console.stderr = not shown, True
    try:
        yield
    finally:
        console.quiet, console.stderr = previous


def _make_traced_encoder_class():
    import torch

    class TracedEncoder(torch.nn.Module):
        """The encoder with a flat output: every hidden state, then the pooler output."""

        def __init__(self, model, has_pooler):
            super().__init__()
            self.model = model
            self.has_pooler = has_pooler

        def forward(self, input_ids, attention_mask):
            output = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=True,
                return_dict=True,
            )
            pooler = (output.pooler_output,) if self.has_pooler else ()
            return (*output.hidden_states, *pooler)

    return TracedEncoder


def _output_layout(model, ids):
    """(has_pooler, n_hidden_states) of ``model``, from one forward pass on ``ids``."""
    import torch

    with torch.no_grad():
        tensor = torch.tensor([ids], dtype=torch.long)
        output = model(
            input_ids=tensor,
            attention_mask=torch.ones_like(tensor),
            output_hidden_states=True,
            return_dict=True,
        )
    pooler = getattr(output, "pooler_output", None)
    return pooler is not None, len(output.hidden_states)


def _example_batch(selected, pad_id):
    """Two rows of different lengths, right-padded: the tracing example."""
    import torch

    rows = sorted(selected[:2] if len(selected) > 1 else selected * 2, key=len, reverse=True)
    rows = [rows[0], rows[1][: max(1, len(rows[1]) - 1)] if len(rows[1]) > 1 else rows[1]]
    width = len(rows[0])
    input_ids = torch.full((2, width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((2, width), dtype=torch.long)
    for position, row in enumerate(rows):
        input_ids[position, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[position, : len(row)] = 1
    return input_ids, attention_mask


def _serialize(ov_model):
    """(xml bytes, bin bytes) of an OpenVINO model, float constants kept in float32."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="sklearn_albert_int8_") as folder:
        path = Path(folder) / "model.xml"
        ov.save_model(ov_model, str(path), compress_to_fp16=False)
        return path.read_bytes(), path.with_suffix(".bin").read_bytes()


# ---------------------------------------------------------------------- the encoder


@dataclass
class Int8Output:
    """What :class:`StaticInt8Encoder` returns: the fields the forward step reads.

    Attributes
    ----------
    hidden_states : tuple of torch.Tensor of shape (batch, seq_len, dim), float32
        Embedding output first, then each layer's output.
    pooler_output : torch.Tensor of shape (batch, dim), float32, or None
    """

    hidden_states: tuple
    pooler_output: object = None


class StaticInt8Encoder:
    """A calibrated static int8 encoder, a drop-in for the Hugging Face model's forward.

    Build one with :func:`calibrate_int8`, or :meth:`from_files`.

    Parameters
    ----------
    xml, weights : bytes
        The OpenVINO IR of the quantized model.
    meta : dict
        What :func:`calibrate_int8` recorded (layout, calibration size and time).
    threads : int, default=None
        CPU threads; None means ``torch.get_num_threads()``.
    streams : int, default=None
        Concurrent inference streams; None means 2 with at least 2 threads, else 1.

    Attributes
    ----------
    n_calibration_texts : int
        Distinct texts the activation ranges were measured on.
    calibration_seconds : float
        Wall time of the tracing and calibration.
    calibration_id : str
        SHA-256 (hex) of the calibrated weights and quantizer ranges: equal for equal
        calibrations, different when the ranges differ. Part of an embedding cache key.
    threads, streams : int
    runs_own_streams : bool
        True: the engine runs it on ``streams`` worker threads of its own, one batch each
        (each then takes a stream), not on torch's CPU streams.
    """

    runs_own_streams = True

    def __init__(self, xml, weights, meta, *, threads=None, streams=None):
        import torch

        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"int8.json has format_version={meta.get('format_version')!r}; this version "
                f"of sklearn_albert reads {FORMAT_VERSION}. Calibrate again (fit)."
            )
        self._xml, self._weights, self._meta = bytes(xml), bytes(weights), dict(meta)
        self.threads = int(threads or torch.get_num_threads())
        self.streams = int(streams or (2 if self.threads >= 2 else 1))
        if self.threads < 1 or self.streams < 1 or self.streams > self.threads:
            raise ValueError(
                f"Got threads={self.threads} and streams={self.streams}; need "
                "1 <= streams <= threads."
            )
        self.calibration_id = _calibration_id(self._weights, self._meta)
        self._variants = {}  # "hidden" / "pooled": (compiled model, free infer requests)
        self._compile_lock = threading.Lock()
        self._variant("hidden")  # compile now: a broken artefact fails here, not mid-encode

    def _variant(self, kind):
        """The compiled model of ``kind`` and its free requests, compiled on first use."""
        with self._compile_lock:
            variant = self._variants.get(kind)
            if variant is None:
                variant = self._variants[kind] = self._compile(kind)
            return variant

    def _compile(self, kind):
        import openvino as ov

        core = ov.Core()
        ov_model = core.read_model(model=self._xml, weights=self._weights)
        _with_keys_padded(ov_model, KEY_MULTIPLE)
        if kind == "pooled":
            ov_model = _with_pooled_outputs(ov_model, self.n_hidden_states, self.has_pooler)
        compiled = core.compile_model(
            ov_model,
            "CPU",
            {
                "PERFORMANCE_HINT": "THROUGHPUT" if self.streams > 1 else "LATENCY",
                "NUM_STREAMS": self.streams,
                "INFERENCE_NUM_THREADS": self.threads,
                # float32 between the int8 matmuls: OpenVINO 2026.4's bfloat16 path
                # returned wrong rows at sequence length 32 exactly (max abs error 1.4
                # on MiniLM), and float32 there costs little next to the int8 matmuls.
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
        free = queue.SimpleQueue()  # the requests not running now: one per stream
        for _ in range(self.streams):
            free.put(compiled.create_infer_request())
        return compiled, free

    # -- facts

    @property
    def n_calibration_texts(self):
        return self._meta["n_calibration_texts"]

    @property
    def calibration_seconds(self):
        return self._meta["calibration_seconds"]

    @property
    def n_hidden_states(self):
        return self._meta["n_hidden_states"]

    @property
    def has_pooler(self):
        return self._meta["has_pooler"]

    def __repr__(self):
        return (
            f"StaticInt8Encoder(n_calibration_texts={self.n_calibration_texts}, "
            f"calibration_id={self.calibration_id[:12]!r}, threads={self.threads}, "
            f"streams={self.streams})"
        )

    # -- the forward step

    def __call__(self, input_ids, attention_mask, output_hidden_states=True, **unused):
        """Encode one padded batch.

        Parameters
        ----------
        input_ids, attention_mask : torch.Tensor of shape (batch, seq_len), integer
            As ``collate`` builds them (right padding).
        output_hidden_states : bool, default=True
            Accepted for the Hugging Face signature; the hidden states are always returned.

        Returns
        -------
        output : Int8Output
            ``hidden_states`` (one float32 tensor per hidden state, shape (batch, seq_len,
            dim), zeros at padded positions a chunk did not compute) and ``pooler_output``.
        """
        import torch

        ids, mask = _as_arrays(input_ids, attention_mask)
        batch, width = ids.shape
        dim = self._meta["hidden_size"]
        n_states = self.n_hidden_states
        hidden = [torch.empty((batch, width, dim), dtype=torch.float32) for _ in range(n_states)]
        pooler = torch.empty((batch, dim), dtype=torch.float32) if self.has_pooler else None

        def collect(request, low, high, kept):
            for index in range(n_states):
                hidden[index][low:high, :kept] = torch.from_numpy(
                    request.get_output_tensor(index).data[:, :kept]
                )
                hidden[index][low:high, kept:] = 0
            if pooler is not None:
                pooler[low:high] = torch.from_numpy(request.get_output_tensor(n_states).data)

        self._run_chunks("hidden", ids, mask, collect)
        return Int8Output(tuple(hidden), pooler)

    def pooled(self, input_ids, attention_mask):
        """Encode one padded batch and pool it inside OpenVINO, as ``run_model`` pools.

        The same numbers as ``pool_hidden_states(self(...).hidden_states, attention_mask)``
        (to float rounding: the masked mean sums in another order), without copying every
        hidden state out of the runtime: on ALBERT-base that copy and the pooling in torch
        cost about as much as the int8 encoder itself.

        Parameters
        ----------
        input_ids, attention_mask : torch.Tensor of shape (batch, seq_len), integer

        Returns
        -------
        summaries : torch.Tensor of shape (batch, 3, n_hidden_states, dim), float32
            ``[:, 0]`` the first token, ``[:, 1]`` the masked mean, ``[:, 2]`` the masked
            max of each hidden state (embedding output first).
        pooler : torch.Tensor of shape (batch, dim), float32, or None
        """
        import torch

        ids, mask = _as_arrays(input_ids, attention_mask)
        batch = ids.shape[0]
        dim = self._meta["hidden_size"]
        summaries = torch.empty((batch, 3, self.n_hidden_states, dim), dtype=torch.float32)
        pooler = torch.empty((batch, dim), dtype=torch.float32) if self.has_pooler else None

        def collect(request, low, high, kept):
            summaries[low:high] = torch.from_numpy(request.get_output_tensor(0).data)
            if pooler is not None:
                pooler[low:high] = torch.from_numpy(request.get_output_tensor(1).data)

        self._run_chunks("pooled", ids, mask, collect)
        return summaries, pooler

    def _run_chunks(self, kind, ids, mask, collect):
        """Run a batch on the free streams, in row chunks; ``collect(request, low, high, kept)``.

        A call takes one free stream (waiting for one if all are busy) and any others free
        then: one caller alone splits its batch across every stream, while callers running
        side by side (the engine's workers) each run a whole batch on a stream of its own.
        Every row gets the same arithmetic whatever its chunk, so the split does not change
        the results.
        """
        batch, width = ids.shape
        if batch == 0 or width == 0:
            return
        _, free = self._variant(kind)
        requests = [free.get()]
        while len(requests) < min(self.streams, batch):
            try:
                requests.append(free.get_nowait())
            except queue.Empty:
                break
        try:
            self._run_on(requests, ids, mask, collect)
        finally:
            for request in requests:
                free.put(request)

    def _run_on(self, requests, ids, mask, collect):
        batch = ids.shape[0]
        n_chunks = len(requests)
        bounds = np.linspace(0, batch, n_chunks + 1).round().astype(int)
        chunks = []
        for low, high in zip(bounds[:-1], bounds[1:]):
            # Each chunk runs at its own longest text: less padding than the batch's, and
            # the same arithmetic per row whatever the chunk (see KEY_MULTIPLE).
            used = np.flatnonzero(mask[low:high].any(axis=0))
            kept = int(used[-1]) + 1 if used.size else 1
            chunk_ids = np.ascontiguousarray(ids[low:high, :kept], dtype=np.int64)
            chunk_mask = np.ascontiguousarray(mask[low:high, :kept], dtype=np.int64)
            chunks.append((low, high, kept, chunk_ids, chunk_mask))
        for request, (_, _, _, chunk_ids, chunk_mask) in zip(requests, chunks):
            request.start_async({"input_ids": chunk_ids, "attention_mask": chunk_mask})
        for request, (low, high, kept, _, _) in zip(requests, chunks):
            request.wait()
            collect(request, low, high, kept)

    # -- persistence

    def to_files(self):
        """The calibrated encoder as data files (no pickle, no code).

        Returns
        -------
        files : dict of str to bytes
            ``model.xml`` (OpenVINO IR graph), ``model.bin`` (weights and quantizer
            ranges), ``int8.json`` (layout and calibration facts).
        """
        return {
            "model.xml": self._xml,
            "model.bin": self._weights,
            "int8.json": json.dumps(self._meta, indent=2, sort_keys=True).encode("utf-8"),
        }

    @classmethod
    def from_files(cls, files, *, threads=None, streams=None):
        """Rebuild an encoder from :meth:`to_files`'s output.

        Parameters
        ----------
        files : mapping of str to bytes
            Must hold ``model.xml``, ``model.bin`` and ``int8.json``.
        threads, streams : int, default=None
            See :class:`StaticInt8Encoder`.

        Returns
        -------
        encoder : StaticInt8Encoder

        Raises
        ------
        ValueError
            If a file is missing or ``int8.json`` is not valid.
        ImportError
            If OpenVINO is not installed.
        """
        missing = [name for name in FILE_NAMES if name not in files]
        if missing:
            raise ValueError(
                f"files must hold {', '.join(FILE_NAMES)}; {', '.join(missing)} missing "
                f"(got {sorted(files)})."
            )
        check_int8_supported("cpu", calibrate=False)
        try:
            meta = json.loads(bytes(files["int8.json"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"int8.json is not valid JSON: {error}") from error
        return cls(files["model.xml"], files["model.bin"], meta, threads=threads, streams=streams)

    def __reduce__(self):
        # Pickled as its data files: no compiled runtime state crosses processes.
        return (_from_pickled_files, (self.to_files(), self.threads, self.streams))


def _from_pickled_files(files, threads, streams):
    import torch

    # The pickling process's thread count may not fit this machine: cap it.
    available = max(1, torch.get_num_threads())
    threads = min(threads, available)
    return StaticInt8Encoder.from_files(files, threads=threads, streams=min(streams, threads))


def _as_arrays(input_ids, attention_mask):
    ids = np.ascontiguousarray(input_ids.detach().cpu().numpy(), dtype=np.int64)
    mask = np.ascontiguousarray(attention_mask.detach().cpu().numpy(), dtype=np.int64)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(
            f"input_ids and attention_mask must be 2-d and of one shape; got "
            f"{tuple(ids.shape)} and {tuple(mask.shape)}."
        )
    return ids, mask


def _with_keys_padded(ov_model, multiple):
    """``ov_model`` (changed in place) with its attention keys padded to ``multiple``.

    Each ``ScaledDotProductAttention`` gets its keys and values padded with zeros, and its
    mask with masked positions, up to the next multiple of ``multiple`` keys: a padded key
    is never attended to, so the attention is the same, but OpenVINO's CPU kernel then
    sums a row's keys in the same order whatever the batch's width (see
    :data:`KEY_MULTIPLE`). Attentions without a mask input are left as they are.

    Returns
    -------
    n_padded : int
        Attentions changed.
    """
    import openvino as ov
    import openvino.opset13 as ops

    n_padded = 0
    zero = ops.constant(np.array([0], dtype=np.int64))
    step = ops.constant(np.array([multiple], dtype=np.int64))
    begin = ops.constant(np.zeros(4, dtype=np.int64))
    for node in ov_model.get_ordered_ops():
        if node.get_type_name() != "ScaledDotProductAttention" or node.get_input_size() < 4:
            continue
        query, key, value, mask = (node.input_value(index) for index in range(4))
        n_keys = ops.gather(
            ops.shape_of(key, ov.Type.i64), ops.constant(np.array([2])), ops.constant(0)
        )
        missing = ops.mod(ops.subtract(step, ops.mod(n_keys, step)), step)  # (1,)
        key_end = ops.concat([zero, zero, missing, zero], 0)
        mask_end = ops.concat([zero, zero, zero, missing], 0)
        # The mask may broadcast over queries or keys: spell it out before padding it.
        n_queries = ops.gather(
            ops.shape_of(query, ov.Type.i64), ops.constant(np.array([2])), ops.constant(0)
        )
        leading = ops.slice(
            ops.shape_of(mask, ov.Type.i64),
            ops.constant(np.array([0])),
            ops.constant(np.array([2])),
            ops.constant(np.array([1])),
        )  # the mask's batch and head axes, as they are
        full = ops.concat([leading, n_queries, n_keys], 0)
        mask_type = mask.get_element_type()
        masked = np.array(False) if mask_type == ov.Type.boolean else np.float32(-np.inf)
        spelled = ops.broadcast(mask, full)
        padded_mask = ops.pad(
            spelled, begin, mask_end, "constant", ops.convert(ops.constant(masked), mask_type)
        )
        for index, tensor in ((1, key), (2, value)):
            padding = ops.convert(ops.constant(np.float32(0.0)), tensor.get_element_type())
            padded = ops.pad(tensor, begin, key_end, "constant", padding)
            node.input(index).replace_source_output(padded.output(0))
        node.input(3).replace_source_output(padded_mask.output(0))
        n_padded += 1
    ov_model.validate_nodes_and_infer_types()
    return n_padded


def _with_pooled_outputs(ov_model, n_hidden_states, has_pooler):
    """``ov_model`` with outputs (summaries, pooler) in place of every hidden state.

    ``summaries`` has shape (batch, 3, n_hidden_states, dim): per hidden state the first
    token, the mean over real tokens and the max over real tokens, as
    ``_pooling.pool_hidden_states`` computes them.
    """
    import openvino as ov
    import openvino.opset13 as ops

    mask_input = next(
        p for p in ov_model.get_parameters() if p.get_friendly_name() == "attention_mask"
    )
    mask = ops.unsqueeze(ops.convert(mask_input, ov.Type.f32), ops.constant(np.int64(2)))
    count = ops.maximum(
        ops.reduce_sum(mask, ops.constant(np.int64(1)), keep_dims=False),
        ops.constant(np.float32(1.0)),
    )  # (batch, 1)
    real = ops.greater(mask, ops.constant(np.float32(0.0)))  # (batch, seq, 1)
    minus_infinity = ops.constant(np.float32(-np.inf))
    axis_one = ops.constant(np.int64(1))
    results = ov_model.get_results()  # the values the model returns, in order
    layers = []
    for index in range(n_hidden_states):
        state = results[index].input_value(0)
        first = ops.gather(state, ops.constant(np.int64(0)), axis_one)
        mean = ops.divide(ops.reduce_sum(ops.multiply(state, mask), axis_one, False), count)
        maximum = ops.reduce_max(ops.select(real, state, minus_infinity), axis_one, False)
        stacked = ops.concat([ops.unsqueeze(v, axis_one) for v in (first, mean, maximum)], 1)
        layers.append(ops.unsqueeze(stacked, ops.constant(np.int64(2))))  # (batch, 3, 1, dim)
    outputs = [ops.concat(layers, 2).output(0)]
    if has_pooler:
        outputs.append(results[n_hidden_states].input_value(0))
    return ov.Model(outputs, ov_model.get_parameters(), "pooled")


def _calibration_id(weights, meta):
    """SHA-256 of the weights file and the layout (not the timing) of ``meta``."""
    digest = hashlib.sha256()
    digest.update(weights)
    stable = {key: meta[key] for key in sorted(meta) if key != "calibration_seconds"}
    digest.update(json.dumps(stable, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _traced_encoder(model, has_pooler):
    return _make_traced_encoder_class()(model, has_pooler)
