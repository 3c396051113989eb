"""Similarity and search: cosine helpers and most_similar."""

import re

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.neighbors import NearestNeighbors

from sklearn_albert import Match, cosine_similarity_matrix, most_similar, paired_cosine_similarity

CORPUS = [
    "the film was brilliant",
    "the music was lovely",
    "a dull story and a messy plot",
    "the film was brilliant",
    "",
]


def test_cosine_similarity_matrix_matches_scikit_learn():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(4, 6)), rng.normal(size=(3, 6))
    result = cosine_similarity_matrix(X, Y)
    assert result.dtype == np.float32 and result.shape == (4, 3)
    np.testing.assert_allclose(result, cosine_similarity(X, Y), atol=1e-6)
    np.testing.assert_allclose(cosine_similarity_matrix(X), cosine_similarity(X), atol=1e-6)


def test_a_zero_vector_is_similar_to_nothing():
    X = np.array([[0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(cosine_similarity_matrix(X), [[0, 0], [0, 1]])


def test_paired_similarity_is_the_diagonal_of_the_matrix():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    np.testing.assert_allclose(
        paired_cosine_similarity(X, Y), np.diag(cosine_similarity(X, Y)), atol=1e-6
    )


def test_mismatched_shapes_are_explained():
    with pytest.raises(ValueError, match=re.escape("Got X with 3 features and Y with 2")):
        cosine_similarity_matrix(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(
        ValueError, match=re.escape("paired similarity needs one row of Y per row of X")
    ):
        paired_cosine_similarity(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=re.escape("expected a 2-D array of embeddings")):
        cosine_similarity_matrix(np.ones(3))


def test_a_text_finds_itself_first(vectorizer):
    matches = most_similar(CORPUS[:3], CORPUS, vectorizer, top_k=2)
    assert [row[0].text for row in matches] == CORPUS[:3]
    assert all(isinstance(match, Match) for row in matches for match in row)
    assert matches[0][0].score == pytest.approx(1.0, abs=1e-5)
    # Equal scores keep corpus order: the duplicate at index 3 follows index 0.
    assert [match.index for match in matches[0]] == [0, 3]


def test_scores_are_the_cosine_of_the_embeddings(vectorizer):
    fitted = vectorizer.fit(CORPUS)
    matches = most_similar(["a lovely film"], CORPUS, fitted, top_k=len(CORPUS))[0]
    expected = cosine_similarity(fitted.transform(["a lovely film"]), fitted.transform(CORPUS))[0]
    assert sorted(match.index for match in matches) == list(range(len(CORPUS)))
    np.testing.assert_allclose(
        [m.score for m in matches], [expected[m.index] for m in matches], atol=1e-5
    )
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)


def test_the_ranking_agrees_with_nearest_neighbors(vectorizer):
    fitted = vectorizer.fit(CORPUS)
    queries = ["a lovely film", "messy music"]
    index = NearestNeighbors(n_neighbors=3, metric="cosine").fit(fitted.transform(CORPUS))
    distances, _ = index.kneighbors(fitted.transform(queries))
    matches = most_similar(queries, CORPUS, fitted, top_k=3)
    for row, dist in zip(matches, distances):
        np.testing.assert_allclose([m.score for m in row], 1 - dist, atol=1e-5)


def test_an_unfitted_vectorizer_is_cloned_not_changed(vectorizer):
    most_similar(["film"], CORPUS, vectorizer, top_k=1)
    assert not hasattr(vectorizer, "n_features_out_")


def test_top_k_larger_than_the_corpus_returns_the_whole_corpus(vectorizer):
    assert len(most_similar(["film"], CORPUS[:2], vectorizer, top_k=10)[0]) == 2


def test_an_empty_query_list_or_corpus_gives_empty_results(vectorizer):
    assert most_similar([], CORPUS, vectorizer) == []
    assert most_similar(["film"], [], vectorizer) == [[]]


def test_an_invalid_top_k_is_named(vectorizer):
    with pytest.raises(ValueError, match=re.escape("Got top_k=0 but expected a positive integer.")):
        most_similar(["film"], CORPUS, vectorizer, top_k=0)


def test_a_bare_string_query_is_refused(vectorizer):
    with pytest.raises(ValueError, match=re.escape("Iterable over raw text documents expected")):
        most_similar("film", CORPUS, vectorizer)
