"""Token-level embeddings: AlbertVectorizer.transform_tokens."""

import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_albert import AlbertVectorizer, TokenEmbeddings

TEXTS = [
    "the film was brilliant",
    "a dull story and a messy plot , but the music is lovely",
    "",
    "Hello, World! café",
]


@pytest.fixture
def fitted(vectorizer):
    return vectorizer.fit(TEXTS)


def reference_hidden_states(path, tokenizer, text):
    """What transformers itself returns for ``text``, special tokens included."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path).eval()
    encoded = tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        output = model(**encoded, output_hidden_states=True)
    return [state[0].numpy() for state in output.hidden_states]


def test_one_record_per_text_in_input_order(fitted):
    records = fitted.transform_tokens(TEXTS)
    assert [type(record) for record in records] == [TokenEmbeddings] * len(TEXTS)
    single = [fitted.transform_tokens([text])[0] for text in TEXTS]
    for record, alone in zip(records, single):
        assert record.tokens == alone.tokens
        np.testing.assert_allclose(record.embeddings, alone.embeddings, atol=1e-4)


def test_records_hold_tokens_offsets_and_float32_vectors(fitted):
    record = fitted.transform_tokens(["the film was brilliant"])[0]
    assert len(record) == len(record.tokens) == len(record.offsets) == len(record.embeddings)
    assert record.embeddings.dtype == np.float32
    assert record.embeddings.shape[1] == fitted.hidden_size_
    assert record.offsets.dtype == np.int64 and record.offsets.shape == (len(record), 2)
    assert record.truncated is False


def test_offsets_point_into_the_text(fitted):
    text = "a dull story and a messy plot , but the music is lovely"
    record = fitted.transform_tokens([text])[0]
    spelled = [
        (token, text[start:end]) for token, (start, end) in zip(record.tokens, record.offsets)
    ]
    # SentencePiece marks a word start with "▁", sometimes as a piece of its own; that
    # bare marker points at the character it precedes.
    assert all(token.lstrip("▁") == span for token, span in spelled if token != "▁")
    assert "".join(span for token, span in spelled if token != "▁") == text.replace(" ", "")


def test_token_vectors_equal_the_hidden_states_transformers_returns(fitted, tiny_albert_path):
    text = "a dull story and a messy plot"
    record = fitted.transform_tokens([text])[0]
    tokenizer = fitted._ensure_loaded().tokenizer
    last_layer = reference_hidden_states(tiny_albert_path, tokenizer, text)[-1]
    # The reference has [CLS] first and [SEP] last; records hold the content only.
    np.testing.assert_allclose(record.embeddings, last_layer[1:-1], atol=1e-5)


def test_layers_are_averaged_or_concatenated_like_transform(vectorizer, tiny_albert_path):
    text = "the music is lovely"
    averaged = vectorizer.set_params(layers=(0, -1)).fit([text]).transform_tokens([text])[0]
    states = reference_hidden_states(tiny_albert_path, vectorizer._ensure_loaded().tokenizer, text)
    np.testing.assert_allclose(
        averaged.embeddings, (states[0][1:-1] + states[-1][1:-1]) / 2, atol=1e-5
    )
    concatenated = vectorizer.set_params(layer_aggregation="concat").fit([text])
    concatenated = concatenated.transform_tokens([text])[0]
    assert concatenated.embeddings.shape == (len(averaged), 2 * vectorizer.hidden_size_)
    np.testing.assert_allclose(
        concatenated.embeddings[:, -vectorizer.hidden_size_ :], states[-1][1:-1], atol=1e-5
    )


def test_an_embedding_does_not_depend_on_its_batch(vectorizer):
    texts = TEXTS * 3
    one = vectorizer.set_params(batch_size=1).fit(texts).transform_tokens(texts)
    many = vectorizer.set_params(batch_size=64).transform_tokens(texts[::-1])[::-1]
    for a, b in zip(one, many):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4)


def test_word_level_merges_the_pieces_of_each_word(fitted):
    text = "Hello, World! the filmmaker's café"
    pieces = fitted.transform_tokens([text])[0]
    words = fitted.transform_tokens([text], word_level=True)[0]
    # Words are the whitespace-separated units of the text.
    assert words.tokens == text.split()
    assert [text[start:end] for start, end in words.offsets] == words.tokens
    assert len(pieces) > len(words)
    first_word = [i for i, (start, end) in enumerate(pieces.offsets) if end <= 6]
    np.testing.assert_allclose(
        words.embeddings[0], pieces.embeddings[first_word].mean(axis=0), atol=1e-6
    )


@pytest.mark.parametrize(
    "how, reduce",
    [
        ("first", lambda rows: rows[0]),
        ("last", lambda rows: rows[-1]),
        ("max", lambda rows: rows.max(axis=0)),
    ],
)
def test_word_aggregation_picks_how_pieces_combine(fitted, how, reduce):
    text = "Hello, World!"
    pieces = fitted.transform_tokens([text])[0]
    words = fitted.transform_tokens([text], word_level=True, word_aggregation=how)[0]
    first_word = pieces.embeddings[pieces.offsets[:, 1] <= 6]
    np.testing.assert_allclose(words.embeddings[0], reduce(first_word), atol=1e-6)


def test_normalize_gives_unit_token_vectors(vectorizer):
    record = vectorizer.set_params(normalize=True).fit(TEXTS).transform_tokens(TEXTS[:1])[0]
    np.testing.assert_allclose(np.linalg.norm(record.embeddings, axis=1), 1.0, atol=1e-5)


def test_an_empty_text_has_no_tokens(fitted):
    record = fitted.transform_tokens([""], word_level=True)[0]
    assert record.tokens == [] and record.embeddings.shape == (0, fitted.hidden_size_)
    assert record.offsets.shape == (0, 2)


def test_long_texts_are_truncated_with_a_warning(vectorizer):
    long_text = " ".join(["the film was brilliant"] * 30)
    vectorizer.fit([long_text])  # the model's limit, 64: a max_length set on purpose is silent
    with pytest.warns(UserWarning, match=re.escape("1 of 2 texts are longer than max_length_=64")):
        records = vectorizer.transform_tokens([long_text, "good"])
    assert records[0].truncated and not records[1].truncated
    assert len(records[0]) == 64 - 2  # [CLS] and [SEP] take two of the 64


def test_reduced_precision_still_returns_float32(vectorizer):
    exact = clone(vectorizer).fit(TEXTS).transform_tokens(TEXTS[:1])[0]
    record = vectorizer.set_params(dtype="bfloat16").fit(TEXTS).transform_tokens(TEXTS[:1])[0]
    assert record.embeddings.dtype == np.float32 and np.isfinite(record.embeddings).all()
    assert record.tokens == exact.tokens
    assert not np.array_equal(record.embeddings, exact.embeddings)  # it ran in bfloat16
    cosine = (record.embeddings * exact.embeddings).sum(axis=1)
    cosine /= np.linalg.norm(record.embeddings, axis=1) * np.linalg.norm(exact.embeddings, axis=1)
    assert cosine.min() > 0.999  # 0.99995 measured


def test_transform_tokens_before_fit_raises_not_fitted(vectorizer):
    with pytest.raises(NotFittedError):
        vectorizer.transform_tokens(TEXTS)


def test_a_bare_string_is_refused_like_transform(fitted):
    with pytest.raises(ValueError, match=re.escape("Iterable over raw text documents expected")):
        fitted.transform_tokens("the film")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"word_level": "yes"}, "Got word_level='yes' but expected True or False."),
        (
            {"word_level": True, "word_aggregation": "median"},
            "Got word_aggregation='median' but expected one of ('mean', 'first', 'last', 'max').",
        ),
    ],
)
def test_invalid_options_name_the_parameter(fitted, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fitted.transform_tokens(TEXTS, **options)


def test_words_are_the_same_whatever_the_tokenizer():
    from conftest import minilm_path

    vectorizer = AlbertVectorizer(str(minilm_path()), dtype="float32").fit(["x"])
    record = vectorizer.transform_tokens(["Hello, filmmakers! words."], word_level=True)[0]
    assert record.tokens == ["Hello,", "filmmakers!", "words."]


def test_pre_split_tokens_joined_by_spaces_get_one_vector_each(fitted):
    tokens = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    record = fitted.transform_tokens([" ".join(tokens)], word_level=True, word_aggregation="first")[
        0
    ]
    assert record.tokens == tokens and len(record.embeddings) == len(tokens)


@pytest.mark.parametrize(
    "text, offsets, expected",
    [
        # SentencePiece's bare "▁" shares the span of the character it precedes.
        ("ab cd", [(0, 1), (0, 1), (1, 2), (3, 5)], [0, 0, 0, 1]),
        # Touching pieces form one word; whitespace starts a new one.
        ("un believable", [(0, 2), (3, 8), (8, 13)], [0, 1, 1]),
        # Chinese characters and full-width punctuation are words of their own.
        ("房间，WiFi好", [(0, 1), (1, 2), (2, 3), (3, 7), (7, 8)], [0, 1, 2, 3, 4]),
        # A piece spanning several characters stays one word.
        ("这个 ok", [(0, 2), (3, 5)], [0, 1]),
        ("", [], []),
    ],
)
def test_words_come_from_character_offsets(text, offsets, expected):
    from sklearn_albert._tokens import word_ids_from_offsets

    assert word_ids_from_offsets(text, offsets) == expected


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_token_vectors_run_the_model_transform_runs(vectorizer, dtype):
    texts = ["the music is lovely", "a dull film"]
    fitted = vectorizer.set_params(dtype=dtype, embedding_cache=None).fit(texts)
    runner = fitted._runner()
    assert runner is not fitted._ensure_loaded().model  # the packed inference copy
    calls = []
    handle = runner.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(1), with_kwargs=True
    )
    try:
        records = fitted.transform_tokens(texts)
        n_token_calls = len(calls)
        fitted.transform(texts)
    finally:
        handle.remove()
    assert n_token_calls >= 1 and len(calls) > n_token_calls  # both ran this very module
    assert all(np.isfinite(record.embeddings).all() for record in records)
