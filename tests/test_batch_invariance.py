"""The same text, the same vector: a text's features do not depend on its batch.

For every compute precision this CPU runs, a corpus's features equal, bit for bit
(``np.array_equal``), those of the same texts one at a time, shuffled, mixed into a larger
corpus, batched by 1, 7 or 32, under a tiny token budget, as chunked long texts, through
the embedding cache, and through the command line at two chunk sizes. The model is a tiny
ALBERT with 160 positions, so that texts run through the same CPU kernels as ALBERT-base
(packed Linear layers, fused projections, matmul attention) at lengths on both sides of
16-key blocks, float32's 64-key blocks and the old 96-token SDPA threshold.
"""

import random

import numpy as np
import pytest
from _tiny_model import WORDS, build_tiny_albert, generated_sentences
from conftest import minilm_path
from sklearn.base import clone

from sklearn_albert import AlbertVectorizer, _cli, clear_cache
from sklearn_albert._devices import cpu_supports_bfloat16


def _long_sentences(n, seed, words=(60, 150)):
    """Texts of 60 to 150 words (by default): 70 to 170 tokens on the tiny tokenizer."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) for _ in range(n)]


CORPUS = generated_sentences(14, seed=5) + _long_sentences(3, seed=5) + ["", "bad"]
OTHERS = generated_sentences(12, seed=6) + _long_sentences(2, seed=6)


def _dtypes():
    bfloat16 = pytest.mark.skipif(
        not cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 (AVX512-BF16/AMX)"
    )
    return ["float32", pytest.param("bfloat16", marks=bfloat16), "float16", "int8"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-albert-160"
    return build_tiny_albert(folder, max_position_embeddings=160)


@pytest.fixture(scope="module", params=_dtypes())
def fitted(request, model_path):
    """A vectorizer at one precision, without an embedding cache, and its corpus features."""
    if request.param == "int8":
        pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
        pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")
    vectorizer = AlbertVectorizer(
        str(model_path), dtype=request.param, device="cpu", embedding_cache=None
    )
    vectorizer.fit(CORPUS + OTHERS)
    return vectorizer, vectorizer.transform(CORPUS)


def _with(vectorizer, batch_size=32, max_tokens="auto"):
    """The fitted ``vectorizer`` with these batch budgets (they apply without a new fit)."""
    return vectorizer.set_params(batch_size=batch_size, max_tokens_per_batch=max_tokens)


def _refit(vectorizer, **params):
    """A clone with ``params``, fitted on the same texts (int8 keeps its calibration)."""
    return clone(vectorizer).set_params(**params).fit(CORPUS + OTHERS)


def test_one_text_at_a_time(fitted):
    vectorizer, expected = fitted
    alone = np.concatenate([_with(vectorizer).transform([text]) for text in CORPUS])
    assert np.array_equal(alone, expected)


def test_shuffled_and_mixed_into_a_larger_corpus(fitted):
    vectorizer, expected = fitted
    order = np.random.default_rng(0).permutation(len(CORPUS))
    shuffled = _with(vectorizer).transform([CORPUS[i] for i in order])
    mixed = _with(vectorizer).transform(OTHERS[:7] + CORPUS + OTHERS[7:])

    assert np.array_equal(shuffled, expected[order])
    assert np.array_equal(mixed[7 : 7 + len(CORPUS)], expected)


def test_long_texts_alone_and_among_other_long_texts(fitted):
    # Texts past the matmul threshold (96 tokens) run through SDPA each at its own width.
    vectorizer, _ = fitted
    long_texts = _long_sentences(4, seed=7)
    together = _with(vectorizer).transform(long_texts)
    alone = np.concatenate([_with(vectorizer).transform([text]) for text in long_texts])
    reversed_with_short = _with(vectorizer).transform(OTHERS[:3] + long_texts[::-1])[3:]

    assert np.array_equal(alone, together)
    assert np.array_equal(reversed_with_short, together[::-1])


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(1, "auto"), (7, "auto"), (32, 48)])
def test_batch_size_and_token_budget(fitted, batch_size, max_tokens):
    vectorizer, expected = fitted
    batched = _with(vectorizer, batch_size=batch_size, max_tokens=max_tokens)
    assert np.array_equal(batched.transform(CORPUS), expected)


def test_chunked_long_texts(fitted):
    # Texts past the model's 160 positions, cut into windows. The fit texts and max_length
    # are the fixture's, so int8 reuses its calibration instead of calibrating again.
    vectorizer, _ = fitted
    chunking = _refit(vectorizer, long_text="chunk", stride=24)
    texts = CORPUS[:6] + _long_sentences(3, seed=9, words=(200, 320))
    expected = chunking.transform(texts)
    alone = np.concatenate([chunking.transform([text]) for text in texts])
    by_seven = _with(chunking, batch_size=7).transform(OTHERS + texts)[len(OTHERS) :]

    assert np.array_equal(alone, expected)
    assert np.array_equal(by_seven, expected)


def test_cached_features_equal_fresh_ones(fitted):
    # Texts cached from another call, batched differently, give what a fresh call gives.
    vectorizer, _ = fitted
    cached = _refit(vectorizer, embedding_cache="memory")
    clear_cache(models=False)
    fresh = cached.transform(CORPUS)
    clear_cache(models=False)
    cached.transform(OTHERS[:5] + CORPUS[::3])
    partly_cached = cached.transform(CORPUS)
    clear_cache(models=False)
    assert np.array_equal(partly_cached, fresh)


def test_command_line_chunk_sizes(model_path, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(text or "." for text in CORPUS) + "\n", encoding="utf-8")
    options = ["--model", str(model_path), "--device", "cpu", "--offline", "-q"]
    outputs = []
    for chunk_size in (5, 1000):
        output = tmp_path / f"chunks-{chunk_size}.npy"
        argv = ["embed", texts, "-o", output, "--chunk-size", chunk_size, *options]
        assert _cli.main([str(arg) for arg in argv]) == 0, capsys.readouterr().err
        outputs.append(np.load(output))
    assert np.array_equal(outputs[0], outputs[1])


def test_dask_partitions(fitted):
    pd = pytest.importorskip("pandas", reason="needs pandas (pip install .[test])")
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe] (pip install .[test])")
    vectorizer, expected = fitted
    series = dd.from_pandas(pd.Series(CORPUS), npartitions=3)
    features = _with(vectorizer).transform(series).compute(scheduler="threads")
    assert np.array_equal(np.asarray(features), expected)


# The tiny model's small matrices do not reach the kernels a real checkpoint runs through:
# on CPUs with AMX, oneDNN's bfloat16 kernels for ALBERT-base's shapes block their sums by
# the matrix height, and a sentence alone got other features than in a batch (up to 0.016
# apart) until packed Linear layers ran in calls of fixed height (``rows_per_call``).
REAL_SENTENCES = [
    "the film is a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "it 's slow -- very , very slow .",
    "a sometimes tedious film .",
    "the acting , costumes , music , cinematography and sound are all astounding given the "
    "production 's austere locales .",
    "if you sometimes like to go to the movies to have fun , wasabi is a good place to start .",
    "an often-deadly boring , strange reading of a classic whose witty dialogue is treated "
    "with a baffling casual approach",
    "we root for ( clara and paul ) , even like them , though perhaps it 's an emotion closer "
    "to pity .",
    "it 's a lovely film with lovely performances by buy and accorsi .",
    "no one goes unindicted here , which is probably for the best .",
    "a gorgeous , witty , seductive movie .",
    "ultimately , it ponders the reasons we need stories so much .",
]


@pytest.fixture(scope="module", params=["albert-base", "minilm"])
def real_model(request):
    if request.param == "minilm":
        return minilm_path()
    return request.getfixturevalue("albert_base_path")


@pytest.mark.parametrize("dtype", ["auto", "float32", "int8"])
def test_real_checkpoints_alone_in_a_batch_and_shuffled(real_model, dtype):
    if dtype == "int8":
        pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
        pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")
    vectorizer = AlbertVectorizer(str(real_model), dtype=dtype, embedding_cache=None)
    together = vectorizer.fit(REAL_SENTENCES).transform(REAL_SENTENCES)
    alone = np.concatenate([vectorizer.transform([text]) for text in REAL_SENTENCES])
    order = np.random.default_rng(1).permutation(len(REAL_SENTENCES))
    shuffled = vectorizer.transform([REAL_SENTENCES[i] for i in order])
    split = np.concatenate(
        [vectorizer.transform(REAL_SENTENCES[:5]), vectorizer.transform(REAL_SENTENCES[5:])]
    )

    assert np.array_equal(alone, together)
    assert np.array_equal(shuffled, together[order])
    assert np.array_equal(split, together)
