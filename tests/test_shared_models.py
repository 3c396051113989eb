"""Real checkpoints: the ALBERT-base architecture from ../shared and the pretrained MiniLM."""

import csv

import numpy as np
import pytest
from _tiny_model import mean_pooling_sentence_transformer
from conftest import minilm_path, shared_path
from scipy.stats import spearmanr

from sklearn_albert import AlbertVectorizer

SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "ALBERT shares parameters across layers to stay small.",
    "",
    "Il pleut à Paris ; 東京は晴れです。",
    "short",
]


def read_stsb(split):
    path = shared_path("data", "stsb", f"sts-{split}.csv")
    pairs, scores = [], []
    with open(path, encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            scores.append(float(row[4]))
            pairs.append((row[5], row[6]))
    return pairs, np.array(scores)


def cosine_rows(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    return minilm_path()


def test_albert_base_mean_pooling_equals_sentence_transformers(albert_base_path):
    pytest.importorskip("sentence_transformers")
    expected = mean_pooling_sentence_transformer(albert_base_path).encode(SENTENCES)
    features = (
        AlbertVectorizer(str(albert_base_path), dtype="float32").fit(SENTENCES).transform(SENTENCES)
    )
    assert features.shape == (len(SENTENCES), 768)
    assert cosine_rows(features, expected).min() >= 0.99999


def test_minilm_mean_pooling_equals_sentence_transformers(minilm):
    expected = mean_pooling_sentence_transformer(minilm).encode(SENTENCES)
    features = AlbertVectorizer(str(minilm), dtype="float32").fit(SENTENCES).transform(SENTENCES)
    assert cosine_rows(features, expected).min() >= 0.99999


def test_minilm_reduced_precision_stays_within_cosine_1e_4_of_float32(minilm):
    pairs, _ = read_stsb("test")
    texts = [text for pair in pairs[:300] for text in pair]
    exact = AlbertVectorizer(str(minilm), dtype="float32").fit(texts).transform(texts)
    fast = AlbertVectorizer(str(minilm), dtype="bfloat16").fit(texts).transform(texts)
    assert cosine_rows(fast, exact).min() >= 0.9999


def test_minilm_stsb_test_spearman_matches_the_published_figure(minilm):
    pairs, scores = read_stsb("test")
    vectorizer = AlbertVectorizer(str(minilm), normalize=True).fit([])
    left = vectorizer.transform([a for a, _ in pairs])
    right = vectorizer.transform([b for _, b in pairs])
    spearman = spearmanr((left * right).sum(1), scores).statistic
    assert spearman == pytest.approx(0.820, abs=0.003)
