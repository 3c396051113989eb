import gc
import pickle
import random
import re
import shutil
from dataclasses import replace

import joblib
import numpy as np
import pytest
import torch
from conftest import pretend_fitted_on
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from transformers import AutoTokenizer

from sklearn_albert import AlbertClassifier, AlbertVectorizer
from sklearn_albert._validation import STRING_INPUT_ERROR

POSITIVE = "good great superb lovely brilliant charming".split()
NEGATIVE = "bad awful dull boring weak tedious".split()
NEUTRAL = "the a film movie story plot scene music script is was this".split()


def sentiment_texts(n, seed):
    """Half positive, half negative: neutral words around one sentiment word."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        words = POSITIVE if i % 2 == 0 else NEGATIVE
        sentence = [rng.choice(NEUTRAL) for _ in range(rng.randint(1, 4))]
        sentence.insert(rng.randint(0, len(sentence)), rng.choice(words))
        texts.append(" ".join(sentence))
        labels.append("pos" if i % 2 == 0 else "neg")
    return texts, np.array(labels)


TEXTS, LABELS = sentiment_texts(96, seed=0)
TEST_TEXTS, TEST_LABELS = sentiment_texts(40, seed=1)
# The tiny ALBERT has random weights: a high learning rate and several epochs make it learn.
FAST = dict(epochs=8, batch_size=8, learning_rate=3e-3, warmup=0.0, dtype="float32", random_state=0)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The tiny model's matrices are too small to share out; on a shared 2-core machine
    OpenMP threads spinning against each other make these tests several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def classifier(tiny_albert_path):
    return AlbertClassifier(str(tiny_albert_path), **FAST)


@pytest.fixture(scope="module")
def fitted(tiny_albert_path):
    """One classifier fitted on the toy task, shared by tests that only read it."""
    return AlbertClassifier(str(tiny_albert_path), **FAST).fit(TEXTS, LABELS)


def test_init_stores_parameters_and_loads_nothing():
    classifier = AlbertClassifier("no/such/model", epochs=7, class_weight="balanced")
    assert classifier.get_params()["model_name_or_path"] == "no/such/model"
    assert classifier.get_params()["epochs"] == 7
    assert not any(name.endswith("_") for name in vars(classifier))


def test_learns_a_separable_toy_task(fitted):
    assert fitted.score(TEXTS, LABELS) == 1.0
    assert fitted.score(TEST_TEXTS, TEST_LABELS) >= 0.85
    assert fitted.history_[-1]["train_loss"] < fitted.history_[0]["train_loss"]


def test_fit_is_reproducible_with_a_random_state(classifier):
    classifier.set_params(epochs=2)
    first = clone(classifier).fit(TEXTS, LABELS)
    second = clone(classifier).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(first.predict_proba(TEST_TEXTS), second.predict_proba(TEST_TEXTS))
    np.testing.assert_array_equal(first.predict(TEST_TEXTS), second.predict(TEST_TEXTS))
    assert [h["train_loss"] for h in first.history_] == [h["train_loss"] for h in second.history_]
    other = clone(classifier).set_params(random_state=1).fit(TEXTS, LABELS)
    assert not np.array_equal(first.predict_proba(TEST_TEXTS), other.predict_proba(TEST_TEXTS))


def test_string_labels_come_back_as_given(fitted):
    assert fitted.classes_.tolist() == ["neg", "pos"]
    predictions = fitted.predict(TEST_TEXTS)
    assert predictions.dtype == LABELS.dtype
    assert set(predictions) <= {"neg", "pos"}


def test_integer_labels_and_pandas_series(classifier):
    pd = pytest.importorskip("pandas")
    y = pd.Series(np.where(LABELS == "pos", 7, -3))
    classifier.set_params(epochs=1).fit(pd.Series(TEXTS), y)
    assert classifier.classes_.tolist() == [-3, 7]
    assert classifier.predict(TEST_TEXTS).dtype.kind == "i"
    assert set(classifier.predict(TEST_TEXTS)) <= {-3, 7}


def test_multiclass_probabilities_and_scores(classifier):
    topics = {"good": "praise", "awful": "blame", "music": "sound"}
    texts = [f"{word} {filler}" for word in topics for filler in NEUTRAL]
    labels = [topics[text.split()[0]] for text in texts]
    classifier.set_params(epochs=8).fit(texts, labels)
    assert classifier.classes_.tolist() == ["blame", "praise", "sound"]
    proba = classifier.predict_proba(texts)
    assert proba.shape == (len(texts), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert classifier.decision_function(texts).shape == (len(texts), 3)
    np.testing.assert_allclose(np.exp(classifier.predict_log_proba(texts)), proba, rtol=1e-6)
    assert classifier.score(texts, labels) >= 0.9


def test_binary_decision_function_is_the_log_odds_of_the_second_class(fitted):
    scores = fitted.decision_function(TEST_TEXTS)
    proba = fitted.predict_proba(TEST_TEXTS)
    assert scores.shape == (len(TEST_TEXTS),)
    np.testing.assert_allclose(scores, np.log(proba[:, 1] / proba[:, 0]), atol=1e-4)
    np.testing.assert_array_equal(
        fitted.predict(TEST_TEXTS), fitted.classes_[(scores > 0).astype(int)]
    )


def test_fitted_attributes_describe_the_run(fitted, tiny_albert_path):
    assert fitted.n_iter_ == len(fitted.history_) == FAST["epochs"]
    assert fitted.best_epoch_ is None
    assert fitted.device_ == "cpu"
    assert fitted.dtype_ == "float32"
    assert fitted.max_length_ == 64  # the tiny model's limit caps the default 128
    assert fitted.hidden_size_ == 32
    assert fitted.n_truncated_ == 0
    assert fitted.model_fingerprint_.startswith("fp2-")


def test_history_records_every_epoch(classifier):
    classifier.set_params(epochs=3, validation_fraction=0.25).fit(TEXTS, LABELS)
    history = classifier.history_
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for record in history:
        assert set(record) == {
            "epoch",
            "train_loss",
            "validation_loss",
            "validation_score",
            "learning_rate",
            "seconds",
        }
        assert record["train_loss"] > 0 and np.isfinite(record["train_loss"])
        assert 0.0 <= record["validation_score"] <= 1.0
        assert record["seconds"] > 0
    assert history[-1]["learning_rate"] == 0.0  # linear decay ends at zero
    assert classifier.best_epoch_ is None  # validation without early stopping keeps the last epoch


def test_history_has_no_validation_without_a_held_out_set(fitted):
    assert all(
        h["validation_score"] is None and h["validation_loss"] is None for h in fitted.history_
    )


def test_warmup_raises_the_learning_rate_first(classifier):
    classifier.set_params(epochs=4, warmup=0.5, learning_rate=1e-3).fit(TEXTS, LABELS)
    rates = [h["learning_rate"] for h in classifier.history_]
    assert rates[0] < rates[1] and rates[1] >= rates[2] > rates[3]
    assert max(rates) <= 1e-3


def test_early_stopping_stops_and_keeps_the_best_epoch(classifier):
    classifier.set_params(epochs=30, early_stopping=True, n_iter_no_change=2).fit(TEXTS, LABELS)
    assert classifier.n_iter_ < 30
    scores = [h["validation_score"] for h in classifier.history_]
    assert classifier.best_epoch_ == int(np.argmax(scores)) + 1
    assert classifier.n_iter_ == classifier.best_epoch_ + 2
    assert len(classifier.history_) == classifier.n_iter_


def test_class_weight_changes_the_fit(classifier):
    plain = clone(classifier).set_params(epochs=1).fit(TEXTS, LABELS)
    weighted = clone(classifier).set_params(epochs=1, class_weight={"pos": 5.0, "neg": 1.0})
    weighted.fit(TEXTS, LABELS)
    assert (
        weighted.predict_proba(TEST_TEXTS)[:, 1] > plain.predict_proba(TEST_TEXTS)[:, 1]
    ).mean() > 0.5
    balanced = clone(classifier).set_params(epochs=1, class_weight="balanced").fit(TEXTS, LABELS)
    np.testing.assert_allclose(balanced.predict_proba(TEST_TEXTS), plain.predict_proba(TEST_TEXTS))


def test_bfloat16_autocast_trains_and_predicts_finite_values(classifier):
    classifier.set_params(epochs=1, dtype="bfloat16").fit(TEXTS, LABELS)
    assert classifier.dtype_ == "bfloat16"
    assert np.isfinite(classifier.predict_proba(TEST_TEXTS)).all()


def test_verbose_shows_a_progress_bar_per_epoch(classifier, capsys):
    classifier.set_params(epochs=2, verbose=True).fit(TEXTS, LABELS)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err


def test_long_training_texts_are_truncated_with_a_warning(classifier):
    texts = TEXTS[:-1] + [" ".join(["good"] * 80)]
    # max_length=None: the model's limit (64); a limit set on purpose does not warn.
    with pytest.warns(UserWarning, match=r"1 of 96 training texts are longer than max_length=64"):
        classifier.set_params(epochs=1).fit(texts, LABELS)
    assert classifier.n_truncated_ == 1
    assert classifier.predict(texts).shape == (96,)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"epochs": 0},
            "The 'epochs' parameter of AlbertClassifier must be an int in the range [1, inf)",
        ),
        (
            {"learning_rate": -1.0},
            "The 'learning_rate' parameter of AlbertClassifier must be a float in the range "
            "(0.0, inf). Got -1.0 instead.",
        ),
        (
            {"warmup": 1.0},
            "The 'warmup' parameter of AlbertClassifier must be a float in the range "
            "[0.0, 1.0). Got 1.0 instead.",
        ),
        ({"pooling": "max"}, "The 'pooling' parameter of AlbertClassifier must be a str among"),
        ({"class_weight": "auto"}, "The 'class_weight' parameter of AlbertClassifier must be"),
        ({"dtype": "int8"}, "The 'dtype' parameter of AlbertClassifier must be a str among"),
        ({"device": "quantum"}, "Got device='quantum', which torch does not understand."),
    ],
)
def test_invalid_parameters_are_named_at_fit(classifier, params, message):
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        classifier.set_params(**params).fit(TEXTS, LABELS)


def test_unavailable_cuda_is_named(classifier, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        InvalidParameterError, match=re.escape("Got device='cuda' but CUDA is not available")
    ):
        classifier.set_params(device="cuda").fit(TEXTS, LABELS)


@pytest.mark.parametrize(
    "X, y, message",
    [
        ("a single string", ["pos"], STRING_INPUT_ERROR),
        (
            TEXTS,
            ["pos"] * len(TEXTS),
            "AlbertClassifier needs samples of at least 2 classes in y; got 1 class: ['pos'].",
        ),
        (TEXTS[:-1] + [None], LABELS, "X must contain only str documents, but row 95 is None"),
        (
            TEXTS,
            LABELS[:-1],
            "Found input variables with inconsistent numbers of samples: [96, 95]",
        ),
    ],
)
def test_bad_training_data_is_named(classifier, X, y, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        classifier.fit(X, y)


def test_class_weight_for_unknown_labels_is_named(classifier):
    message = "Got class_weight={'positive': 2.0}, which does not fit the labels ['neg', 'pos']"
    with pytest.raises(ValueError, match=re.escape(message)):
        classifier.set_params(class_weight={"positive": 2.0}).fit(TEXTS, LABELS)


def test_a_validation_fraction_that_leaves_nothing_is_named(classifier):
    with pytest.raises(
        ValueError, match=re.escape("Got validation_fraction=0.995 with 96 training texts")
    ):
        classifier.set_params(validation_fraction=0.995).fit(TEXTS, LABELS)


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "decision_function", "to_vectorizer"]
)
def test_methods_before_fit_raise_not_fitted(classifier, method):
    with pytest.raises(NotFittedError):
        getattr(classifier, method)(*([] if method == "to_vectorizer" else [TEXTS]))


def test_a_bare_string_to_predict_raises_scikit_learns_sentence(fitted):
    with pytest.raises(ValueError, match=re.escape(STRING_INPUT_ERROR)):
        fitted.predict("a single string")


def test_clone_of_a_fitted_classifier_is_unfitted(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(TEXTS)


def test_pickle_and_joblib_round_trips_predict_the_same(fitted, tmp_path):
    expected = fitted.predict_proba(TEST_TEXTS)
    restored = pickle.loads(pickle.dumps(fitted))
    assert type(restored) is AlbertClassifier
    assert restored.get_params() == fitted.get_params()
    np.testing.assert_array_equal(restored.classes_, fitted.classes_)
    np.testing.assert_array_equal(restored.predict_proba(TEST_TEXTS), expected)
    joblib.dump(fitted, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "clf.joblib").predict_proba(TEST_TEXTS), expected
    )
    assert hasattr(fitted, "_network")  # pickling leaves the live object intact


def test_pickle_is_self_contained_and_holds_no_training_text(tmp_path, tiny_albert_path):
    folder = shutil.copytree(tiny_albert_path, tmp_path / "model")
    marker = "charming zebra marker sentence"
    classifier = AlbertClassifier(str(folder), **{**FAST, "epochs": 1})
    classifier.fit(TEXTS + [marker], [*LABELS, "pos"])
    expected = classifier.predict_proba(TEST_TEXTS)
    payload = pickle.dumps(classifier)
    assert marker.encode() not in payload
    shutil.rmtree(folder)
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.predict_proba(TEST_TEXTS), expected)


def test_a_pickle_from_a_missing_device_loads_on_cpu_with_a_warning(fitted, monkeypatch):
    state = fitted.__getstate__()
    state["settings_"] = replace(state["settings_"], device="cuda")  # pickled on a GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    restored = AlbertClassifier.__new__(AlbertClassifier)
    message = "fitted on device 'cuda', which is not available here; it now runs on 'cpu'"
    with pytest.warns(UserWarning, match=re.escape(message)):
        restored.__setstate__(state)
    assert restored.device_ == "cpu"
    np.testing.assert_array_equal(
        restored.predict_proba(TEST_TEXTS), fitted.predict_proba(TEST_TEXTS)
    )


def test_save_and_load_without_pickle_predict_the_same(fitted, tmp_path):
    folder = fitted.save(tmp_path / "clf")

    loaded = AlbertClassifier.load(folder)

    assert sorted(path.name for path in folder.iterdir()) == [
        "estimator.json",
        "head.safetensors",
        "model",
    ]
    assert all(
        path.suffix in {".json", ".safetensors", ".model", ".txt"}
        for path in (folder / "model").iterdir()
    )
    assert loaded.get_params() == fitted.get_params()
    assert loaded.classes_.tolist() == fitted.classes_.tolist() == ["neg", "pos"]
    assert loaded.history_ == fitted.history_
    assert loaded.n_iter_ == fitted.n_iter_ and loaded.max_length_ == fitted.max_length_
    np.testing.assert_array_equal(
        loaded.predict_proba(TEST_TEXTS), fitted.predict_proba(TEST_TEXTS)
    )
    np.testing.assert_array_equal(loaded.predict(TEST_TEXTS), fitted.predict(TEST_TEXTS))
    # The tuned encoder keeps serving embeddings after a load.
    np.testing.assert_allclose(
        loaded.to_vectorizer().transform(TEST_TEXTS),
        fitted.to_vectorizer().transform(TEST_TEXTS),
        atol=1e-6,
    )


def test_a_saved_classifier_needs_neither_the_pretrained_folder_nor_pickle(
    tmp_path, tiny_albert_path
):
    pretrained = shutil.copytree(tiny_albert_path, tmp_path / "pretrained")
    labels = np.where(LABELS == "pos", 7, -3)  # integer labels keep their type
    classifier = AlbertClassifier(str(pretrained), **{**FAST, "epochs": 1}).fit(TEXTS, labels)
    expected = classifier.predict_proba(TEST_TEXTS)
    folder = classifier.save(tmp_path / "clf")
    shutil.rmtree(pretrained)

    loaded = AlbertClassifier.load(folder)

    assert loaded.classes_.dtype == classifier.classes_.dtype and loaded.classes_.tolist() == [
        -3,
        7,
    ]
    np.testing.assert_array_equal(loaded.predict_proba(TEST_TEXTS), expected)


def test_an_unfitted_classifier_saves_its_parameters_only(tmp_path):
    folder = AlbertClassifier("some/model", epochs=2, class_weight={"a": 2.0}).save(
        tmp_path / "clf"
    )

    loaded = AlbertClassifier.load(folder)

    assert (
        loaded.get_params()
        == AlbertClassifier("some/model", epochs=2, class_weight={"a": 2.0}).get_params()
    )
    assert sorted(path.name for path in folder.iterdir()) == ["estimator.json"]
    with pytest.raises(NotFittedError):
        loaded.predict(TEST_TEXTS)


def test_load_refuses_a_changed_head_file(fitted, tmp_path):
    folder = fitted.save(tmp_path / "clf")
    head = folder / "head.safetensors"
    content = bytearray(head.read_bytes())
    content[-1] ^= 1
    head.write_bytes(bytes(content))

    with pytest.raises(ValueError, match="head.safetensors changed since it was saved"):
        AlbertClassifier.load(folder)


def test_load_refuses_a_flipped_bit_in_a_label_of_estimator_json(fitted, tmp_path):
    """Without estimator.json's own checksum this loaded, with the label 'pow' for 'pos'."""
    folder = fitted.save(tmp_path / "clf")
    document = folder / "estimator.json"
    content = bytearray(document.read_bytes())
    classes = content.index(b'"classes_"')
    content[content.index(b'"pos"', classes) + 3] ^= 0x04  # "pos" -> "pow"
    document.write_bytes(bytes(content))

    with pytest.raises(ValueError, match=r"estimator\.json is damaged or was edited"):
        AlbertClassifier.load(folder)


def test_a_vectorizer_folder_does_not_load_as_a_classifier(fitted, tmp_path):
    folder = fitted.to_vectorizer().save(tmp_path / "vect")
    with pytest.raises(
        TypeError,
        match="as AlbertClassifier: it holds a 'sklearn_albert._vectorizer.AlbertVectorizer'",
    ):
        AlbertClassifier.load(folder)


def test_a_classifier_saved_on_cuda_loads_on_cpu_with_a_warning(fitted, tmp_path, monkeypatch):
    pretend_fitted_on(fitted, "cuda")  # as if fitted on a GPU machine
    try:
        folder = fitted.save(tmp_path / "clf")
    finally:
        pretend_fitted_on(fitted, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    message = "fitted on device 'cuda', which is not available here; it now runs on 'cpu'"
    with pytest.warns(UserWarning, match=re.escape(message)):
        loaded = AlbertClassifier.load(folder)

    assert loaded.device_ == "cpu" and loaded.dtype_ == "float32"
    np.testing.assert_array_equal(
        loaded.predict_proba(TEST_TEXTS), fitted.predict_proba(TEST_TEXTS)
    )
    assert AlbertClassifier.load(folder, device="cpu").device == "cpu"


def test_works_in_a_pipeline_with_cross_validation(classifier):
    pipe = make_pipeline(classifier.set_params(epochs=2))
    scores = cross_val_score(pipe, TEXTS, LABELS, cv=2)
    assert scores.shape == (2,)
    assert np.all(scores >= 0.5)


def test_grid_search_over_learning_rate_and_epochs(classifier):
    search = GridSearchCV(
        classifier, {"learning_rate": [1e-6, 2e-3], "epochs": [2]}, cv=2, refit=True
    )
    search.fit(TEXTS, LABELS)
    assert search.best_params_["learning_rate"] == 2e-3
    assert search.predict(TEST_TEXTS).shape == (len(TEST_TEXTS),)


# ---------------------------------------------------------------- embeddings


def _mean_pooled_by_hand(encoder, tokenizer, texts, max_length):
    with torch.inference_mode():
        batch = tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        output = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = output.last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def test_to_vectorizer_embeds_with_the_tuned_encoder(fitted, tiny_albert_path):
    vectorizer = fitted.to_vectorizer()
    assert isinstance(vectorizer, AlbertVectorizer)
    assert vectorizer.model_fingerprint_ == fitted.model_fingerprint_
    assert vectorizer.pooling == "mean" and vectorizer.max_length == fitted.max_length_
    assert vectorizer.store_weights_in_pickle
    embeddings = vectorizer.transform(TEST_TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_albert_path)
    by_hand = _mean_pooled_by_hand(
        fitted._network.encoder, tokenizer, TEST_TEXTS, fitted.max_length_
    )
    np.testing.assert_allclose(embeddings, by_hand, atol=1e-5)
    pretrained = (
        AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit([]).transform(TEST_TEXTS)
    )
    assert np.abs(embeddings - pretrained).max() > 1e-2  # tuned, not the pretrained weights


def test_to_vectorizer_takes_vectorizer_options(fitted):
    vectorizer = fitted.to_vectorizer(
        pooling=["cls", "max"], layers=(-1, -2), layer_aggregation="concat", normalize=True
    )
    embeddings = vectorizer.transform(TEST_TEXTS)
    assert embeddings.shape == (len(TEST_TEXTS), 4 * fitted.hidden_size_)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_the_in_memory_vectorizer_survives_refit_clone_and_pickle(fitted):
    vectorizer = fitted.to_vectorizer()
    expected = vectorizer.transform(TEST_TEXTS)
    pipe = make_pipeline(vectorizer, LogisticRegression()).fit(
        TEXTS, LABELS
    )  # refits the vectorizer
    np.testing.assert_allclose(pipe[0].transform(TEST_TEXTS), expected, atol=1e-6)
    np.testing.assert_allclose(clone(vectorizer).fit([]).transform(TEST_TEXTS), expected, atol=1e-6)
    restored = pickle.loads(pickle.dumps(vectorizer))
    np.testing.assert_allclose(restored.transform(TEST_TEXTS), expected, atol=1e-6)


def test_the_in_memory_name_outlives_a_restored_copy_of_the_classifier(fitted):
    from sklearn_albert._loading import clear_model_registry

    name = fitted.to_vectorizer().model_name_or_path
    copy = pickle.loads(pickle.dumps(fitted))  # same weights, same name
    clear_model_registry()
    del copy
    gc.collect()
    vectorizer = AlbertVectorizer(name, dtype="float32", max_length=fitted.max_length_).fit([])
    assert vectorizer.model_fingerprint_ == fitted.model_fingerprint_


def test_the_vectorizer_pickle_carries_the_tuned_weights(tiny_albert_path):
    classifier = AlbertClassifier(str(tiny_albert_path), **{**FAST, "epochs": 1}).fit(TEXTS, LABELS)
    vectorizer = classifier.to_vectorizer()
    expected = vectorizer.transform(TEST_TEXTS)
    payload = pickle.dumps(vectorizer)
    del classifier, vectorizer
    gc.collect()
    restored = pickle.loads(payload)
    np.testing.assert_allclose(restored.transform(TEST_TEXTS), expected, atol=1e-6)


def test_to_vectorizer_can_save_the_tuned_weights_to_a_folder(fitted, tmp_path):
    vectorizer = fitted.to_vectorizer(save_to=tmp_path / "tuned")
    assert (tmp_path / "tuned" / "config.json").exists()
    assert vectorizer.model_name_or_path == str(tmp_path / "tuned")
    assert not vectorizer.store_weights_in_pickle
    expected = fitted.to_vectorizer().transform(TEST_TEXTS)
    np.testing.assert_allclose(vectorizer.transform(TEST_TEXTS), expected, atol=1e-6)
    fresh = AlbertVectorizer(
        str(tmp_path / "tuned"), pooling="mean", max_length=fitted.max_length_, dtype="float32"
    )
    np.testing.assert_allclose(fresh.fit([]).transform(TEST_TEXTS), expected, atol=1e-6)


def test_to_vectorizer_never_overwrites_another_checkpoint(fitted, tmp_path):
    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    (pretrained / "config.json").write_text('{"model_type": "albert"}', encoding="utf-8")
    (pretrained / "model.safetensors").write_bytes(b"the user's own weights")
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    with pytest.raises(FileExistsError, match=r"save_to=.*pretrained.*not empty"):
        fitted.to_vectorizer(save_to=pretrained)
    with pytest.raises(FileExistsError, match=r"save_to=.*linked.*symbolic link"):
        fitted.to_vectorizer(save_to=linked)

    assert (pretrained / "model.safetensors").read_bytes() == b"the user's own weights"
    assert sorted(p.name for p in pretrained.iterdir()) == ["config.json", "model.safetensors"]
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linked", "pretrained"]
    empty = tmp_path / "empty"
    empty.mkdir()
    fitted.to_vectorizer(save_to=empty)  # an empty folder is fine
    assert (empty / "config.json").exists()


SAVES_TO_A_FOLDER_IN_A_CHILD = """
import os, pickle, resource, signal, sys, threading, time
from pathlib import Path

with open(sys.argv[1], "rb") as file:
    classifier = pickle.load(file)
parent = Path(sys.argv[2])
# A write past the limit then fails with EFBIG instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, hard))  # the weights cannot be written
try:
    classifier.to_vectorizer(save_to=parent / "short" / "tuned")
    print("no error", flush=True)
except Exception as error:
    print(f"{type(error).__name__}: {error}", flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
# Then killed from a second thread once the first file is written, staged or in place; a
# writer quicker than the watching thread is killed as it renames the staged folder into
# place, so the kill always lands mid-save.
killed = parent / "killed"
rename = os.replace
def rename_or_die(source, *args, **kwargs):
    if Path(source).name.startswith(".tuned."):
        signal.raise_signal(signal.SIGKILL)
    return rename(source, *args, **kwargs)
os.replace = rename_or_die
saver = threading.Thread(target=classifier.to_vectorizer, kwargs={"save_to": killed / "tuned"})
saver.start()
while saver.is_alive():
    if list(killed.glob("*/config.json")):
        signal.raise_signal(signal.SIGKILL)
    time.sleep(0.0005)
"""


def test_to_vectorizer_save_to_cut_short_or_killed_leaves_no_checkpoint(fitted, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    pickled = tmp_path / "classifier.pkl"
    pickled.write_bytes(pickle.dumps(fitted))
    parent = tmp_path / "out"
    for name in ("short", "killed"):
        (parent / name).mkdir(parents=True)
    environment = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, environment.get("PYTHONPATH")]))

    child = subprocess.run(
        [sys.executable, "-c", SAVES_TO_A_FOLDER_IN_A_CHILD, str(pickled), str(parent)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )

    lines = child.stdout.strip().splitlines()
    assert lines and "File too large" in lines[0], child.stdout + child.stderr[-3000:]
    assert list((parent / "short").iterdir()) == []  # neither the folder nor its staging
    assert child.returncode == -signal.SIGKILL, f"not killed mid-save: {child.stderr[-3000:]}"
    # What a killed writer leaves is a hidden staging folder beside it, never "tuned".
    assert [entry.name[:7] for entry in (parent / "killed").iterdir()] == [".tuned."]
    expected = fitted.to_vectorizer().transform(TEST_TEXTS)
    for name in ("short", "killed"):
        again = fitted.to_vectorizer(save_to=parent / name / "tuned")
        np.testing.assert_allclose(again.transform(TEST_TEXTS), expected, atol=1e-6)


def test_to_vectorizer_refuses_a_model_name(fitted):
    with pytest.raises(
        TypeError, match=re.escape("to_vectorizer() sets model_name_or_path itself")
    ):
        fitted.to_vectorizer(model_name_or_path="albert-base-v2")


def test_a_forgotten_in_memory_model_gives_a_clear_error():
    with pytest.raises(
        OSError, match=re.escape("it names fine-tuned weights that lived only in memory")
    ):
        AlbertVectorizer("in-memory:0123456789abcdef").fit([])


# ---------------------------------------------------------------- mixed precision


def test_float16_training_with_loss_scaling_on_the_best_device(tiny_albert_path):
    """On a GPU this is the CUDA path (autocast + GradScaler); without one, the same code
    runs on the CPU, which supports float16 autocast and loss scaling too."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classifier = AlbertClassifier(
        str(tiny_albert_path), **{**FAST, "device": device, "dtype": "float16"}
    )
    classifier.fit(TEXTS, LABELS)
    assert classifier.device_.startswith(device) and classifier.dtype_ == "float16"
    assert classifier.score(TEXTS, LABELS) >= 0.9
    restored = pickle.loads(pickle.dumps(classifier))
    np.testing.assert_array_equal(restored.predict(TEST_TEXTS), classifier.predict(TEST_TEXTS))


def test_auto_precision_is_float32_on_cpu_and_reduced_on_cuda(classifier):
    classifier.set_params(dtype="auto", epochs=1).fit(TEXTS, LABELS)
    if classifier.device_.startswith("cuda"):
        assert classifier.dtype_ in {"bfloat16", "float16"}
    else:
        assert classifier.dtype_ == "float32"


# ---------------------------------------------------------------- long texts


def test_predictions_on_long_texts_warn_with_the_count(fitted):
    long_text = " ".join(["good"] * 300)
    message = f"1 of 2 texts are longer than max_length_={fitted.max_length_} tokens"
    with pytest.warns(UserWarning, match=re.escape(message)):
        fitted.predict([long_text, "good"])


def test_a_max_length_above_the_models_limit_is_refused_as_by_the_vectorizer(tiny_albert_path):
    with pytest.raises(InvalidParameterError, match="accepts at most 64 tokens"):
        AlbertClassifier(str(tiny_albert_path), max_length=65, **FAST).fit(TEXTS, LABELS)
    with pytest.raises(InvalidParameterError, match="accepts at most 64 tokens"):
        AlbertVectorizer(str(tiny_albert_path), max_length=65).fit(TEXTS)


def test_the_default_max_length_is_128_or_the_models_limit(fitted):
    assert fitted.max_length is None
    assert fitted.max_length_ == 64  # the tiny model accepts 64 tokens
