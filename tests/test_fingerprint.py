"""Fingerprints and cache namespaces name the computation that actually produces the vectors.

A fingerprint hashes the whole config (but the few entries that cannot change the output),
the tokenizer and the weights; the cache namespace hashes the checkpoint loaded in this
process, not the one recorded at fit; folders and pickles written before this scheme load.
"""

import copy
import hashlib
import json
import pickle
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from _estimator_file import edit_estimator_file

from sklearn_albert import AlbertVectorizer
from sklearn_albert._loading import fingerprint, legacy_fingerprint, load_model

CPU = torch.device("cpu")
TEXTS = ["the good film", "a bad movie", "i love this very moving story and its music"]
WORDPIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "good", "film", "a"]
WORDPIECES += ["bad", "movie", "i", "love", "this", "very", "moving", "story", "and", "its"]
WORDPIECES += ["music", "##s", "##ing"]


def _resave_with_other_weights(folder, seed):
    """Save random weights of the same architecture into ``folder`` (tokenizer kept)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    torch.manual_seed(seed)
    type(model)(model.config).save_pretrained(folder)


def _vectors(path, cache=None, **params):
    vectorizer = AlbertVectorizer(str(path), dtype="float32", embedding_cache=cache, **params)
    return vectorizer.fit(TEXTS).transform(TEXTS)


def _tiny_distilbert(folder, activation, vocab):
    """A tiny DistilBERT with a WordPiece tokenizer; the same weights for every activation."""
    from transformers import BertTokenizer, DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=len(WORDPIECES),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=48,
        max_position_embeddings=64,
        activation=activation,
    )
    torch.manual_seed(0)
    DistilBertModel(config).save_pretrained(folder)
    BertTokenizer(str(vocab)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def distilbert_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("distilbert")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(WORDPIECES) + "\n", encoding="utf-8")
    return (
        _tiny_distilbert(root / "gelu", "gelu", vocab),
        _tiny_distilbert(root / "relu", "relu", vocab),
    )


# ---------------------------------------------------------------------- cache namespace


def test_a_stale_estimator_never_poisons_a_shared_folder_cache(tiny_albert_path, tmp_path):
    original = shutil.copytree(tiny_albert_path, tmp_path / "original")
    copy = shutil.copytree(tiny_albert_path, tmp_path / "copy")
    cache = tmp_path / "shared-cache"
    fitted = AlbertVectorizer(str(original), dtype="float32", embedding_cache=str(cache))
    restored_bytes = pickle.dumps(fitted.fit(TEXTS))  # without the weights
    _resave_with_other_weights(original, seed=1)

    stale = pickle.loads(restored_bytes)
    with pytest.warns(UserWarning, match="differs from the one this vectorizer was fitted"):
        stale_vectors = stale.transform(TEXTS)  # the new weights' vectors, cached
    own_vectors = _vectors(copy)  # a correct estimator on the original checkpoint, no cache

    assert np.abs(stale_vectors - own_vectors).max() > 1e-3  # the weights did change
    np.testing.assert_array_equal(_vectors(copy, cache=str(cache)), own_vectors)
    np.testing.assert_array_equal(stale.transform(TEXTS), stale_vectors)  # its own entries
    assert len(list(cache.glob("**/data.bin"))) == 2  # one namespace per model that ran


def test_vectors_computed_with_other_numerics_are_never_read(
    tiny_albert_path, tmp_path, monkeypatch
):
    # Another sklearn_albert numerics version, another PyTorch, another kind of CPU or a CPU
    # switch turned off computes other bits: a shared cache folder keeps them apart.
    from sklearn_albert import _devices

    cache = tmp_path / "shared-cache"
    vectorizer = AlbertVectorizer(
        str(tiny_albert_path), dtype="float32", embedding_cache=str(cache)
    )
    vectorizer.fit(TEXTS).transform(TEXTS)
    base = vectorizer._cache_namespace()
    changes = {
        "numerics version": (_devices, "NUMERICS_VERSION", _devices.NUMERICS_VERSION + 1),
        "PyTorch": (torch, "__version__", "9.9.9"),
        "instruction set": (torch.backends.cpu, "get_cpu_capability", lambda: "AVX2"),
    }
    namespaces = {}
    for name, (owner, attribute, value) in changes.items():
        with monkeypatch.context() as patch:
            patch.setattr(owner, attribute, value)
            namespaces[name] = vectorizer._cache_namespace()
            vectorizer.transform(TEXTS)  # written under its own namespace
    with monkeypatch.context() as patch:
        patch.setenv("SKLEARN_ALBERT_CPU_BATCH_INVARIANT", "0")
        namespaces["switch off"] = vectorizer._cache_namespace()

    assert base not in namespaces.values()
    assert len(set(namespaces.values())) == len(namespaces)
    assert vectorizer._cache_namespace() == base  # the same process, the same namespace
    assert len(list(cache.glob("**/data.bin"))) == 1 + len(changes)


def test_distilbert_activations_get_their_own_fingerprint_and_cache(distilbert_pair, tmp_path):
    gelu, relu = distilbert_pair
    assert load_model(gelu, device=CPU).fingerprint != load_model(relu, device=CPU).fingerprint
    own = {path: _vectors(path) for path in distilbert_pair}
    assert np.abs(own[gelu] - own[relu]).max() > 1e-3  # the activation changes the output

    for path in distilbert_pair:  # one shared folder cache, gelu first
        np.testing.assert_array_equal(_vectors(path, cache=str(tmp_path / "cache")), own[path])


# ---------------------------------------------------------------------- what the fingerprint hashes


def test_config_entries_that_cannot_change_the_output_leave_the_fingerprint(
    tiny_albert_path, tmp_path
):
    relabelled = shutil.copytree(tiny_albert_path, tmp_path / "relabelled")
    config = json.loads((relabelled / "config.json").read_text())
    config.update(
        _name_or_path="somewhere/else",
        transformers_version="4.48.0",
        architectures=["AlbertForSequenceClassification"],
        id2label={"0": "negative", "1": "positive"},
        label2id={"negative": 0, "positive": 1},
        torch_dtype="float16",
        hidden_dropout_prob=0.3,
        initializer_range=0.5,
        output_hidden_states=True,
        layer_norm_eps=1e-12,  # ALBERT's default, spelt out
    )
    (relabelled / "config.json").write_text(json.dumps(config))

    assert load_model(relabelled, device=CPU).fingerprint == (
        load_model(tiny_albert_path, device=CPU).fingerprint
    )


def test_any_other_config_entry_changes_the_fingerprint(tiny_albert_path):
    loaded = load_model(tiny_albert_path, device=CPU)
    for change in ({"layer_norm_eps": 1e-5}, {"hidden_act": "relu"}, {"future_option": 3}):
        model = copy.deepcopy(loaded.model)  # its own config, the same weights
        assert fingerprint(model, loaded.tokenizer) == loaded.fingerprint
        for key, value in change.items():
            setattr(model.config, key, value)
        assert fingerprint(model, loaded.tokenizer) != loaded.fingerprint, change


def test_a_tokenizer_change_changes_the_fingerprint(distilbert_pair, tmp_path):
    from transformers import BertTokenizer

    gelu = load_model(distilbert_pair[0], device=CPU)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDPIECES) + "\n", encoding="utf-8")
    renamed = tmp_path / "renamed.txt"
    renamed.write_text("\n".join(WORDPIECES[:-1] + ["##ed"]) + "\n", encoding="utf-8")

    same = BertTokenizer(str(vocab))
    cased = BertTokenizer(str(vocab), do_lower_case=False)
    other_entry = BertTokenizer(str(renamed))
    assert fingerprint(gelu.model, same) == gelu.fingerprint
    assert fingerprint(gelu.model, cased) != gelu.fingerprint
    assert fingerprint(gelu.model, other_entry) != gelu.fingerprint


# ---------------------------------------------------------------------- weights restored in memory


def _pickled_with_weights(folder):
    """A fitted vectorizer of ``folder`` pickled with its weights, and its vectors."""
    options = dict(dtype="float32", embedding_cache="memory", store_weights_in_pickle=True)
    fitted = AlbertVectorizer(str(folder), **options).fit(TEXTS)
    return pickle.dumps(fitted), fitted.transform(TEXTS)


def test_estimators_restored_with_other_weights_under_one_name_keep_their_own(
    tiny_albert_path, tmp_path
):
    from sklearn.base import clone

    folder = shutil.copytree(tiny_albert_path, tmp_path / "checkpoint")
    first_bytes, first_vectors = _pickled_with_weights(folder)
    _resave_with_other_weights(folder, seed=2)
    second_bytes, second_vectors = _pickled_with_weights(folder)
    assert not np.allclose(first_vectors, second_vectors)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: neither shadows the other
        first_restored = pickle.loads(first_bytes)
        second_restored = pickle.loads(second_bytes)

    np.testing.assert_array_equal(first_restored.transform(TEXTS), first_vectors)
    np.testing.assert_array_equal(second_restored.transform(TEXTS), second_vectors)
    # Each one's clones (a grid search over it) fit with the weights it was restored with.
    np.testing.assert_array_equal(clone(first_restored).fit(TEXTS).transform(TEXTS), first_vectors)
    np.testing.assert_array_equal(
        clone(second_restored).fit(TEXTS).transform(TEXTS), second_vectors
    )


def test_a_fresh_vectorizer_reads_its_folder_while_older_weights_of_it_are_restored(
    tiny_albert_path, tmp_path
):
    from sklearn.base import clone

    folder = shutil.copytree(tiny_albert_path, tmp_path / "checkpoint")
    old_bytes, old_vectors = _pickled_with_weights(folder)
    _resave_with_other_weights(folder, seed=2)
    new_vectors = _vectors(folder)
    assert not np.allclose(old_vectors, new_vectors)

    restored = pickle.loads(old_bytes)  # alive while the fresh vectorizers below fit
    np.testing.assert_array_equal(restored.transform(TEXTS), old_vectors)
    fresh = AlbertVectorizer(str(folder), dtype="float32", embedding_cache="memory")
    np.testing.assert_array_equal(fresh.fit(TEXTS).transform(TEXTS), new_vectors)
    # A clone fits with the restored weights while it names their checkpoint...
    twin = clone(restored)
    np.testing.assert_array_equal(twin.fit(TEXTS).transform(TEXTS), old_vectors)
    # ... and with what a name holds once it names another checkpoint.
    other = shutil.copytree(tiny_albert_path, tmp_path / "other")
    _resave_with_other_weights(other, seed=3)
    renamed = clone(restored).set_params(model_name_or_path=str(other))
    other_vectors = renamed.fit(TEXTS).transform(TEXTS)
    np.testing.assert_array_equal(other_vectors, _vectors(other))
    assert not np.allclose(other_vectors, old_vectors)


# ---------------------------------------------------------------------- older fingerprints


def _fingerprint_of_0a2a18e(model, tokenizer):
    """sklearn_albert's fingerprint before the current scheme, copied from that version."""
    keys = (
        "model_type",
        "vocab_size",
        "embedding_size",
        "hidden_size",
        "num_hidden_layers",
        "num_hidden_groups",
        "inner_group_num",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "position_embedding_type",
        "pad_token_id",
    )
    digest = hashlib.blake2b(digest_size=16)
    config = model.config.to_dict()
    architecture = {key: config[key] for key in keys if key in config}
    digest.update(json.dumps(architecture, sort_keys=True, default=str).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
    return digest.hexdigest()


def _record_fingerprint(folder, value):
    """Rewrite the fingerprint a saved folder records (as an older version wrote it), and
    the file's own checksum with it."""

    def change(document):
        document["fitted"]["settings_"]["__settings__"]["__dict__"]["model_fingerprint"] = value

    edit_estimator_file(folder, change)


def test_a_folder_saved_with_the_old_fingerprint_loads_and_is_rekeyed(vectorizer, tmp_path):
    fitted = vectorizer.set_params(embedding_cache=None).fit(TEXTS)
    expected = fitted.transform(TEXTS)
    loaded = fitted._ensure_loaded()
    old = _fingerprint_of_0a2a18e(loaded.model, loaded.tokenizer)
    assert legacy_fingerprint(loaded.model, loaded.tokenizer) == old
    _record_fingerprint(fitted.save(tmp_path / "old"), old)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = AlbertVectorizer.load(tmp_path / "old")
        np.testing.assert_array_equal(restored.transform(TEXTS), expected)
    assert restored.model_fingerprint_ == fitted.model_fingerprint_ != old


def test_a_new_folder_whose_fingerprint_disagrees_is_refused(vectorizer, tmp_path):
    fitted = vectorizer.fit(TEXTS)
    _record_fingerprint(fitted.save(tmp_path / "new"), "fp2-" + "0" * 32)
    with pytest.raises(ValueError, match="fingerprint differs from the one the estimator"):
        AlbertVectorizer.load(tmp_path / "new")


def test_a_pickle_with_the_old_fingerprint_loads_without_a_warning(vectorizer):
    fitted = vectorizer.set_params(embedding_cache=None).fit(TEXTS)
    expected = fitted.transform(TEXTS)
    loaded = fitted._ensure_loaded()
    fitted.settings_ = replace(
        fitted.settings_, model_fingerprint=legacy_fingerprint(loaded.model, loaded.tokenizer)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(pickle.dumps(fitted))  # without the weights, as by default
        np.testing.assert_array_equal(restored.transform(TEXTS), expected)


def test_a_tokenizers_stored_truncation_and_padding_leave_the_fingerprint(tmp_path):
    # all-MiniLM-L6-v2's tokenizer.json stores truncation (128) and padding; transformers
    # sets both afresh on every call, and save_pretrained drops them: a saved folder must
    # still load as the checkpoint it was fitted on.
    from conftest import minilm_path

    vectorizer = AlbertVectorizer(str(minilm_path()), dtype="float32").fit(TEXTS)
    vectorizer.save(tmp_path / "saved")
    restored = AlbertVectorizer.load(tmp_path / "saved")

    assert restored.transform(TEXTS).tobytes() == vectorizer.transform(TEXTS).tobytes()
    assert restored.describe()["fingerprint"] == vectorizer.describe()["fingerprint"]
