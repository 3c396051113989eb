"""AlbertVectorizer(fine_tune="contrastive"): the encoder adapted on labelled texts."""

import gc
import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

from sklearn_albert import AlbertVectorizer, skops_trusted_types

POSITIVE = "good great superb lovely brilliant charming".split()
NEGATIVE = "bad awful dull boring weak tedious".split()
NEUTRAL = "the a film movie story plot scene music script is was this".split()


def sentiment_texts(n, seed=0):
    """Half positive, half negative: neutral words around one sentiment word."""
    rng = np.random.RandomState(seed)
    texts, labels = [], []
    for i in range(n):
        words = POSITIVE if i % 2 == 0 else NEGATIVE
        sentence = list(rng.choice(NEUTRAL, size=rng.randint(1, 5)))
        sentence.insert(rng.randint(0, len(sentence) + 1), rng.choice(words))
        texts.append(" ".join(sentence))
        labels.append("pos" if i % 2 == 0 else "neg")
    return texts, np.array(labels)


TEXTS, LABELS = sentiment_texts(24)


def adapted(tiny_albert_path, **params):
    """A contrastive vectorizer over the tiny ALBERT, quick to train."""
    options = dict(
        dtype="float32",
        fine_tune="contrastive",
        fine_tune_epochs=3,
        fine_tune_batch_size=8,
        fine_tune_learning_rate=1e-3,
        random_state=0,
    )
    return AlbertVectorizer(str(tiny_albert_path), **{**options, **params})


def class_margin(features, labels):
    """Mean cosine between texts of one class minus mean cosine between classes."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return cosine[same & off_diagonal].mean() - cosine[~same].mean()


def test_adaptation_changes_the_weights_and_separates_the_classes(tiny_albert_path):
    texts, labels = sentiment_texts(40, seed=1)
    pretrained = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit(texts)
    vect = adapted(tiny_albert_path, fine_tune_epochs=6).fit(texts, labels)

    before, after = pretrained.transform(texts), vect.transform(texts)
    assert class_margin(after, labels) > class_margin(before, labels) + 0.05
    assert vect.model_fingerprint_ != pretrained.model_fingerprint_
    changed = [
        name
        for (name, a), (_, b) in zip(
            vect._ensure_loaded().model.state_dict().items(),
            pretrained._ensure_loaded().model.state_dict().items(),
        )
        if not np.array_equal(a.numpy(), b.numpy())
    ]
    assert changed
    # describe() (and the CLI's info) names the weights transform runs: the adapted ones.
    assert vect.describe()["adapted"] and not pretrained.describe()["adapted"]
    assert vect.describe()["fingerprint"] == vect.model_fingerprint_
    history = vect.fine_tune_history_
    assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize(
    ("n_texts", "batch_size", "epochs"),
    [
        (2, 16, 5),  # one batch: every pair in every epoch
        (16, 16, 5),
        (20, 16, 6),  # each pair shares a batch 15/19 of the epochs: 5 turns in 6 epochs
        (32, 16, 10),
        (64, 16, 20),  # round(21) capped
        (128, 16, 20),
        (64, 64, 5),
        (64, 32, 10),
    ],
)
def test_auto_schedule_gives_each_pair_about_five_turns(n_texts, batch_size, epochs):
    from sklearn_albert._contrastive import resolve_schedule

    assert resolve_schedule(n_texts, batch_size, "auto", "auto") == (epochs, 7.5e-4 / epochs)
    # Each setting stands alone: a given number is kept, and "auto" follows the other.
    assert resolve_schedule(n_texts, batch_size, 3, "auto") == (3, 2.5e-4)
    assert resolve_schedule(n_texts, batch_size, "auto", 1e-3) == (epochs, 1e-3)
    assert resolve_schedule(n_texts, batch_size, 7, 2e-5) == (7, 2e-5)


def test_auto_schedule_is_what_fit_runs_and_what_persists(tiny_albert_path, tmp_path):
    texts, labels = sentiment_texts(20, seed=2)
    vect = AlbertVectorizer(
        str(tiny_albert_path), dtype="float32", fine_tune="contrastive", random_state=0
    )
    assert (vect.fine_tune_epochs, vect.fine_tune_learning_rate) == ("auto", "auto")
    vect.fit(texts, labels)
    assert (vect.fine_tune_epochs_, vect.fine_tune_learning_rate_) == (6, 7.5e-4 / 6)
    assert [record["epoch"] for record in vect.fine_tune_history_] == list(range(1, 7))
    # The schedule ends at 0 after warming up to the chosen peak.
    assert vect.fine_tune_history_[-1]["learning_rate"] == 0.0
    explicit = AlbertVectorizer(
        str(tiny_albert_path),
        dtype="float32",
        fine_tune="contrastive",
        fine_tune_epochs=6,
        fine_tune_learning_rate=7.5e-4 / 6,
        random_state=0,
    ).fit(texts, labels)
    assert np.array_equal(explicit.transform(texts), vect.transform(texts))
    vect.save(tmp_path / "saved")
    restored = AlbertVectorizer.load(tmp_path / "saved")
    assert (restored.fine_tune_epochs_, restored.fine_tune_learning_rate_) == (6, 7.5e-4 / 6)
    assert restored.get_params()["fine_tune_epochs"] == "auto"
    # Refitting without labels drops what adaptation fitted.
    vect.set_params(fine_tune=None).fit(texts)
    for name in ("fine_tune_history_", "fine_tune_epochs_", "fine_tune_learning_rate_"):
        assert not hasattr(vect, name)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fine_tune_epochs": "many"}, "fine_tune_epochs"),
        ({"fine_tune_epochs": 0}, "fine_tune_epochs"),
        ({"fine_tune_learning_rate": "fast"}, "fine_tune_learning_rate"),
        ({"fine_tune_learning_rate": 0.0}, "fine_tune_learning_rate"),
    ],
)
def test_schedule_parameters_name_what_works(tiny_albert_path, params, message):
    vect = adapted(tiny_albert_path, **params)
    with pytest.raises(ValueError, match=f"{message}.*auto"):
        vect.fit(TEXTS, LABELS)


def test_without_fine_tune_labels_change_nothing(tiny_albert_path):
    default = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit(TEXTS)
    explicit = AlbertVectorizer(
        str(tiny_albert_path), dtype="float32", fine_tune=None, random_state=3
    ).fit(TEXTS, LABELS)
    assert np.array_equal(default.transform(TEXTS), explicit.transform(TEXTS))
    assert explicit.model_fingerprint_ == default.model_fingerprint_
    assert not hasattr(explicit, "fine_tune_history_")


def test_auto_normalize_gives_unit_rows_after_adaptation_only(tiny_albert_path):
    pretrained = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit(TEXTS)
    assert pretrained.normalize == "auto"
    assert not np.allclose(np.linalg.norm(pretrained.transform(TEXTS), axis=1), 1.0)
    auto = adapted(tiny_albert_path).fit(TEXTS, LABELS)
    unit = auto.transform(TEXTS)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    raw = adapted(tiny_albert_path, normalize=False).fit(TEXTS, LABELS).transform(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    # Normalising is the only difference: the same adapted directions.
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(
        adapted(tiny_albert_path, normalize=True).fit(TEXTS, LABELS).transform(TEXTS), unit
    )


def test_normalize_names_what_works(tiny_albert_path):
    with pytest.raises(ValueError, match=r"'normalize' parameter .*'auto'"):
        AlbertVectorizer(str(tiny_albert_path), normalize="yes").fit(TEXTS)


def test_a_seed_makes_adaptation_reproducible_to_the_bit(tiny_albert_path):
    first = adapted(tiny_albert_path).fit(TEXTS, LABELS).transform(TEXTS)
    second = adapted(tiny_albert_path).fit(TEXTS, LABELS).transform(TEXTS)
    other_seed = adapted(tiny_albert_path, random_state=1).fit(TEXTS, LABELS).transform(TEXTS)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other_seed)


def test_the_shared_pretrained_model_is_never_handed_the_adapted_weights(tiny_albert_path):
    original = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit([]).transform(TEXTS)
    vect = adapted(tiny_albert_path).fit(TEXTS, LABELS)
    restored = pickle.loads(pickle.dumps(vect))  # restoring holds weights too
    assert not np.array_equal(restored.transform(TEXTS), original)

    fresh = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit([])
    refit = clone(vect).set_params(fine_tune=None).fit(TEXTS, LABELS)
    assert np.array_equal(fresh.transform(TEXTS), original)
    assert np.array_equal(refit.transform(TEXTS), original)


class RecordingVectorizer(AlbertVectorizer):
    """Records the texts and labels every fit saw, and the fingerprint it ended with."""

    fits = []

    def fit_transform(self, X, y=None):
        features = super().fit_transform(X, y)
        self.fits.append((list(X), list(y), self.model_fingerprint_, self._cache_namespace()))
        return features


def test_grid_search_adapts_each_fold_on_its_own_training_part(tiny_albert_path):
    texts, labels = sentiment_texts(24, seed=3)
    RecordingVectorizer.fits = []
    vect = RecordingVectorizer(
        str(tiny_albert_path),
        dtype="float32",
        fine_tune="contrastive",
        fine_tune_epochs=1,
        fine_tune_batch_size=8,
        fine_tune_learning_rate=1e-3,
        random_state=0,
    )
    pipe = make_pipeline(vect, LogisticRegression())
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0]}, cv=cv)
    search.fit(texts, labels)

    folds = [set(np.asarray(texts)[train]) for train, _ in cv.split(texts, labels)]
    fits = RecordingVectorizer.fits
    assert len(fits) == 2 * 2 + 1  # each candidate on each fold, then the refit
    for seen, seen_labels, _, _ in fits[:-1]:
        assert set(seen) in folds  # never a text of its test part
        assert dict(zip(seen, seen_labels)).items() <= dict(zip(texts, labels)).items()
    assert set(fits[-1][0]) == set(texts)
    # Each training part gets its own weights and cache namespace; the candidates of one
    # fold (same part, same seed: the same weights) share them.
    by_part = {
        frozenset(seen): (fingerprint, namespace) for seen, _, fingerprint, namespace in fits
    }
    assert len(by_part) == 3
    assert len({fingerprint for fingerprint, _ in by_part.values()}) == 3
    assert len({namespace for _, namespace in by_part.values()}) == 3
    assert len({(fingerprint, namespace) for _, _, fingerprint, namespace in fits}) == 3


def test_cache_namespaces_of_pretrained_adapted_and_folds_differ(tiny_albert_path):
    pretrained = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit([])
    whole = adapted(tiny_albert_path).fit(TEXTS, LABELS)
    half = adapted(tiny_albert_path).fit(TEXTS[:12], LABELS[:12])
    namespaces = {v._cache_namespace() for v in (pretrained, whole, half)}
    assert len(namespaces) == 3
    # Cached vectors are the adapted ones: a second transform reads them back.
    assert np.array_equal(whole.transform(TEXTS), whole.transform(TEXTS))
    assert not np.array_equal(whole.transform(TEXTS), pretrained.transform(TEXTS))


def test_a_pickle_carries_the_adapted_weights(tiny_albert_path):
    vect = adapted(tiny_albert_path, store_weights_in_pickle=False).fit(TEXTS, LABELS)
    expected = vect.transform(TEXTS)
    data = pickle.dumps(vect)
    del vect
    gc.collect()  # nothing in this process holds the adapted weights any more
    restored = pickle.loads(data)
    assert np.array_equal(restored.transform(TEXTS), expected)
    assert restored.fine_tune_history_


def test_save_and_load_keep_the_adapted_weights(tiny_albert_path, tmp_path):
    vect = adapted(tiny_albert_path).fit(TEXTS, LABELS)
    expected = vect.transform(TEXTS)
    vect.save(tmp_path / "saved")
    restored = AlbertVectorizer.load(tmp_path / "saved")
    assert np.array_equal(restored.transform(TEXTS), expected)
    assert restored.model_fingerprint_ == vect.model_fingerprint_
    # The model/ folder is a checkpoint like any: the command line and the keyword
    # extractor take it as model_name_or_path. It holds weights, not the vectorizer's
    # settings: the adapted vectorizer's unit rows need normalize=True there.
    folder = str(tmp_path / "saved" / "model")
    plain = AlbertVectorizer(folder, dtype="float32", normalize=True).fit([])
    assert np.array_equal(plain.transform(TEXTS), expected)
    raw = AlbertVectorizer(folder, dtype="float32").fit([]).transform(TEXTS)
    np.testing.assert_allclose(
        raw / np.linalg.norm(raw, axis=1, keepdims=True), expected, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match=re.escape("include_model=True")):
        vect.save(tmp_path / "without", include_model=False)


def test_skops_keeps_the_adapted_weights(tiny_albert_path, tmp_path):
    sio = pytest.importorskip("skops.io")
    pipe = make_pipeline(adapted(tiny_albert_path), LogisticRegression()).fit(TEXTS, LABELS)
    expected = pipe.predict_proba(TEXTS)
    sio.dump(pipe, tmp_path / "pipe.skops")
    restored = sio.load(tmp_path / "pipe.skops", trusted=skops_trusted_types())
    assert np.array_equal(restored.predict_proba(TEXTS), expected)


def test_token_and_static_embeddings_use_the_adapted_weights(tiny_albert_path):
    pretrained = AlbertVectorizer(str(tiny_albert_path), dtype="float32").fit([])
    vect = adapted(tiny_albert_path).fit(TEXTS, LABELS)
    tokens = vect.transform_tokens(TEXTS[:1])[0].embeddings
    assert not np.array_equal(tokens, pretrained.transform_tokens(TEXTS[:1])[0].embeddings)
    words = ["good", "bad"]
    assert not np.array_equal(
        vect.static_embeddings(words).vectors, pretrained.static_embeddings(words).vectors
    )


def test_pooling_options_train_what_transform_computes(tiny_albert_path):
    vect = adapted(tiny_albert_path, pooling=["cls", "max"], layers=(-2, -1)).fit(TEXTS, LABELS)
    assert vect.transform(TEXTS).shape == (len(TEXTS), 2 * vect.hidden_size_)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (None, "Got fine_tune='contrastive' but y=None"),
        (["pos"] * len(TEXTS), "Got fine_tune='contrastive' with a single class in y (['pos'])"),
        (
            ["odd"] + ["pos", "neg"] * ((len(TEXTS) - 1) // 2) + ["pos"],
            "Got fine_tune='contrastive' with classes ['odd'] of one text each",
        ),
    ],
)
def test_labels_that_make_no_pairs_are_refused(tiny_albert_path, y, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        adapted(tiny_albert_path).fit(TEXTS, y)


def test_int8_is_refused_with_what_works(tiny_albert_path):
    with pytest.raises(ValueError, match=re.escape("with dtype='int8'")):
        adapted(tiny_albert_path, dtype="int8").fit(TEXTS, LABELS)


def test_verbose_shows_a_progress_bar_per_epoch(tiny_albert_path, capsys):
    adapted(tiny_albert_path, fine_tune_epochs=2, verbose=True).fit(TEXTS, LABELS)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err


def bfloat16_autocast_runs_on_cpu():
    import torch

    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    except (RuntimeError, ValueError):
        return False


@pytest.mark.skipif(
    not bfloat16_autocast_runs_on_cpu(), reason="this torch build has no bfloat16 CPU autocast"
)
def test_a_seed_makes_bfloat16_adaptation_reproducible_to_the_bit(tiny_albert_path, tmp_path):
    # With dropout on, so that the seed decides the masks as well as the batches.
    import json
    import shutil

    model = shutil.copytree(tiny_albert_path, tmp_path / "with-dropout")
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    (model / "config.json").write_text(json.dumps(config))

    def fit_transform(**params):
        vect = adapted(model, dtype="bfloat16", fine_tune_epochs=1, **params).fit(TEXTS, LABELS)
        assert vect.dtype_ == "bfloat16"
        return vect.transform(TEXTS)

    first = fit_transform()
    assert np.array_equal(fit_transform(), first)
    assert not np.array_equal(fit_transform(random_state=1), first)
