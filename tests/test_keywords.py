"""Keyword extraction: AlbertKeywordExtractor."""

import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_albert import AlbertKeywordExtractor
from sklearn_albert._keywords import max_sum_similarity, maximal_marginal_relevance, select_keywords

DOCS = [
    "the film was brilliant and the music was lovely",
    "a dull story , a messy plot and a weak script",
    "",
]


@pytest.fixture
def extractor(tiny_albert_path):
    return AlbertKeywordExtractor(str(tiny_albert_path), dtype="float32", top_k=3)


def test_each_document_gets_top_k_keyword_score_pairs(extractor):
    keywords = extractor.extract_keywords(DOCS)
    assert len(keywords) == len(DOCS)
    assert [len(row) for row in keywords] == [3, 3, 0]
    for doc, row in zip(DOCS, keywords):
        for keyword, score in row:
            assert isinstance(keyword, str) and isinstance(score, float)
            assert all(word in doc for word in keyword.split())
            assert -1.0 <= score <= 1.0 + 1e-6


def test_keywords_are_ranked_by_their_cosine_similarity_to_the_document(extractor):
    extractor.set_params(diversity_method=None, top_k=4)
    row = extractor.extract_keywords(DOCS[:1])[0]
    vectorizer = extractor.vectorizer_
    doc = vectorizer.transform(DOCS[:1])[0]
    words = [keyword for keyword, _ in row]
    expected = vectorizer.transform(words) @ doc
    np.testing.assert_allclose([score for _, score in row], expected, atol=1e-5)
    assert [score for _, score in row] == sorted((score for _, score in row), reverse=True)
    every = extractor.list_candidates(DOCS[0])
    best = np.sort(vectorizer.transform(every) @ doc)[::-1][:4]
    np.testing.assert_allclose(expected, best, atol=1e-5)


def test_top_k_of_the_call_overrides_the_parameter(extractor):
    assert [len(row) for row in extractor.extract_keywords(DOCS[:2], top_k=1)] == [1, 1]


def test_candidates_follow_ngram_range_and_stop_words(extractor):
    extractor.set_params(ngram_range=(2, 2), stop_words=None)
    assert "film was" in extractor.list_candidates(DOCS[0])
    assert all(len(candidate.split()) == 2 for candidate in extractor.list_candidates(DOCS[0]))
    extractor.set_params(ngram_range=(1, 1), stop_words="english")
    assert extractor.list_candidates(DOCS[0]) == ["brilliant", "film", "lovely", "music"]


def test_a_document_of_stop_words_only_has_no_keywords(extractor):
    assert extractor.extract_keywords(["the and of a"]) == [[]]


def test_extract_keywords_fits_when_needed_and_fit_is_cheap_to_repeat(extractor):
    assert not hasattr(extractor, "vectorizer_")
    extractor.extract_keywords(DOCS[:1])
    assert extractor.vectorizer_.normalize is True
    assert clone(extractor).fit(DOCS).extract_keywords(DOCS[:1]) == extractor.extract_keywords(
        DOCS[:1]
    )


def test_mmr_without_diversity_is_plain_ranking():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors[0]
    chosen = maximal_marginal_relevance(similarity, vectors, 5, diversity=0.0)
    assert chosen == list(np.argsort(-similarity)[:5])


def test_mmr_with_diversity_skips_a_near_duplicate():
    doc = np.array([1.0, 0.0, 0.0])
    near = np.array([0.95, 0.31, 0.0])
    vectors = np.stack([near, near * 0.999 + [0, 0, 0.0447], [0.8, 0.0, 0.6]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ doc
    assert maximal_marginal_relevance(similarity, vectors, 2, diversity=0.0) == [0, 1]
    assert maximal_marginal_relevance(similarity, vectors, 2, diversity=0.7) == [0, 2]


def test_max_sum_picks_the_least_similar_set_among_the_closest():
    vectors = np.eye(4)[[0, 0, 1, 2]] + 0.01
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = np.array([0.9, 0.8, 0.7, 0.1])
    assert sorted(max_sum_similarity(similarity, vectors, 2, n_candidates=3)) == [0, 2]
    assert sorted(max_sum_similarity(similarity, vectors, 2, n_candidates=2)) == [0, 1]


def test_max_sum_refuses_an_explosion_of_subsets():
    vectors = np.eye(60)
    with pytest.raises(
        ValueError, match=re.escape("Got n_candidates=60 and top_k=10: max_sum would compare")
    ):
        max_sum_similarity(np.linspace(1, 0, 60), vectors, 10, n_candidates=60)


def test_scores_are_similarities_whatever_the_method():
    vectors = np.eye(3)
    doc = np.array([0.8, 0.6, 0.0])
    for method in ("mmr", "max_sum", None):
        row = select_keywords(
            doc, vectors, ["a", "b", "c"], top_k=2, method=method, diversity=0.5, n_candidates=3
        )
        assert row == [("a", 0.8), ("b", pytest.approx(0.6))]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ngram_range": (2, 1)}, "Got ngram_range=(2, 1) but expected a tuple (min_n, max_n)"),
        ({"diversity": 1.5}, "The 'diversity' parameter of AlbertKeywordExtractor must be"),
        ({"diversity_method": "random"}, "The 'diversity_method' parameter"),
    ],
)
def test_invalid_parameters_are_named_at_fit(extractor, params, message):
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        extractor.set_params(**params).fit()


def test_an_invalid_top_k_is_named(extractor):
    with pytest.raises(ValueError, match=re.escape("Got top_k=0 but expected a positive integer.")):
        extractor.extract_keywords(DOCS, top_k=0)


def test_a_bare_string_is_refused(extractor):
    with pytest.raises(ValueError, match=re.escape("Iterable over raw text documents expected")):
        extractor.extract_keywords("the film was brilliant")


def test_a_real_encoder_finds_the_topic_of_a_document():
    from conftest import minilm_path

    extractor = AlbertKeywordExtractor(str(minilm_path()), dtype="float32", top_k=3)
    doc = (
        "The cat slept on the sofa all afternoon. Cats are curious pets that chase mice, "
        "and our cat purrs whenever someone strokes her."
    )
    keywords = [keyword for keyword, _ in extractor.extract_keywords([doc])[0]]
    assert any("cat" in keyword for keyword in keywords), keywords


def test_a_pickled_extractor_gives_the_same_keywords(extractor):
    import pickle

    expected = extractor.fit().extract_keywords(DOCS)
    restored = pickle.loads(pickle.dumps(extractor))
    assert type(restored) is AlbertKeywordExtractor
    assert restored.get_params() == extractor.get_params()
    assert restored.extract_keywords(DOCS) == expected


def test_top_n_is_keyberts_name_for_top_k(extractor):
    by_top_n = extractor.extract_keywords(DOCS[:2], top_n=1)
    assert [len(row) for row in by_top_n] == [1, 1]
    assert by_top_n == extractor.extract_keywords(DOCS[:2], top_k=1)
    assert extractor.extract_keywords(DOCS[:2], top_k=2, top_n=2) == extractor.extract_keywords(
        DOCS[:2], top_k=2
    )


def test_top_k_and_top_n_that_differ_are_refused(extractor):
    message = (
        "Got top_k=2 and top_n=3: top_n is another name for top_k (KeyBERT's). Pass one of them."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        extractor.extract_keywords(DOCS[:1], top_k=2, top_n=3)
