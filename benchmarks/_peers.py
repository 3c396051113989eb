"""The systems a user picks for fast CPU embeddings, built here for ``bench_encode.py --peers``.

Each builder returns the keyword arguments of a ``bench_encode.System`` (less
``text_index``): ``name``, ``label``, ``compute_dtype``, ``run`` and ``batch_size``. Every
runtime gets the same thread count (``threads``): torch ``set_num_threads``, ONNX Runtime
``intra_op_num_threads``, OpenVINO ``INFERENCE_NUM_THREADS``.

The peers need sentence-transformers >= 5 with its ONNX and OpenVINO backends,
optimum-intel and fastembed (the ``anchors`` extra); optimum-intel pins transformers 4.57,
so they live in a virtual environment of their own (``benchmarks/README.md``).

Exported and quantized copies of each model are written under
``.bench_models/peers/<model>/`` and reused by later runs; the static int8 OpenVINO
export is calibrated the way optimum-intel documents it: ``OVQuantizer`` with
``OVQuantizationConfig(num_samples=300)`` on 300 seeded SST-2 *train* sentences (generated
sentences where ``../shared`` is absent), tokenized as sentence-transformers does for
calibration (``padding="max_length", max_length=384``).
"""

import shutil
import time

import _common as common
import numpy as np

CALIBRATION_TEXTS = 300
CALIBRATION_LENGTH = 384


def calibration_texts(n_texts=CALIBRATION_TEXTS):
    """The seeded calibration sentences (SST-2 train, disjoint from the timed dev set)."""
    if common.sst2_train_path().exists():
        return common.sample_sst2_train(n_texts, seed=1, distinct=True)[0]
    return common.distinct_generated_sentences(n_texts, seed=1)


def peer_folder(model_name, folder):
    """A private copy of the model folder that exports may write into."""
    target = common.MODEL_CACHE / "peers" / model_name
    if not (target / "config.json").exists():
        shutil.copytree(folder, target, dirs_exist_ok=True)
    return target


def _st_encode(model, batch_size):
    def encode(texts):
        embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=False)
        return np.asarray(embeddings, dtype=np.float32)

    return encode


def _ort_session_options(threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def _mean_pooling_st(folder, **kwargs):
    """A SentenceTransformer over ``folder`` with mean pooling (a plain HF folder gets it)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", **kwargs)


def st_onnx(model_name, folder, *, threads, batch_size=32, quantized=False):
    """sentence-transformers ``backend="onnx"``; optionally its dynamic int8 export."""
    copy = peer_folder(model_name, folder)
    model_file = copy / "onnx" / "model.onnx"
    if not model_file.exists():
        exported = _mean_pooling_st(
            copy, backend="onnx", model_kwargs={"provider": "CPUExecutionProvider"}
        )
        exported.save_pretrained(str(copy))
    kwargs = {"provider": "CPUExecutionProvider", "session_options": _ort_session_options(threads)}
    name, label = "st_onnx", "ST onnx (optimum export)"
    if quantized:
        quantized_file = copy / "onnx" / "model_qint8_avx512_vnni.onnx"
        if not quantized_file.exists():
            from sentence_transformers import export_dynamic_quantized_onnx_model

            base = _mean_pooling_st(copy, backend="onnx", model_kwargs=dict(kwargs))
            export_dynamic_quantized_onnx_model(base, "avx512_vnni", str(copy))
        kwargs["file_name"] = "onnx/model_qint8_avx512_vnni.onnx"
        name, label = "st_onnx_int8", "ST onnx, dynamic int8 (avx512_vnni)"
    model = _mean_pooling_st(copy, backend="onnx", model_kwargs=kwargs)
    return dict(
        name=name,
        label=label,
        compute_dtype="int8" if quantized else "float32",
        run=_st_encode(model, batch_size),
        batch_size=batch_size,
    )


def st_openvino(model_name, folder, *, threads, batch_size=32, precision=None):
    """sentence-transformers ``backend="openvino"``, at the plugin's precision or forced."""
    copy = peer_folder(model_name, folder)
    ov_config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        ov_config["INFERENCE_PRECISION_HINT"] = precision
    model = _mean_pooling_st(copy, backend="openvino", model_kwargs={"ov_config": ov_config})
    chosen = precision or _ov_default_precision()
    suffix = "" if precision is None else f"_{precision}"
    return dict(
        name=f"st_openvino{suffix}",
        label=f"ST openvino, {chosen} " + ("forced" if precision else "(the plugin's choice)"),
        compute_dtype="bfloat16" if chosen == "bf16" else "float32",
        run=_st_encode(model, batch_size),
        batch_size=batch_size,
    )


def _ov_default_precision():
    """The inference precision OpenVINO's CPU plugin picks on this CPU ("bf16", "f32")."""
    import openvino as ov

    value = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return str(getattr(value, "get_type_name", lambda: value)())


def st_openvino_static_int8(model_name, folder, *, threads, batch_size=32):
    """ST + OpenVINO with optimum-intel's static int8 (NNCF), calibrated here.

    Returns the system and the calibration seconds (None when the export was reused).
    """
    import nncf
    from optimum.intel import (
        OVConfig,
        OVModelForFeatureExtraction,
        OVQuantizationConfig,
        OVQuantizer,
    )
    from transformers import AutoTokenizer

    copy = peer_folder(model_name, folder)
    target = copy / "openvino" / "openvino_model_qint8_static.xml"
    seconds = None
    if not target.exists():
        tokenizer = AutoTokenizer.from_pretrained(str(copy))
        samples = [
            dict(
                tokenizer(
                    text,
                    padding="max_length",
                    max_length=CALIBRATION_LENGTH,
                    truncation=True,
                    return_tensors="np",
                )
            )
            for text in calibration_texts()
        ]
        start = time.perf_counter()
        ov_model = OVModelForFeatureExtraction.from_pretrained(str(copy), export=True)
        names = [port.get_any_name() for port in ov_model.model.inputs]
        dataset = nncf.Dataset([{k: v for k, v in s.items() if k in names} for s in samples])
        quantizer = OVQuantizer.from_pretrained(ov_model)
        scratch = copy / "openvino_static_scratch"
        quantizer.quantize(
            ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=300)),
            calibration_dataset=dataset,
            save_directory=str(scratch),
        )
        seconds = time.perf_counter() - start
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(scratch / "openvino_model.xml"), str(target))
        shutil.move(str(scratch / "openvino_model.bin"), str(target.with_suffix(".bin")))
        shutil.rmtree(scratch, ignore_errors=True)
    ov_config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    model = _mean_pooling_st(
        copy,
        backend="openvino",
        model_kwargs={"ov_config": ov_config, "file_name": "openvino/" + target.name},
    )
    system = dict(
        name="st_openvino_static_int8",
        label="ST openvino, static int8 (NNCF, 300 calibration sentences)",
        compute_dtype="int8",
        run=_st_encode(model, batch_size),
        batch_size=batch_size,
    )
    return system, seconds


def fastembed_system(model_name, folder, *, threads, batch_size=32):
    """fastembed's ``TextEmbedding`` over the same ``onnx/model.onnx``, mean pooling."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType
    from transformers import AutoConfig

    copy = peer_folder(model_name, folder)
    if not (copy / "onnx" / "model.onnx").exists():
        st_onnx(model_name, folder, threads=threads)
    key = f"sklearn-albert-bench/{model_name}"
    known = {entry["model"] for entry in TextEmbedding.list_supported_models()}
    if key not in known:
        TextEmbedding.add_custom_model(
            model=key,
            pooling=PoolingType.MEAN,
            normalization=False,
            sources=ModelSource(hf=key),
            dim=AutoConfig.from_pretrained(str(copy)).hidden_size,
            model_file="onnx/model.onnx",
        )
    model = TextEmbedding(key, specific_model_path=str(copy), threads=threads)

    def encode(texts):
        return np.stack(list(model.embed(texts, batch_size=batch_size))).astype(np.float32)

    return dict(
        name="fastembed",
        label="fastembed (ONNX Runtime, same model.onnx)",
        compute_dtype="float32",
        run=encode,
        batch_size=batch_size,
    )


def build_peer_systems(model_name, folder, *, threads):
    """Every peer, in the order of the tables, and the calibration seconds of each calibrated one.

    Returns
    -------
    systems : list of dict
        ``bench_encode.System`` keyword arguments (less ``text_index``).
    calibration_seconds : dict of str to float or str
    """
    systems = [
        st_onnx(model_name, folder, threads=threads),
        st_onnx(model_name, folder, threads=threads, quantized=True),
        st_openvino(model_name, folder, threads=threads),
        st_openvino(model_name, folder, threads=threads, precision="f32"),
    ]
    static_int8, seconds = st_openvino_static_int8(model_name, folder, threads=threads)
    systems.append(static_int8)
    systems.append(fastembed_system(model_name, folder, threads=threads))
    return systems, {static_int8["name"]: seconds}
