"""Persistence: pickle-free save/load, skops, device remapping, secrets, integrity checks."""

import json
import pickle
import re
import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from _estimator_file import edit_estimator_file
from conftest import best_candidate, pretend_fitted_on, texts_labelled_by_their_last_word
from sklearn.base import clone

from sklearn_albert import AlbertVectorizer, skops_trusted_types

TEXTS = ["a great film", "a dull and boring film", "", "the plot is very clever"]
TOKEN = "hf_NeverWriteThisSecret1234567890"
TOKEN_ENV = "SKLEARN_ALBERT_TEST_TOKEN"


@pytest.fixture
def fitted(vectorizer):
    return vectorizer.set_params(pooling=["mean", "cls"], layers=(1, -1)).fit(TEXTS)


def all_bytes_under(folder):
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())


def simulate_machine_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---------------------------------------------------------------------- save / load


def test_save_load_round_trip_gives_same_params_and_identical_output(fitted, tmp_path):
    folder = fitted.save(tmp_path / "vect")

    loaded = AlbertVectorizer.load(folder)

    assert type(loaded) is AlbertVectorizer
    assert loaded.get_params() == fitted.get_params()
    assert loaded.layers == (1, -1) and isinstance(loaded.layers, tuple)
    assert loaded.n_features_out_ == fitted.n_features_out_
    np.testing.assert_array_equal(loaded.transform(TEXTS), fitted.transform(TEXTS))


def test_saved_folder_holds_only_json_and_data_files(fitted, tmp_path):
    folder = fitted.save(tmp_path / "vect")

    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    assert "estimator.json" in names and "model/model.safetensors" in names
    assert all(name.endswith((".json", ".safetensors", ".model", ".txt")) for name in names)
    assert not any(name.endswith((".pkl", ".bin", ".joblib", ".pt", ".py")) for name in names)
    document = json.loads((folder / "estimator.json").read_text())
    assert document["class"] == "sklearn_albert._vectorizer.AlbertVectorizer"
    assert document["fitted"]["n_features_out_"] == fitted.n_features_out_


def test_saved_folder_loads_after_the_original_model_folder_is_gone(
    vectorizer, tiny_albert_path, tmp_path
):
    copy = shutil.copytree(tiny_albert_path, tmp_path / "model-copy")
    fitted = vectorizer.set_params(model_name_or_path=str(copy)).fit(TEXTS)
    expected = fitted.transform(TEXTS)
    folder = fitted.save(tmp_path / "vect")
    shutil.rmtree(copy)

    np.testing.assert_array_equal(AlbertVectorizer.load(folder).transform(TEXTS), expected)


def test_unfitted_vectorizer_saves_its_parameters_only(tmp_path):
    folder = AlbertVectorizer("some/model", pooling="max", max_length=128).save(tmp_path / "v")

    loaded = AlbertVectorizer.load(folder)

    assert not (folder / "model").exists()
    assert (
        loaded.get_params()
        == AlbertVectorizer("some/model", pooling="max", max_length=128).get_params()
    )
    assert not hasattr(loaded, "n_features_out_")


def test_include_model_false_reloads_from_model_name_or_path(fitted, tmp_path):
    folder = fitted.save(tmp_path / "vect", include_model=False)

    loaded = AlbertVectorizer.load(folder)

    assert not (folder / "model").exists()
    np.testing.assert_array_equal(loaded.transform(TEXTS), fitted.transform(TEXTS))


def test_save_replaces_an_earlier_save_but_not_a_foreign_folder(fitted, tmp_path):
    folder = fitted.save(tmp_path / "vect")
    fitted.set_params(normalize=True).save(folder)
    assert AlbertVectorizer.load(folder).normalize is True

    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty and was not written by save"):
        fitted.save(foreign)
    assert (foreign / "thesis.txt").read_text() == "precious"


def test_load_refuses_a_changed_model_file(fitted, tmp_path):
    folder = fitted.save(tmp_path / "vect")
    config = folder / "model" / "config.json"
    config.write_text(config.read_text().replace('"hidden_size"', '"hidden_size" ', 1))

    with pytest.raises(ValueError, match="config.json changed since it was saved"):
        AlbertVectorizer.load(folder)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "modeling_evil.py"])
def test_load_refuses_files_that_could_execute_code(fitted, tmp_path, name):
    folder = fitted.save(tmp_path / "vect")
    (folder / "model" / name).write_bytes(b"import os")

    with pytest.raises(ValueError, match="save\\(\\) did not write"):
        AlbertVectorizer.load(folder)

    # Even when listed in estimator.json with the right hash (and the file's own checksum
    # rewritten to match), code files are refused.
    import hashlib

    edit_estimator_file(
        folder,
        lambda document: document["files"].update({name: hashlib.sha256(b"import os").hexdigest()}),
    )
    with pytest.raises(ValueError, match="not data files"):
        AlbertVectorizer.load(folder)


def test_load_names_what_is_wrong_with_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no estimator.json"):
        AlbertVectorizer.load(tmp_path)
    (tmp_path / "estimator.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a sklearn_albert estimator file"):
        AlbertVectorizer.load(tmp_path)
    AlbertVectorizer().save(tmp_path / "v")
    edit_estimator_file(
        tmp_path / "v",
        lambda document: document.update({"class": "sklearn_albert.OtherEstimator"}),
    )
    with pytest.raises(TypeError, match="holds a 'sklearn_albert.OtherEstimator'"):
        AlbertVectorizer.load(tmp_path / "v")


def test_load_on_a_chosen_device_sets_the_device_parameter(fitted, tmp_path):
    folder = fitted.save(tmp_path / "vect")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = AlbertVectorizer.load(folder, device="cpu")

    assert loaded.device == "cpu" and loaded.device_ == "cpu"


def test_a_folder_saved_on_cuda_loads_on_cpu_with_a_warning(fitted, tmp_path, monkeypatch):
    pretend_fitted_on(fitted, "cuda:0")  # as if fitted on a GPU machine
    folder = fitted.save(tmp_path / "vect")
    pretend_fitted_on(fitted, "cpu")
    simulate_machine_without_cuda(monkeypatch)

    with pytest.warns(
        UserWarning,
        match=re.escape(
            "fitted on device 'cuda:0', which is not available here; it now runs on 'cpu'"
        ),
    ):
        loaded = AlbertVectorizer.load(folder)

    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.transform(TEXTS), fitted.transform(TEXTS))


def test_model_fingerprint_does_not_depend_on_where_the_checkpoint_lies(
    vectorizer, tiny_albert_path, tmp_path
):
    copy = shutil.copytree(tiny_albert_path, tmp_path / "elsewhere")
    original = clone(vectorizer).fit([])
    moved = clone(vectorizer).set_params(model_name_or_path=str(copy)).fit([])
    assert moved.model_fingerprint_ == original.model_fingerprint_


# ---------------------------------------------------------------------- pickle


@pytest.mark.parametrize("store_weights", [False, True])
def test_pickled_on_cuda_loads_on_cpu_with_a_warning(fitted, monkeypatch, store_weights):
    fitted.set_params(store_weights_in_pickle=store_weights)
    expected = fitted.transform(TEXTS)
    pretend_fitted_on(fitted, "cuda:0")  # pickled on a GPU machine
    payload = pickle.dumps(fitted)
    simulate_machine_without_cuda(monkeypatch)

    with pytest.warns(UserWarning, match="fitted on device 'cuda:0', which is not available here"):
        restored = pickle.loads(payload)

    assert restored.device_ == "cpu"
    np.testing.assert_array_equal(restored.transform(TEXTS), expected)


def test_pickling_leaves_the_pickled_estimator_unchanged(fitted):
    fitted.set_params(store_weights_in_pickle=True)
    before = set(vars(fitted))

    pickle.dumps(fitted)

    assert set(vars(fitted)) == before
    assert "_loaded" in vars(fitted) and "_model_files" not in vars(fitted)


# ---------------------------------------------------------------------- secrets


def test_the_hub_token_is_never_pickled_or_saved(vectorizer, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fitted = vectorizer.set_params(token_env=TOKEN_ENV).fit(TEXTS)
    secret = TOKEN.encode()

    assert TOKEN not in repr(vars(fitted))
    for store_weights in (False, True):
        fitted.set_params(store_weights_in_pickle=store_weights)
        assert secret not in pickle.dumps(fitted)
        joblib.dump(fitted, tmp_path / f"v{store_weights}.joblib")
        assert secret not in (tmp_path / f"v{store_weights}.joblib").read_bytes()
    folder = fitted.save(tmp_path / "vect")
    assert secret not in all_bytes_under(folder)
    assert json.loads((folder / "estimator.json").read_text())["params"]["token_env"] == TOKEN_ENV


# ---------------------------------------------------------------------- skops


@pytest.mark.parametrize("store_weights", [False, True])
def test_skops_round_trip_with_the_projects_types_trusted(fitted, tmp_path, store_weights):
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    fitted.set_params(store_weights_in_pickle=store_weights)
    file = tmp_path / "vect.skops"
    sio.dump(fitted, file)

    assert sio.get_untrusted_types(file=file) == [
        "sklearn_albert._settings.EncodeSettings",
        "sklearn_albert._vectorizer.AlbertVectorizer",
    ]
    restored = sio.load(file, trusted=skops_trusted_types())

    assert restored.get_params() == fitted.get_params()
    np.testing.assert_array_equal(restored.transform(TEXTS), fitted.transform(TEXTS))


def test_skops_refuses_untrusted_types(fitted, tmp_path):
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    import os

    file = tmp_path / "vect.skops"
    sio.dump(fitted, file)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(file)

    fitted.callback_ = os.system  # a file carrying a callable must never load
    sio.dump(fitted, tmp_path / "evil.skops")
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="system"):
        sio.load(tmp_path / "evil.skops", trusted=skops_trusted_types())


def test_skops_trusted_types_names_the_exported_estimators_and_paths():
    assert "sklearn_albert._vectorizer.AlbertVectorizer" in skops_trusted_types()
    assert f"{Path.__module__}.{type(Path()).__qualname__}" in skops_trusted_types()


def test_skops_loads_path_parameters(fitted, tiny_albert_path, tmp_path):
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    fitted.set_params(model_name_or_path=Path(tiny_albert_path), embedding_cache=tmp_path / "cache")
    sio.dump(fitted, tmp_path / "vect.skops")

    untrusted = sio.get_untrusted_types(file=tmp_path / "vect.skops")
    assert set(untrusted) <= set(skops_trusted_types())
    restored = sio.load(tmp_path / "vect.skops", trusted=skops_trusted_types())

    assert restored.get_params() == fitted.get_params()


# ---------------------------------------------------------------------- restored weights


def test_a_self_contained_pickle_clones_and_refits_after_the_checkpoint_is_gone(
    tiny_albert_path, tmp_path
):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from sklearn_albert import clear_cache

    folder = shutil.copytree(tiny_albert_path, tmp_path / "checkpoint")
    vect = AlbertVectorizer(str(folder), dtype="float32", store_weights_in_pickle=True)
    pipe = Pipeline([("vect", vect), ("clf", LogisticRegression())]).fit(TEXTS * 2, [0, 1] * 4)
    expected = pipe.named_steps["vect"].transform(TEXTS)
    payload = pickle.dumps(pipe)
    del pipe, vect
    clear_cache(models=True)
    shutil.rmtree(folder)

    restored = pickle.loads(payload)
    refitted = clone(restored.named_steps["vect"]).fit(TEXTS)
    np.testing.assert_allclose(refitted.transform(TEXTS), expected, atol=1e-6)
    grid = {"vect__pooling": ["mean", "max"]}
    texts, labels = texts_labelled_by_their_last_word(40)  # mean and max score apart on them
    search = GridSearchCV(restored, grid, cv=3).fit(texts, labels)  # clones what was restored
    # Each candidate scored on its own, without a cache its encodings could come from.
    uncached = clone(restored).set_params(vect__embedding_cache=None)
    best_params, best_score = best_candidate(uncached, grid, texts, labels, cv=3)
    assert search.best_params_ == best_params
    assert search.best_score_ == pytest.approx(best_score, abs=1e-12)


@pytest.mark.parametrize("estimator", ["vectorizer", "pipeline"])
def test_a_default_pickle_of_albert_base_leaves_its_45_mb_of_weights_out(
    albert_base_path, estimator
):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    vect = AlbertVectorizer(str(albert_base_path), dtype="float32", max_length=32)
    fitted = vect.fit(TEXTS)
    if estimator == "pipeline":
        fitted = make_pipeline(vect, LogisticRegression()).fit(TEXTS, [0, 1, 0, 1])
    size = len(pickle.dumps(fitted))
    # The embedding table alone is 30,000 x 128 float32 (15 MB): a leak could not hide.
    assert size < 20_000, f"a default pickle took {size} bytes"
    with_weights = len(pickle.dumps(vect.set_params(store_weights_in_pickle=True)))
    assert with_weights > 40_000_000
