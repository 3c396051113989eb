"""Loading checkpoints: fingerprints that mean the content, and loads that never queue."""

import json
import shutil
import threading

import pytest
import torch

import sklearn_albert._loading as loading
from sklearn_albert._loading import fingerprint, load_model

CPU = torch.device("cpu")


def test_fingerprint_ignores_config_entries_a_newer_transformers_adds(tiny_albert_path, tmp_path):
    upgraded = shutil.copytree(tiny_albert_path, tmp_path / "upgraded")
    config = json.loads((upgraded / "config.json").read_text())
    # A release that writes its version and spells out defaults (entries it may have added).
    config.update(transformers_version="99.0.0", position_embedding_type="absolute")
    config.update(is_decoder=False, chunk_size_feed_forward=0, _attn_implementation_autoset=True)
    (upgraded / "config.json").write_text(json.dumps(config))

    assert load_model(upgraded, device=CPU).fingerprint == (
        load_model(tiny_albert_path, device=CPU).fingerprint
    )


def test_fingerprint_changes_with_the_architecture_and_the_weights(tiny_albert_path):
    loaded = load_model(tiny_albert_path, device=CPU)
    model = type(loaded.model)(loaded.model.config)  # same config, other random weights
    assert fingerprint(model, loaded.tokenizer) != loaded.fingerprint


def test_slow_tokenizers_are_fingerprinted_by_their_options_not_only_their_vocabulary(
    tiny_albert_path, tmp_path
):
    import transformers.models.bert as bert

    # The Python (slow) WordPiece tokenizer: BertTokenizerLegacy in transformers 5,
    # BertTokenizer itself in 4.x.
    BertTokenizer = getattr(bert, "BertTokenizerLegacy", None) or bert.BertTokenizer
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film", "Film"]))
    model = load_model(tiny_albert_path, device=CPU).model
    lower = BertTokenizer(str(vocab), do_lower_case=True)
    cased = BertTokenizer(str(vocab), do_lower_case=False)
    assert not hasattr(lower, "backend_tokenizer")  # the slow path is the one under test

    assert fingerprint(model, lower) != fingerprint(model, cased)
    assert fingerprint(model, lower) == fingerprint(model, BertTokenizer(str(vocab)))


def test_a_slow_load_does_not_hold_up_other_checkpoints(tiny_albert_path, tmp_path, monkeypatch):
    ready = load_model(tiny_albert_path, device=CPU)  # in the registry
    slow_folder = shutil.copytree(tiny_albert_path, tmp_path / "slow")
    entered, release = threading.Event(), threading.Event()
    real_load_encoder = loading._load_encoder

    def slow_load_encoder(source, options):
        if source == str(slow_folder.resolve()):
            entered.set()
            release.wait(60)  # a download that takes its time
        return real_load_encoder(source, options)

    monkeypatch.setattr(loading, "_load_encoder", slow_load_encoder)
    slow = threading.Thread(target=load_model, args=(slow_folder,), kwargs={"device": CPU})
    slow.start()
    try:
        assert entered.wait(30)
        found = []
        other = threading.Thread(
            target=lambda: found.append(load_model(tiny_albert_path, device=CPU))
        )
        other.start()
        other.join(timeout=30)
        assert not other.is_alive(), "a registry hit waited for another checkpoint's load"
        assert found == [ready] and slow.is_alive()
    finally:
        release.set()
        slow.join(timeout=60)


def test_concurrent_loads_of_one_checkpoint_load_it_once(tiny_albert_path, tmp_path, monkeypatch):
    folder = shutil.copytree(tiny_albert_path, tmp_path / "once")
    calls = []
    real_load_encoder = loading._load_encoder

    def counting_load_encoder(source, options):
        calls.append(source)
        return real_load_encoder(source, options)

    monkeypatch.setattr(loading, "_load_encoder", counting_load_encoder)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_model(folder, device=CPU)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(calls) == 1 and len({id(result) for result in results}) == 1


@pytest.mark.parametrize("name", ["in-memory:0123456789abcdef"])
def test_a_vanished_in_memory_model_says_how_to_keep_it(name):
    with pytest.raises(OSError, match="lived only in memory"):
        load_model(name, device=CPU)
