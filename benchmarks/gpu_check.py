"""The Python half of ``benchmarks/gpu_check.sh``: speed, fidelity, OOM backoff on one GPU.

Prints, for the ALBERT-base architecture (seeded random weights, ``../shared``; MiniLM
where it is absent):

1. texts/s of ``AlbertVectorizer`` (float16 and bfloat16) against sentence-transformers
   float16 on the same GPU, at several batch sizes, on SST-2 train sentences;
2. the fraction of the bf16 tensor-core peak that reaches (``--peak-tflops``, 989 dense on
   H100/H200 SXM), counting real tokens x 2 x the parameters in matmuls (each application
   of ALBERT's shared layer counted again: it is run again);
3. the real MiniLM's float16 and bfloat16 embeddings against float32: cosine min / mean,
   and STS-B test Spearman where ``../shared`` has it;
4. a real out-of-memory backoff: most of the GPU's free memory is taken by one tensor,
   then a batch too large for the rest is encoded; the warning of the split is captured
   and the result compared with an unconstrained run.

Fails at once, with a message, where CUDA is not available.
"""

import argparse
import logging
import statistics
import sys
import time

import _common as common
import numpy as np


def require_cuda():
    import torch

    if not torch.cuda.is_available():
        sys.exit(
            "gpu_check.py needs a CUDA GPU: torch.cuda.is_available() is False here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on the "
            "GPU machine, with a CUDA build of torch."
        )
    return torch


def matmul_parameters(config):
    """Weights a token passes through in matmuls, per forward pass (ALBERT layers x apps)."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    per_layer = 4 * hidden * hidden + 2 * hidden * config.intermediate_size
    embedding = getattr(config, "embedding_size", hidden)
    projection = embedding * hidden if embedding != hidden else 0
    return layers * per_layer + projection


def timed(function, repeats):
    import torch

    function()  # warm-up: kernels, allocator, tokenizer caches
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sentence_transformer(folder, dtype):
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    transformer = Transformer(str(folder))
    dimension = (
        transformer.get_embedding_dimension()
        if hasattr(transformer, "get_embedding_dimension")
        else transformer.get_word_embedding_dimension()
    )
    model = SentenceTransformer(
        modules=[transformer, Pooling(dimension, pooling_mode="mean")], device="cuda"
    )
    return model.to(getattr(torch, dtype))


def speed(folder, texts, batch_sizes, repeats, peak_tflops):
    from transformers import AutoConfig, AutoTokenizer

    from sklearn_albert import AlbertVectorizer

    config = AutoConfig.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokens = sum(common.count_tokens(tokenizer, texts, config.max_position_embeddings))
    flops = tokens * 2 * matmul_parameters(config)
    print(
        f"\n== speed: {folder.name}, {len(texts)} texts, {tokens} real tokens, "
        f"{matmul_parameters(config) / 1e6:.1f} M parameters in matmuls per token"
    )
    header = f"{'system':44} {'batch':>6} {'texts/s':>10} {'vs ST fp16':>11} {'bf16 peak':>10}"
    print(header)
    for batch_size in batch_sizes:
        st = sentence_transformer(folder, "float16")
        st_time = timed(
            lambda st=st, b=batch_size: st.encode(texts, batch_size=b, show_progress_bar=False),
            repeats,
        )
        rows = [("sentence-transformers float16", st_time)]
        del st
        for dtype in ("float16", "bfloat16"):
            vectorizer = AlbertVectorizer(
                str(folder),
                device="cuda",
                dtype=dtype,
                batch_size=batch_size,
                embedding_cache=None,
            ).fit(["warm up"])
            seconds = timed(lambda v=vectorizer: v.transform(texts), repeats)
            rows.append((f"AlbertVectorizer {dtype}", seconds))
            del vectorizer
        for label, seconds in rows:
            fraction = flops / seconds / (peak_tflops * 1e12)
            print(
                f"{label:44} {batch_size:>6} {len(texts) / seconds:>10.0f} "
                f"{st_time / seconds:>10.2f}x {fraction:>9.1%}"
            )
        _release()


def fidelity(texts):
    from sklearn_albert import AlbertVectorizer

    folder = common.minilm_folder()
    print(f"\n== fidelity: real MiniLM, {len(texts)} texts, against float32 on the same GPU")
    vectorizers = {
        dtype: AlbertVectorizer(str(folder), device="cuda", dtype=dtype, embedding_cache=None).fit(
            ["x"]
        )
        for dtype in ("float32", "float16", "bfloat16")
    }
    exact = vectorizers["float32"].transform(texts)
    stsb = common.read_stsb_test()
    for dtype, vectorizer in vectorizers.items():
        line = f"  {dtype:9}"
        if dtype != "float32":
            cosines = _cosine_rows(vectorizer.transform(texts), exact)
            line += f" cosine min {cosines.min():.6f} mean {cosines.mean():.6f}"
        if stsb is not None:
            scores, first, second = stsb
            pairs = _cosine_rows(vectorizer.transform(first), vectorizer.transform(second))
            line += f"  STS-B test Spearman {common.spearman(pairs, scores):.4f}"
        print(line)
    _release()


def oom_backoff(folder):
    """Take most free GPU memory, then encode a batch that cannot fit in what is left."""
    import torch

    from sklearn_albert import AlbertVectorizer

    print("\n== out-of-memory backoff")
    texts = [" ".join(["long"] * 600) + f" {i}" for i in range(1024)]  # cropped at 512
    reference = AlbertVectorizer(
        str(folder), device="cuda", dtype="float16", batch_size=16, embedding_cache=None
    ).fit(["x"])
    expected = reference.transform(texts[:64])
    del reference
    _release()
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Capture(level=logging.WARNING)
    logging.getLogger("sklearn_albert").addHandler(handler)
    free, total = torch.cuda.mem_get_info()
    leave = 6 * 2**30
    hog = torch.empty(max(free - leave, 0), dtype=torch.uint8, device="cuda")
    print(
        f"  GPU {total / 2**30:.0f} GiB; took {hog.numel() / 2**30:.0f} GiB, left about "
        f"{leave / 2**30:.0f} GiB; encoding 1024 texts x 512 tokens in one batch"
    )
    try:
        vectorizer = AlbertVectorizer(
            str(folder),
            device="cuda",
            dtype="float16",
            batch_size=1024,
            max_tokens_per_batch=1024 * 512,
            embedding_cache=None,
        ).fit(["x"])
        start = time.perf_counter()
        result = vectorizer.transform(texts)
        seconds = time.perf_counter() - start
    finally:
        del hog
        logging.getLogger("sklearn_albert").removeHandler(handler)
        _release()
    splits = [message for message in records if "Out of memory" in message]
    cosines = _cosine_rows(result[:64], expected)
    print(f"  {len(splits)} split(s) logged; first: {splits[0] if splits else 'NONE'}")
    print(f"  finished in {seconds:.1f} s; cosine to a small-batch run: min {cosines.min():.6f}")
    if not splits:
        print("  FAILED: no out-of-memory split happened (more memory left than planned?)")
        return False
    return bool(cosines.min() > 0.999)


def _cosine_rows(left, right):
    left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return np.sum(left * right, axis=1) / np.maximum(norms, 1e-30)


def _release():
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-texts", type=int, default=20000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args(argv)
    torch = require_cuda()
    common.quiet_transformers()
    print(
        f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
    folder = (
        common.albert_base_folder()
        if (common.SHARED / "models" / "albert-base-v2").exists()
        else common.minilm_folder()
    )
    if common.sst2_train_path().exists():
        texts = common.sample_sst2_train(args.n_texts, distinct=True)[0]
    else:
        texts = common.distinct_generated_sentences(args.n_texts)
    speed(folder, texts, args.batch_sizes, args.repeats, args.peak_tflops)
    fidelity(texts[:2000])
    ok = oom_backoff(folder)
    print("\ngpu_check.py:", "OK" if ok else "OOM backoff check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
