"""Static int8 (sklearn_albert._cpu.int8): batch invariance, persistence, identity, refusal.

The encoders here are calibrated for real (OpenVINO + NNCF, the ``int8`` extra) on the tiny
random ALBERT and on the real MiniLM; nothing is mocked. Assertions are on outputs, never
on wall time.
"""

import functools
import json
import pickle
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import minilm_path

pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")

from sklearn_albert._batching import collate, plan_batches  # noqa: E402
from sklearn_albert._cpu.int8 import (  # noqa: E402
    KEY_MULTIPLE,
    MAX_CALIBRATION_TEXTS,
    StaticInt8Encoder,
    builtin_calibration_texts,
    calibrate_int8,
    check_int8_supported,
    select_calibration_ids,
)
from sklearn_albert._devices import numerics_identity  # noqa: E402

EVALUATION_TEXTS = [
    "The committee postponed its decision until the next session.",
    "A tiny kitten slept in the laundry basket all afternoon.",
    "Is there a pharmacy open near the station tonight?",
    "Profits fell by a fifth after the factory closed for repairs.",
    "What a dull, lifeless film.",
    "Bring a warm coat; the wind on the ridge is fierce even in May.",
    "The algorithm sorts the list in place and returns nothing.",
    "We danced until the musicians packed up their instruments.",
    "Yes.",
    "The ancient walls of the town were rebuilt stone by stone after the earthquake, "
    "and the work took the villagers almost twenty years to finish.",
    "Our hotel room overlooked a car park, and the air conditioning rattled all night.",
    "Read the instructions twice before you assemble the shelves.",
]


def _model_and_tokenizer(folder):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(folder)).eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


def _ids(tokenizer, texts):
    max_length = min(128, tokenizer.model_max_length)
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def _pad_id(tokenizer):
    return tokenizer.pad_token_id or 0


@pytest.fixture(scope="module")
def tiny(tiny_albert_path):
    """The tiny ALBERT, its tokenizer and an encoder calibrated on the built-in sample."""
    model, tokenizer = _model_and_tokenizer(tiny_albert_path)
    encoder = calibrate_int8(
        model, _ids(tokenizer, builtin_calibration_texts()), pad_id=_pad_id(tokenizer)
    )
    return model, tokenizer, encoder


def _encode(encoder, ids, pad_id, *, batch_size, order=None):
    """Every hidden state and the pooler output per text, batched as the engine batches."""
    order = np.arange(len(ids)) if order is None else np.asarray(order)
    shuffled = [ids[i] for i in order]
    rows = [None] * len(ids)
    batches = plan_batches(
        [len(row) for row in shuffled], batch_size=batch_size, max_tokens=batch_size * 512
    )
    for batch in batches:
        input_ids, attention_mask = collate(shuffled, batch, pad_id)
        output = encoder(input_ids, attention_mask, output_hidden_states=True)
        for position, index in enumerate(batch):
            length = len(shuffled[index])
            states = np.stack([h[position, :length].numpy() for h in output.hidden_states])
            pooler = output.pooler_output[position].numpy()
            rows[order[index]] = (states, pooler)
    return rows


def _max_difference(left, right):
    return max(
        max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max()) for a, b in zip(left, right)
    )


def test_output_is_a_drop_in_for_the_hugging_face_forward(tiny):
    import torch

    model, tokenizer, encoder = tiny
    input_ids, attention_mask = collate(_ids(tokenizer, EVALUATION_TEXTS[:3]), [0, 1, 2], 0)
    output = encoder(input_ids, attention_mask, output_hidden_states=True)
    assert len(output.hidden_states) == model.config.num_hidden_layers + 1
    for state in output.hidden_states:
        assert state.dtype == torch.float32
        assert tuple(state.shape) == (3, input_ids.shape[1], model.config.hidden_size)
    assert output.pooler_output.dtype == torch.float32
    assert tuple(output.pooler_output.shape) == (3, model.config.hidden_size)
    assert encoder.n_hidden_states == model.config.num_hidden_layers + 1


def test_transform_is_batch_invariant_and_order_invariant(tiny):
    _, tokenizer, encoder = tiny
    texts = EVALUATION_TEXTS * 6  # 72 texts: batches of 64 hold many lengths
    ids = _ids(tokenizer, texts)
    pad_id = _pad_id(tokenizer)
    one = _encode(encoder, ids, pad_id, batch_size=1)
    for batch_size in (7, 64):
        assert _max_difference(one, _encode(encoder, ids, pad_id, batch_size=batch_size)) <= 1e-4
    shuffled = np.random.default_rng(0).permutation(len(ids))
    assert _max_difference(one, _encode(encoder, ids, pad_id, batch_size=7, order=shuffled)) <= (
        1e-4
    )


def test_pooled_matches_pooling_the_hidden_states_and_is_batch_invariant(tiny):
    import torch

    from sklearn_albert._pooling import pool_hidden_states

    _, tokenizer, encoder = tiny
    ids = _ids(tokenizer, EVALUATION_TEXTS * 3)
    pad_id = _pad_id(tokenizer)
    input_ids, attention_mask = collate(ids, list(range(len(ids))), pad_id)
    summaries, pooler = encoder.pooled(input_ids, attention_mask)
    output = encoder(input_ids, attention_mask)
    expected = pool_hidden_states(output.hidden_states, attention_mask)
    assert summaries.shape == expected.shape
    assert torch.allclose(summaries, expected, atol=1e-5, rtol=0)
    assert torch.equal(pooler, output.pooler_output)
    rows = {}
    for batch_size in (1, 7, 64):
        rows[batch_size] = np.zeros(tuple(summaries.shape), dtype=np.float32)
        for batch in plan_batches([len(r) for r in ids], batch_size=batch_size, max_tokens=8192):
            batch_ids, batch_mask = collate(ids, batch, pad_id)
            rows[batch_size][batch] = encoder.pooled(batch_ids, batch_mask)[0].numpy()
    assert np.abs(rows[1] - rows[7]).max() <= 1e-4
    assert np.abs(rows[1] - rows[64]).max() <= 1e-4


def test_callers_side_by_side_each_take_a_stream_and_get_the_same_rows(tiny):
    """The engine's workers call one encoder at once: each batch runs on a free stream."""
    import threading

    from sklearn_albert._cpu.int8 import StaticInt8Encoder

    _, tokenizer, calibrated = tiny
    encoder = StaticInt8Encoder.from_files(calibrated.to_files(), threads=2, streams=2)
    ids = _ids(tokenizer, EVALUATION_TEXTS * 4)
    pad_id = _pad_id(tokenizer)
    batches = plan_batches([len(r) for r in ids], batch_size=8, max_tokens=8192)
    tensors = [collate(ids, batch, pad_id) for batch in batches]
    alone = [encoder.pooled(*pair)[0].numpy() for pair in tensors]
    side_by_side = [None] * len(tensors)
    start = threading.Barrier(2)

    def worker(first):
        start.wait()
        for position in range(first, len(tensors), 2):
            side_by_side[position] = encoder.pooled(*tensors[position])[0].numpy()

    threads = [threading.Thread(target=worker, args=(first,)) for first in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, expected in zip(side_by_side, alone):
        np.testing.assert_array_equal(got, expected)
    assert encoder._variant("pooled")[1].qsize() == 2  # every stream handed back


def test_padding_never_reaches_a_real_token(tiny):
    import torch

    _, tokenizer, encoder = tiny
    row = _ids(tokenizer, ["A short text."])[0]
    alone = encoder(torch.tensor([row]), torch.ones((1, len(row)), dtype=torch.long))
    for extra, filler in ((1, 0), (KEY_MULTIPLE + 3, 5), (40, 7)):
        ids = torch.tensor([row + [filler] * extra])
        mask = torch.tensor([[1] * len(row) + [0] * extra])
        padded = encoder(ids, mask)
        for left, right in zip(alone.hidden_states, padded.hidden_states):
            assert torch.equal(left[0], right[0, : len(row)])
        assert torch.equal(alone.pooler_output, padded.pooler_output)


def test_every_attention_of_the_compiled_graph_gets_its_keys_padded(tiny):
    import openvino as ov

    from sklearn_albert._cpu.int8 import _with_keys_padded

    model, _, encoder = tiny
    files = encoder.to_files()
    graph = ov.Core().read_model(files["model.xml"], files["model.bin"])
    n_attentions = sum(
        op.get_type_name() == "ScaledDotProductAttention" for op in graph.get_ordered_ops()
    )

    assert n_attentions == model.config.num_hidden_layers
    assert _with_keys_padded(graph, KEY_MULTIPLE) == n_attentions
    # A width that is not a multiple of KEY_MULTIPLE, alone and beside a longer text:
    # the same bits (what makes transform batch-invariant).
    tokenizer_free = [[2, 40, 41, 42, 3], [2, *range(50, 50 + KEY_MULTIPLE + 6), 3]]
    alone = _encode(encoder, tokenizer_free[:1], 0, batch_size=1)[0]
    together = _encode(encoder, tokenizer_free, 0, batch_size=2)[0]
    np.testing.assert_array_equal(alone[0], together[0])
    np.testing.assert_array_equal(alone[1], together[1])


def test_each_application_of_the_shared_layer_has_its_own_ranges(tiny):
    """ALBERT reuses one layer's weights; the activation ranges must not be shared."""
    import openvino as ov

    model, _, encoder = tiny
    assert model.config.num_hidden_groups == 1  # one set of weights, applied 3 times
    files = encoder.to_files()
    graph = ov.Core().read_model(files["model.xml"], files["model.bin"])
    activation_ranges = set()
    for op in graph.get_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        source = op.input_value(0).get_node()
        if source.get_type_name() == "Constant":
            continue  # a weight quantizer
        low, high = (
            tuple(np.round(op.input_value(i).get_node().get_data().ravel(), 6)) for i in (1, 2)
        )
        activation_ranges.add((low, high))
    # At least 4 quantized matmul inputs per application (attention input, its output
    # projection, the two feed-forward matmuls), each application with its own range.
    assert len(activation_ranges) >= 4 * model.config.num_hidden_layers


def test_files_round_trip_keeps_the_calibration(tiny):
    _, tokenizer, encoder = tiny
    ids = _ids(tokenizer, EVALUATION_TEXTS)
    pad_id = _pad_id(tokenizer)
    files = encoder.to_files()
    assert set(files) == {"model.xml", "model.bin", "int8.json"}
    assert all(isinstance(data, bytes) for data in files.values())
    meta = json.loads(files["int8.json"])
    assert meta["n_calibration_texts"] == encoder.n_calibration_texts
    restored = StaticInt8Encoder.from_files(files)
    assert restored.calibration_id == encoder.calibration_id
    assert restored.n_calibration_texts == encoder.n_calibration_texts
    assert restored.calibration_seconds == encoder.calibration_seconds
    before = _encode(encoder, ids, pad_id, batch_size=8)
    assert _max_difference(before, _encode(restored, ids, pad_id, batch_size=8)) == 0
    unpickled = pickle.loads(pickle.dumps(encoder))
    assert unpickled.calibration_id == encoder.calibration_id
    assert _max_difference(before, _encode(unpickled, ids, pad_id, batch_size=8)) == 0


def test_from_files_names_what_is_missing(tiny):
    files = dict(tiny[2].to_files())
    del files["model.bin"]
    with pytest.raises(ValueError, match="model.bin missing"):
        StaticInt8Encoder.from_files(files)


def test_calibration_facts_and_id(tiny):
    model, tokenizer, encoder = tiny
    ids = _ids(tokenizer, builtin_calibration_texts())
    # Distinct after cropping to the tiny model's short maximum length.
    assert encoder.n_calibration_texts == len({tuple(row) for row in ids})
    assert encoder.calibration_seconds > 0
    assert len(encoder.calibration_id) == 64
    again = calibrate_int8(model, ids, pad_id=_pad_id(tokenizer))
    assert again.calibration_id == encoder.calibration_id
    other = calibrate_int8(model, ids[:40], pad_id=_pad_id(tokenizer))
    assert other.n_calibration_texts == 40
    assert other.calibration_id != encoder.calibration_id


def test_calibration_sample_is_bounded_distinct_and_seeded():
    ids = [[1, 2 + i % 700, 3] for i in range(2000)] + [[]]
    selected = select_calibration_ids(ids)
    assert len(selected) == MAX_CALIBRATION_TEXTS
    assert len({tuple(row) for row in selected}) == len(selected)
    assert selected == select_calibration_ids(ids)
    assert select_calibration_ids([[5, 6], [5, 6], [], [7]]) == [[5, 6], [7]]


def test_builtin_calibration_texts_are_varied():
    texts = builtin_calibration_texts()
    assert 200 <= len(texts) == len(set(texts))
    lengths = [len(text.split()) for text in texts]
    assert min(lengths) <= 3 and max(lengths) >= 30
    assert texts == builtin_calibration_texts()


def test_empty_or_uncropped_calibration_is_refused(tiny):
    model = tiny[0]
    with pytest.raises(ValueError, match="calibration_ids holds no text"):
        calibrate_int8(model, [[], []], pad_id=0)
    too_long = [[5] * (model.config.max_position_embeddings + 1)]
    with pytest.raises(ValueError, match="longer than the model's"):
        calibrate_int8(model, too_long, pad_id=0)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_int8_is_refused_off_cpu(device):
    import torch

    for value in (device, torch.device(device)):
        with pytest.raises(ValueError, match=r"dtype='int8'.*" + device.split(":")[0]) as info:
            check_int8_supported(value)
        assert "device='cpu'" in str(info.value) and "float16" in str(info.value)


def test_missing_runtime_names_the_extra(monkeypatch):
    check_int8_supported("cpu")
    # A None entry in sys.modules makes the package unimportable, as if not installed.
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"nncf.*sklearn-albert\[int8\]"):
        check_int8_supported("cpu")
    check_int8_supported("cpu", calibrate=False)  # a loaded encoder needs OpenVINO only
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"openvino.*sklearn-albert\[int8\]"):
        check_int8_supported("cpu", calibrate=False)


def test_minilm_int8_stays_close_to_float32():
    import torch

    model, tokenizer = _model_and_tokenizer(minilm_path())
    pad_id = _pad_id(tokenizer)
    encoder = calibrate_int8(model, _ids(tokenizer, builtin_calibration_texts()), pad_id=pad_id)
    ids = _ids(tokenizer, EVALUATION_TEXTS)
    input_ids, attention_mask = collate(ids, list(range(len(ids))), pad_id)
    with torch.inference_mode():
        exact = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    quantized = encoder(input_ids, attention_mask).hidden_states[-1]
    weights = attention_mask[..., None].float()
    exact, quantized = ((h * weights).sum(1) / weights.sum(1) for h in (exact, quantized))
    cosine = torch.nn.functional.cosine_similarity(exact, quantized, dim=1)
    assert float(cosine.mean()) >= 0.99
    assert float(cosine.min()) >= 0.95


# ---------------------------------------------------------------------- through the vectorizer


@pytest.fixture(scope="module")
def int8_vectorizer(tiny_albert_path):
    from _tiny_model import generated_sentences

    from sklearn_albert import AlbertVectorizer

    texts = generated_sentences(80, seed=31)
    return AlbertVectorizer(str(tiny_albert_path), dtype="int8").fit(texts), texts


def test_fit_calibrates_on_its_texts_and_says_how(int8_vectorizer):
    vect, texts = int8_vectorizer
    assert vect.dtype_ == "int8"
    assert vect.int8_calibration_["source"] == "fit texts"
    assert vect.int8_calibration_["n_texts"] == len(set(texts))
    assert vect.int8_calibration_["seconds"] > 0
    assert vect.settings_.calibration_id


def test_vectorizer_int8_is_batch_invariant(int8_vectorizer):
    from sklearn.base import clone

    vect, texts = int8_vectorizer
    fresh = {}
    for batch_size in (1, 7, 64):
        other = clone(vect).set_params(batch_size=batch_size, embedding_cache=None).fit(texts)
        # Fitted on the same texts, a clone reuses the calibration (a grid search's
        # candidates calibrate once per fold).
        assert other._int8_encoder is vect._int8_encoder
        fresh[batch_size] = other.transform(texts)
    shuffled = np.random.default_rng(0).permutation(len(texts))
    reordered = other.transform([texts[i] for i in shuffled])
    for batch_size in (7, 64):
        assert np.abs(fresh[batch_size] - fresh[1]).max() <= 1e-4
    assert np.abs(reordered - fresh[64][shuffled]).max() <= 1e-4


def test_the_calibration_is_part_of_the_cache_key(int8_vectorizer, tiny_albert_path):
    from sklearn_albert import AlbertVectorizer

    vect, texts = int8_vectorizer
    other = AlbertVectorizer(str(tiny_albert_path), dtype="int8").fit(texts[:40])
    assert other.settings_.calibration_id != vect.settings_.calibration_id
    assert other._cache_namespace() != vect._cache_namespace()
    # The namespace names the calibrated encoder that runs and the tokenizer in use.
    loaded, encoder = vect._ensure_loaded(), vect._int8_encoder
    retokenized = replace(loaded, tokenizer_fingerprint="another tokenizer")
    namespace = functools.partial(
        vect.settings_.cache_namespace,
        numerics=numerics_identity("cpu", "int8"),
        calibration_id=encoder.calibration_id,
    )
    assert namespace(loaded) == vect._cache_namespace()
    assert namespace(retokenized) != vect._cache_namespace()
    assert "/openvino-" in numerics_identity("cpu", "int8")


def test_a_fit_on_one_text_calibrates_on_the_builtin_sample(tiny_albert_path):
    from sklearn_albert import AlbertVectorizer

    with pytest.warns(UserWarning, match="calibrated on the built-in sample"):
        vect = AlbertVectorizer(str(tiny_albert_path), dtype="int8").fit(["x"])
    assert vect.int8_calibration_["source"] == "built-in sample"
    assert np.isfinite(vect.transform(["x", "a film"])).all()


def test_pickle_and_save_load_keep_the_calibration(int8_vectorizer, tmp_path):
    import pickle

    from sklearn_albert import AlbertVectorizer

    vect, texts = int8_vectorizer
    expected = vect.set_params(embedding_cache=None).transform(texts)
    restored = pickle.loads(pickle.dumps(vect))
    loaded = AlbertVectorizer.load(vect.save(tmp_path / "int8"))
    for other in (restored, loaded):
        assert other.settings_.calibration_id == vect.settings_.calibration_id
        np.testing.assert_allclose(other.transform(texts), expected, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "int8" / "fitted").iterdir()) == sorted(
        vect._int8_encoder.to_files()
    )
    vect.set_params(embedding_cache="memory")


def test_token_vectors_run_the_calibrated_encoder(int8_vectorizer, monkeypatch):
    from sklearn_albert._cpu.int8 import StaticInt8Encoder

    vect, texts = int8_vectorizer
    calls = []
    real_call = StaticInt8Encoder.__call__

    def counting_call(self, *args, **kwargs):
        calls.append(self)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(StaticInt8Encoder, "__call__", counting_call)
    records = vect.transform_tokens(texts[:3])
    assert calls and all(encoder is vect._int8_encoder for encoder in calls)
    assert all(np.isfinite(record.embeddings).all() for record in records)


# ---------------------------------------------------------------------- silence


def _without_memo_hits(seed):
    """Texts no other test calibrates on, so that calibration really runs here."""
    from _tiny_model import generated_sentences

    return generated_sentences(40, seed=seed)


def test_int8_fit_prints_nothing_on_stdout_and_verbose_sends_calibration_bars_to_stderr(
    tiny_albert_path, capfd
):
    from sklearn_albert import AlbertVectorizer

    texts = _without_memo_hits(seed=47)
    capfd.readouterr()
    AlbertVectorizer(str(tiny_albert_path), dtype="int8").fit(texts).transform(texts[:3])
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""

    texts = _without_memo_hits(seed=48)
    verbose = AlbertVectorizer(str(tiny_albert_path), dtype="int8", verbose=True)
    verbose.fit(texts)
    shown = capfd.readouterr()
    assert shown.out == ""
    assert "Statistics collection" in shown.err  # NNCF's own progress bar, on stderr


def test_a_fresh_process_fitting_and_embedding_with_default_settings_prints_nothing(
    tiny_albert_path, tmp_path
):
    """Model loading, int8 calibration and encoding, in a process where nothing is warm."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).parents[1]
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from sklearn_albert import AlbertVectorizer\n"
        "texts = [f'text number {i} of the silence check' for i in range(40)]\n"
        "for dtype in ('float32', 'int8'):\n"
        f"    vect = AlbertVectorizer({str(tiny_albert_path)!r}, dtype=dtype)\n"
        "    vect.fit(texts).transform(texts); vect.fit_transform(texts[:5])\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
