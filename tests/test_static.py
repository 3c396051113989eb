"""Static embeddings: AlbertVectorizer.static_embeddings."""

import re

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from sklearn_albert import StaticEmbeddings


@pytest.fixture
def fitted(vectorizer):
    return vectorizer.fit(["warm up"])


def test_the_whole_table_is_the_input_embedding_matrix(fitted):
    vocabulary, table = fitted.static_embeddings()
    weight = fitted._ensure_loaded().model.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(table, weight)
    assert table.dtype == np.float32 and len(vocabulary) == len(table)


def test_albert_tables_are_factorised_to_the_embedding_size(fitted):
    table = fitted.static_embeddings().vectors
    config = fitted._ensure_loaded().model.config
    assert table.shape == (config.vocab_size, config.embedding_size)
    assert config.embedding_size != fitted.hidden_size_


def test_the_vocabulary_lists_tokens_in_id_order(fitted):
    vocabulary = fitted.static_embeddings().vocabulary
    tokenizer = fitted._ensure_loaded().tokenizer
    for token in ("[CLS]", "[SEP]", "<pad>", "▁film"):
        assert vocabulary[tokenizer.convert_tokens_to_ids(token)] == token


def test_a_word_gets_the_mean_of_its_pieces(fitted):
    words = ["film", "filmmaker", "the music"]
    static = fitted.static_embeddings(words)
    assert isinstance(static, StaticEmbeddings) and static.vocabulary == words
    table = fitted.static_embeddings().vectors
    tokenizer = fitted._ensure_loaded().tokenizer
    for word, vector in zip(words, static.vectors):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        np.testing.assert_allclose(vector, table[ids].mean(axis=0), atol=1e-7)
    assert static.vectors.shape == (3, table.shape[1])


def test_a_word_without_tokens_is_refused_by_position(fitted):
    with pytest.raises(
        ValueError, match=re.escape("Got words[1]='   ', which the tokenizer turns into no tokens")
    ):
        fitted.static_embeddings(["film", "   "])


def test_a_single_string_is_refused_with_the_fix(fitted):
    with pytest.raises(ValueError, match=re.escape("use words=['film']")):
        fitted.static_embeddings("film")


def test_static_embeddings_before_fit_raises_not_fitted(vectorizer):
    with pytest.raises(NotFittedError):
        vectorizer.static_embeddings()
