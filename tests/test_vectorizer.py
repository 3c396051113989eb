import pickle
import re
import shutil

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from _tiny_model import generated_sentences, mean_pooling_sentence_transformer
from conftest import best_candidate, texts_labelled_by_their_last_word
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from transformers import AutoModel, AutoTokenizer

from sklearn_albert import AlbertVectorizer, cache_info
from sklearn_albert._validation import STRING_INPUT_ERROR

TEXTS = ["the good film", "a bad movie", "", "i love this very moving story and its music", "dull"]


def test_init_stores_parameters_and_loads_nothing():
    vectorizer = AlbertVectorizer("no/such/model", pooling="max", batch_size=3)
    assert vectorizer.get_params()["model_name_or_path"] == "no/such/model"
    assert not any(name.endswith("_") for name in vars(vectorizer))


def test_transform_returns_float32_rows_in_input_order(vectorizer):
    features = vectorizer.fit_transform(TEXTS)
    assert features.shape == (len(TEXTS), vectorizer.n_features_out_)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    single = vectorizer.transform([TEXTS[3]])
    np.testing.assert_allclose(features[3], single[0], atol=1e-5)


def test_fitted_attributes_describe_the_model(vectorizer, tiny_albert_path):
    vectorizer.fit(TEXTS)
    config = AutoModel.from_pretrained(tiny_albert_path).config
    assert vectorizer.device_ == "cpu"
    assert vectorizer.dtype_ == "float32"
    assert vectorizer.max_length_ == config.max_position_embeddings
    assert vectorizer.n_hidden_states_ == config.num_hidden_layers + 1
    assert vectorizer.hidden_size_ == config.hidden_size
    assert vectorizer.n_features_out_ == config.hidden_size


def test_an_embedding_does_not_depend_on_its_batch(vectorizer):
    texts = generated_sentences(80, seed=1)
    one_by_one = (
        vectorizer.set_params(batch_size=1, embedding_cache=None).fit(texts).transform(texts)
    )
    batched = vectorizer.set_params(batch_size=64).transform(texts)
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = vectorizer.transform([texts[i] for i in order])
    assert np.abs(one_by_one - batched).max() <= 1e-4
    assert np.abs(batched[order] - shuffled).max() <= 1e-4


def _reference_outputs(path, texts):
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**encoded, output_hidden_states=True)
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    return output, mask


@pytest.mark.parametrize("layers", [-1, 0, 2, (1, 2, 3)])
def test_pooling_matches_transformers_outputs(vectorizer, tiny_albert_path, layers):
    output, mask = _reference_outputs(tiny_albert_path, TEXTS)
    selected = [output.hidden_states[layer] for layer in np.atleast_1d(layers)]
    expected = {
        "cls": np.mean([h[:, 0].numpy() for h in selected], axis=0),
        "mean": np.mean([((h * mask).sum(1) / mask.sum(1)).numpy() for h in selected], axis=0),
        "max": np.mean([h.masked_fill(mask == 0, -1e9).amax(1).numpy() for h in selected], axis=0),
        "pooler": output.pooler_output.numpy(),
    }
    for pooling, reference in expected.items():
        features = vectorizer.set_params(pooling=pooling, layers=layers).fit(TEXTS).transform(TEXTS)
        np.testing.assert_allclose(features, reference, atol=1e-5, err_msg=pooling)


def test_concat_layer_aggregation_stacks_layers(vectorizer, tiny_albert_path):
    output, _ = _reference_outputs(tiny_albert_path, TEXTS)
    features = vectorizer.set_params(pooling="cls", layers=(0, -1), layer_aggregation="concat")
    features = features.fit(TEXTS).transform(TEXTS)
    expected = np.hstack([output.hidden_states[0][:, 0], output.hidden_states[-1][:, 0]])
    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert vectorizer.n_features_out_ == 2 * vectorizer.hidden_size_


def test_mean_pooling_equals_sentence_transformers(vectorizer, tiny_albert_path):
    pytest.importorskip("sentence_transformers")
    texts = generated_sentences(40, seed=3) + TEXTS
    reference = mean_pooling_sentence_transformer(tiny_albert_path)
    expected = reference.encode(texts, batch_size=8)
    features = vectorizer.fit(texts).transform(texts)
    cosine = (
        (features * expected).sum(1)
        / np.linalg.norm(features, axis=1)
        / np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() >= 0.99999


def test_normalize_gives_unit_rows(vectorizer):
    features = vectorizer.set_params(normalize=True, pooling=["mean", "max"]).fit_transform(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_empty_text_gets_a_finite_vector_and_empty_input_an_empty_matrix(vectorizer):
    vectorizer.fit(TEXTS)
    assert np.isfinite(vectorizer.transform([""])).all()
    assert vectorizer.transform([]).shape == (0, vectorizer.n_features_out_)


@pytest.mark.parametrize("method", ["fit", "fit_transform", "transform"])
def test_a_bare_string_raises_scikit_learns_sentence(vectorizer, method):
    if method == "transform":
        vectorizer.fit(TEXTS)
    with pytest.raises(ValueError, match=re.escape(STRING_INPUT_ERROR)):
        getattr(vectorizer, method)("a single text")


def test_non_str_rows_are_named(vectorizer):
    vectorizer.fit(TEXTS)
    with pytest.raises(ValueError, match="row 1 is None of type NoneType"):
        vectorizer.transform(["fine", None])


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"batch_size": -10},
            "The 'batch_size' parameter of AlbertVectorizer must be an int in the range "
            "[1, inf). Got -10 instead.",
        ),
        ({"pooling": "median"}, "The 'pooling' parameter of AlbertVectorizer must be"),
        (
            {"pooling": ["mean", "median"]},
            "The 'pooling' parameter of AlbertVectorizer must be one of",
        ),
        (
            {"layers": 9},
            "The 'layers' parameter of AlbertVectorizer must be an int or a non-empty "
            "tuple of ints in [-4, 3]",
        ),
        ({"layers": ()}, "The 'layers' parameter"),
        ({"max_length": 1000}, "Got max_length=1000 but the checkpoint accepts at most 64 tokens."),
        ({"device": "gpu0"}, "Got device='gpu0', which torch does not understand."),
        ({"dtype": "float64"}, "The 'dtype' parameter of AlbertVectorizer must be a str among"),
    ],
)
def test_invalid_parameters_are_named_at_fit(vectorizer, params, message):
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        vectorizer.set_params(**params).fit(TEXTS)


def test_transform_before_fit_raises_not_fitted(vectorizer):
    with pytest.raises(NotFittedError):
        vectorizer.transform(TEXTS)


def test_clone_of_a_fitted_vectorizer_is_unfitted_and_equal(vectorizer):
    fitted = vectorizer.fit(TEXTS)
    copy = clone(fitted)
    with pytest.raises(NotFittedError):
        copy.transform(TEXTS)
    np.testing.assert_array_equal(copy.fit(TEXTS).transform(TEXTS), fitted.transform(TEXTS))


def test_a_missing_model_names_what_was_tried_and_how_to_work_offline(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        OSError,
        match=(
            r"(?s)Could not load model_name_or_path=.*nowhere"
            r".*no folder exists there.*To work offline"
        ),
    ):
        AlbertVectorizer(str(missing), local_files_only=True).fit(TEXTS)


def test_feature_names_and_pandas_output(vectorizer):
    vectorizer.set_output(transform="pandas").fit(TEXTS)
    frame = vectorizer.transform(pd.Series(TEXTS, index=list("abcde")))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:2]) == ["albertvectorizer0", "albertvectorizer1"]
    assert frame.shape == (5, vectorizer.n_features_out_)
    assert len(vectorizer.get_feature_names_out()) == vectorizer.n_features_out_


def test_accepts_a_one_column_frame(vectorizer):
    vectorizer.fit(TEXTS)
    frame = pd.DataFrame({"text": TEXTS})
    np.testing.assert_array_equal(vectorizer.transform(frame), vectorizer.transform(TEXTS))


def test_long_texts_are_truncated_with_a_warning(vectorizer):
    long_text = " ".join(["moving"] * 200)
    vectorizer.fit(TEXTS)  # the model's limit, 64: a max_length set on purpose does not warn
    with pytest.warns(UserWarning, match=r"1 of 2 distinct texts are longer than max_length_=64"):
        vectorizer.transform([long_text, "short"])
    assert vectorizer.find_truncated([long_text, "short"]).tolist() == [True, False]
    assert vectorizer.count_tokens(["short"])[0] <= 64 < vectorizer.count_tokens([long_text])[0]


def test_fit_counts_the_truncated_training_texts(vectorizer):
    long_text = " ".join(["moving"] * 200)
    assert vectorizer.set_params(max_length=16).fit([long_text, "short"]).n_truncated_ == 1
    assert vectorizer.fit_transform([long_text, "short", long_text]).shape[0] == 3
    assert vectorizer.n_truncated_ == 1  # distinct texts
    assert vectorizer.set_params(long_text="chunk", stride=2).fit([long_text]).n_truncated_ == 0


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_fit_and_fit_transform_count_each_distinct_truncated_text_once(vectorizer):
    long_text = " ".join(["moving"] * 200)
    texts = [long_text, long_text, long_text, "short"]
    vectorizer.set_params(max_length=16)
    assert vectorizer.fit(texts).n_truncated_ == 1
    assert vectorizer.fit_transform(texts).shape[0] == 4
    assert vectorizer.n_truncated_ == 1
    assert vectorizer.find_truncated(texts).tolist() == [True, True, True, False]


# ---------------------------------------------------------------- composition


def _labelled(n=60):
    texts = generated_sentences(n, seed=5)
    labels = np.array([("good" in t) or ("great" in t) for t in texts], dtype=int)
    labels[:2] = [0, 1]
    return texts, labels


def test_works_in_a_pipeline_with_cross_validation(vectorizer):
    texts, labels = texts_labelled_by_their_last_word(40)  # not all one class: scores vary
    labels = np.array(labels)
    pipe = Pipeline([("vect", vectorizer), ("clf", LogisticRegression(max_iter=500))])
    scores = cross_val_score(pipe, texts, labels, cv=3)
    # Each fold by hand: the vectorizer fitted and the classifier trained on the other folds.
    by_hand = []
    for train, test in StratifiedKFold(3).split(texts, labels):
        vect = clone(vectorizer).fit([texts[i] for i in train])
        clf = LogisticRegression(max_iter=500)
        clf.fit(vect.transform([texts[i] for i in train]), labels[train])
        by_hand.append(clf.score(vect.transform([texts[i] for i in test]), labels[test]))
    np.testing.assert_array_equal(scores, by_hand)
    assert scores.mean() > 0.6  # the last word is read (0.5 by chance)


def test_grid_search_over_vectorizer_options_encodes_each_text_once(vectorizer):
    texts, labels = _labelled()
    pipe = Pipeline([("vect", vectorizer), ("clf", LogisticRegression(max_iter=500))])
    grid = {
        "vect__pooling": ["cls", "mean", "max", ["mean", "max"]],
        "vect__layers": [-1, (-1, -2)],
        "vect__normalize": [False, True],
        "clf__C": [0.1, 1.0],
    }
    search = GridSearchCV(pipe, grid, cv=3).fit(texts, labels)
    assert search.best_params_["vect__pooling"] in grid["vect__pooling"]
    assert cache_info()["misses"] == len(set(texts))


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_grid_search_over_max_length(vectorizer):
    texts, labels = texts_labelled_by_their_last_word(40)
    pipe = Pipeline([("vect", vectorizer), ("clf", LogisticRegression(max_iter=500))])
    grid = {"vect__max_length": [8, None]}
    search = GridSearchCV(pipe, grid, cv=3).fit(texts, labels)
    # Each candidate scored on its own, without a cache its encodings could come from.
    uncached = clone(pipe).set_params(vect__embedding_cache=None)
    best_params, best_score = best_candidate(uncached, grid, texts, labels, cv=3)
    assert search.best_params_ == best_params
    assert search.best_score_ == pytest.approx(best_score, abs=1e-12)


# ---------------------------------------------------------------- caching


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_cache_survives_clone_and_shuffling_and_misses_on_changed_settings(vectorizer):
    texts = generated_sentences(30, seed=7)
    vectorizer.fit(texts).transform(texts)
    assert cache_info()["misses"] == len(set(texts))
    clone(vectorizer).set_params(pooling="max").fit(texts).transform(texts[::-1])
    assert cache_info()["misses"] == len(set(texts))
    clone(vectorizer).set_params(max_length=8).fit(texts).transform(texts)
    assert cache_info()["misses"] == 2 * len(set(texts))


def test_duplicate_texts_are_encoded_once(vectorizer):
    texts = ["same text"] * 10 + ["other"] * 5
    features = vectorizer.fit(texts).transform(texts)
    assert cache_info()["misses"] == 2
    np.testing.assert_array_equal(features[0], features[9])


def test_cached_and_uncached_results_are_identical(vectorizer):
    texts = generated_sentences(20, seed=8)
    uncached = clone(vectorizer).set_params(embedding_cache=None).fit(texts).transform(texts)
    vectorizer.fit(texts).transform(texts)
    cached = vectorizer.transform(texts)
    np.testing.assert_array_equal(cached, uncached)


def test_disk_cache_is_shared_and_exact(vectorizer, tmp_path):
    from sklearn_albert import clear_cache

    texts = generated_sentences(10, seed=9)
    vectorizer.set_params(embedding_cache=str(tmp_path)).fit(texts)
    first = vectorizer.transform(texts)
    clear_cache(models=False)  # the in-memory cache; the folder is kept
    second = vectorizer.transform(texts)
    info = cache_info(tmp_path)
    assert (info["misses"], info["hits"]) == (len(set(texts)), len(set(texts)))
    assert info["entries"] == info["writes"] == len(set(texts))
    assert cache_info()["entries"] == 0  # a folder cache does not fill memory
    np.testing.assert_array_equal(first, second)
    assert (tmp_path / "sklearn_albert_cache").is_dir()


# ---------------------------------------------------------------- persistence


def test_default_pickle_leaves_weights_out_and_reloads_lazily(vectorizer):
    vectorizer.fit(TEXTS)
    expected = vectorizer.transform(TEXTS)
    payload = pickle.dumps(vectorizer)
    assert len(payload) < 2_000_000
    restored = pickle.loads(payload)
    assert type(restored) is AlbertVectorizer
    assert restored.get_params() == vectorizer.get_params()
    np.testing.assert_allclose(restored.transform(TEXTS), expected, atol=1e-6)


def test_pickle_with_weights_works_after_the_model_folder_is_gone(tmp_path, tiny_albert_path):
    from sklearn_albert import clear_cache

    folder = shutil.copytree(tiny_albert_path, tmp_path / "model")
    vectorizer = AlbertVectorizer(str(folder), dtype="float32", store_weights_in_pickle=True).fit(
        TEXTS
    )
    expected = vectorizer.transform(TEXTS)
    joblib.dump(vectorizer, tmp_path / "vect.joblib")
    shutil.rmtree(folder)
    clear_cache()
    restored = joblib.load(tmp_path / "vect.joblib")
    np.testing.assert_allclose(restored.transform(TEXTS), expected, atol=1e-6)
    assert restored.store_weights_in_pickle


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_reduced_precision_stays_close_to_float32(vectorizer, dtype):
    texts = generated_sentences(30, seed=11)
    exact = vectorizer.fit(texts).transform(texts)
    fast = clone(vectorizer).set_params(dtype=dtype).fit(texts).transform(texts)
    assert fast.dtype == np.float32
    cosine = (exact * fast).sum(1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(fast, axis=1)
    assert cosine.min() > 0.99
    assert not np.array_equal(exact, fast)


def test_auto_dtype_follows_the_hardware(vectorizer):
    from sklearn_albert._devices import cpu_supports_bfloat16

    vectorizer.set_params(dtype="auto").fit(TEXTS)
    assert vectorizer.dtype_ == ("bfloat16" if cpu_supports_bfloat16() else "float32")


# ---------------------------------------------------------------- one pass, names


def test_fit_transform_reads_a_generator_once(vectorizer):
    expected = clone(vectorizer).fit(TEXTS).transform(TEXTS)
    features = vectorizer.fit_transform(text for text in TEXTS)
    np.testing.assert_array_equal(features, expected)


def test_feature_names_carry_the_text_columns_name(vectorizer):
    series = pd.Series(TEXTS, name="review")
    for column in (series, series.to_frame()):
        names = clone(vectorizer).fit(column).get_feature_names_out()
        assert names[:2].tolist() == ["review_0", "review_1"]
    unnamed = clone(vectorizer).fit(TEXTS).get_feature_names_out()
    assert unnamed[:2].tolist() == ["albertvectorizer0", "albertvectorizer1"]
    frame = clone(vectorizer).set_output(transform="pandas").fit(series).transform(series)
    assert frame.columns[0] == "review_0"


def test_two_text_columns_keep_distinct_feature_names(vectorizer):
    from sklearn.compose import ColumnTransformer

    table = pd.DataFrame({"review": TEXTS, "title": TEXTS[::-1]})
    columns = ColumnTransformer(
        [("review", clone(vectorizer), "review"), ("title", clone(vectorizer), "title")],
        verbose_feature_names_out=False,
    )
    names = columns.fit(table).get_feature_names_out()
    assert names[0] == "review_0" and names[vectorizer.fit(TEXTS).n_features_out_] == "title_0"
    assert len(set(names)) == len(names)
