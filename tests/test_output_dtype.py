"""``output_dtype``: int8 and uint8 on fitted ranges, packed binary, after the cache."""

import pickle
import re

import numpy as np
import pytest
from _tiny_model import generated_sentences
from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_albert import AlbertVectorizer, cache_info, most_similar, skops_trusted_types
from sklearn_albert._files import embed_file

FIT_TEXTS = generated_sentences(20, seed=61)
NEW_TEXTS = ["a text never seen in fit", "", "another one, rather longer than most of them"]


def float_vectors(vectorizer, texts, **params):
    return clone(vectorizer).set_params(output_dtype="float32", **params).fit([]).transform(texts)


@pytest.mark.parametrize(("output_dtype", "offset"), [("int8", -128), ("uint8", 0)])
def test_integer_codes_spread_the_fitted_ranges_over_256_levels(vectorizer, output_dtype, offset):
    params = {"normalize": True, "truncate_dim": 12}
    fit_vectors = float_vectors(vectorizer, FIT_TEXTS, **params)
    new_vectors = float_vectors(vectorizer, NEW_TEXTS, **params)

    vectorizer.set_params(output_dtype=output_dtype, **params).fit(FIT_TEXTS)
    codes = vectorizer.transform(FIT_TEXTS + NEW_TEXTS)

    low, high = fit_vectors.min(axis=0), fit_vectors.max(axis=0)
    np.testing.assert_array_equal(vectorizer.quantization_ranges_, np.stack([low, high]))
    assert vectorizer.quantization_ranges_.dtype == np.float32
    assert codes.dtype == np.dtype(output_dtype) and codes.shape == (len(codes), 12)
    assert vectorizer.n_features_out_ == 12
    # The fit texts reach both ends of every dimension's range.
    np.testing.assert_array_equal(codes[: len(FIT_TEXTS)].min(axis=0), offset)
    np.testing.assert_array_equal(codes[: len(FIT_TEXTS)].max(axis=0), offset + 255)
    # Codes are the nearest level, clipped for values outside the fitted range.
    levels = np.clip(np.rint((new_vectors - low) / ((high - low) / 255)), 0, 255)
    np.testing.assert_allclose(codes[len(FIT_TEXTS) :].astype(int), levels + offset, atol=1)


def test_a_texts_codes_do_not_depend_on_the_other_texts_of_a_call(vectorizer):
    vectorizer.set_params(output_dtype="int8").fit(FIT_TEXTS)

    alone = [vectorizer.transform([text]) for text in NEW_TEXTS]
    together = vectorizer.transform(NEW_TEXTS)

    np.testing.assert_array_equal(np.concatenate(alone), together)


@pytest.mark.parametrize("output_dtype", ["binary", "ubinary"])
def test_binary_packs_sign_bits_as_sentence_transformers_does(vectorizer, output_dtype):
    st = pytest.importorskip("sentence_transformers")
    quantize_embeddings = getattr(st, "quantize_embeddings", None)
    if quantize_embeddings is None:
        from sentence_transformers.quantization import quantize_embeddings
    vectors = float_vectors(vectorizer, NEW_TEXTS, truncate_dim=20)

    vectorizer.set_params(output_dtype=output_dtype, truncate_dim=20).fit([])
    packed = vectorizer.transform(NEW_TEXTS)

    assert packed.shape == (len(NEW_TEXTS), 3) and vectorizer.n_features_out_ == 3
    assert len(vectorizer.get_feature_names_out()) == 3
    np.testing.assert_array_equal(packed, quantize_embeddings(vectors, precision=output_dtype))
    bits = np.unpackbits(packed.view(np.uint8) ^ (0x80 if output_dtype == "binary" else 0), axis=1)
    np.testing.assert_array_equal(bits[:, :20], vectors > 0)
    assert not bits[:, 20:].any()  # the last byte's spare bits are zero


def test_integer_output_needs_texts_to_fit(vectorizer):
    message = "Got output_dtype='uint8' and no texts to fit: int8 and uint8 output map each"
    with pytest.raises(ValueError, match=re.escape(message)):
        clone(vectorizer).set_params(output_dtype="uint8").fit([])
    with pytest.raises(ValueError, match=re.escape(message)):
        clone(vectorizer).set_params(output_dtype="uint8").fit_transform([])
    with pytest.raises(InvalidParameterError, match="The 'output_dtype' parameter"):
        clone(vectorizer).set_params(output_dtype="float16").fit([])


def test_fit_encodes_its_texts_once_and_fit_transform_in_one_pass(vectorizer):
    texts = FIT_TEXTS + FIT_TEXTS[:5]
    fitted = clone(vectorizer).set_params(output_dtype="int8").fit(texts)
    after_fit = cache_info()["misses"]
    expected = fitted.transform(texts)

    result = clone(fitted).fit_transform(texts)

    assert after_fit == cache_info()["misses"] == len(set(texts))
    np.testing.assert_array_equal(result, expected)
    assert fitted.n_truncated_ == 0 and fitted.input_name_ is None


def test_refitting_as_float32_drops_the_ranges(vectorizer):
    vectorizer.set_params(output_dtype="uint8").fit(FIT_TEXTS)
    vectorizer.set_params(output_dtype="float32").fit(FIT_TEXTS)
    assert not hasattr(vectorizer, "quantization_ranges_")
    assert vectorizer.transform(NEW_TEXTS).dtype == np.float32


def test_a_grid_over_output_dtype_and_truncate_dim_encodes_each_text_once(vectorizer):
    texts = generated_sentences(24, seed=62)
    labels = [i % 2 for i in range(24)]
    pipe = Pipeline([("vect", vectorizer), ("clf", RidgeClassifier())])
    grid = {"vect__output_dtype": ["float32", "int8", "ubinary"], "vect__truncate_dim": [8, None]}

    search = GridSearchCV(pipe, grid, cv=2).fit(texts, labels)

    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict(texts).shape == (len(texts),)
    info = cache_info()
    assert info["misses"] == info["entries"] == len(set(texts))


@pytest.mark.parametrize("output_dtype", ["int8", "binary"])
def test_quantized_output_survives_pickle_save_load_and_skops(vectorizer, tmp_path, output_dtype):
    fitted = vectorizer.set_params(output_dtype=output_dtype, truncate_dim=10).fit(FIT_TEXTS)
    expected = fitted.transform(NEW_TEXTS)
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    sio.dump(fitted, tmp_path / "vect.skops")
    assert set(sio.get_untrusted_types(file=tmp_path / "vect.skops")) <= set(skops_trusted_types())

    restored = [
        pickle.loads(pickle.dumps(fitted)),
        AlbertVectorizer.load(fitted.save(tmp_path / "vect")),
        sio.load(tmp_path / "vect.skops", trusted=skops_trusted_types()),
    ]

    for copy in restored:
        assert copy.settings_ == fitted.settings_
        if output_dtype == "int8":
            np.testing.assert_array_equal(copy.quantization_ranges_, fitted.quantization_ranges_)
            assert copy.quantization_ranges_.dtype == np.float32
        result = copy.transform(NEW_TEXTS)
        assert result.dtype == expected.dtype
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_the_command_lines_file_writer_keeps_the_output_dtype(vectorizer, tmp_path, suffix):
    pytest.importorskip("pyarrow", reason="needs pyarrow (pip install .[test])")
    fitted = vectorizer.set_params(output_dtype="uint8").fit(FIT_TEXTS)
    output = tmp_path / f"out{suffix}"

    embed_file(fitted, NEW_TEXTS, output, chunk_size=2)

    if suffix == ".npy":
        written = np.load(output)
    else:
        import pandas as pd

        written = pd.read_parquet(output).to_numpy()
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, fitted.transform(NEW_TEXTS))


def test_cosine_search_refuses_quantized_vectors(vectorizer):
    message = "Got a vectorizer with output_dtype='ubinary': cosine similarity needs float"
    with pytest.raises(ValueError, match=re.escape(message)):
        most_similar(["a query"], NEW_TEXTS, vectorizer.set_params(output_dtype="ubinary"))
