"""Chinese ALBERT: AlbertModel with a BERT WordPiece vocabulary (the albert_chinese_* layout)."""

import pickle
import shutil

import numpy as np
import pytest
from _chinese_model import build_tiny_chinese_albert
from conftest import shared_path
from sklearn.base import clone

from sklearn_albert import AlbertKeywordExtractor, AlbertVectorizer

REVIEWS = [
    "这个宾馆比较陈旧了，特价的房间也很一般。总体来说一般。",
    "酒店服务很好，早餐丰富，房间干净，下次还会再来！",
    "",
    "Hello 2024！笔记本的键盘确实爽。",
]


@pytest.fixture(scope="module")
def chinese_albert_path(tmp_path_factory):
    """A random tiny AlbertModel beside the real 21,128-token BERT-Chinese vocab.txt."""
    vocab_dir = shared_path("models", "albert-chinese-vocab")
    return build_tiny_chinese_albert(
        tmp_path_factory.mktemp("models") / "albert-chinese-tiny", vocab_dir
    )


@pytest.fixture(scope="module")
def fitted_chinese(chinese_albert_path):
    return AlbertVectorizer(str(chinese_albert_path), dtype="float32").fit(["预热"])


@pytest.fixture
def chinese(fitted_chinese):
    return clone(fitted_chinese).fit(["预热"])


def test_the_checkpoint_loads_with_the_bert_wordpiece_tokenizer(chinese):
    loaded = chinese._ensure_loaded()
    assert type(loaded.model).__name__ == "AlbertModel"
    assert type(loaded.tokenizer).__name__ == "BertTokenizer"
    assert len(loaded.tokenizer) == 21128
    assert (loaded.special_prefix, loaded.special_suffix) == ((101,), (102,))


def test_chinese_characters_are_known_tokens_not_unknown(chinese):
    tokenizer = chinese._ensure_loaded().tokenizer
    ids = tokenizer("宾馆比较陈旧", add_special_tokens=False)["input_ids"]
    assert len(ids) == 6 and tokenizer.unk_token_id not in ids


def test_transform_embeds_chinese_text(chinese):
    features = chinese.transform(REVIEWS)
    assert features.shape == (len(REVIEWS), 32) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])


def test_a_chinese_embedding_does_not_depend_on_its_batch(chinese):
    one = chinese.set_params(batch_size=1).transform(REVIEWS)
    many = (
        clone(chinese)
        .set_params(batch_size=64, embedding_cache=None)
        .fit(["预热"])
        .transform(REVIEWS)
    )
    np.testing.assert_allclose(one, many, atol=1e-4)


def test_transform_tokens_gives_one_token_per_chinese_character(chinese):
    text = REVIEWS[0]
    record = chinese.transform_tokens([text])[0]
    assert record.tokens == [character for character in text]
    assert [text[start:end] for start, end in record.offsets] == record.tokens
    assert record.embeddings.shape == (len(text), 32)


def test_word_level_keeps_latin_words_and_numbers_whole(chinese):
    record = chinese.transform_tokens([REVIEWS[3]], word_level=True)[0]
    assert record.tokens == [
        "Hello",
        "2024",
        "！",
        "笔",
        "记",
        "本",
        "的",
        "键",
        "盘",
        "确",
        "实",
        "爽",
        "。",
    ]
    pieces = chinese.transform_tokens([REVIEWS[3]])[0]
    assert pieces.tokens[:4] == ["hello", "202", "##4", "！"]


def test_static_embeddings_cover_the_chinese_vocabulary(chinese):
    vocabulary, table = chinese.static_embeddings()
    assert table.shape == (21128, 16)
    assert (
        vocabulary[101] == "[CLS]"
        and vocabulary[chinese._ensure_loaded().tokenizer.convert_tokens_to_ids("宾")] == "宾"
    )
    word = chinese.static_embeddings(["宾馆"]).vectors[0]
    tokenizer = chinese._ensure_loaded().tokenizer
    np.testing.assert_allclose(
        word, table[tokenizer.convert_tokens_to_ids(["宾", "馆"])].mean(axis=0), atol=1e-7
    )


def test_a_self_contained_pickle_keeps_the_wordpiece_tokenizer(chinese_albert_path, tmp_path):
    folder = shutil.copytree(chinese_albert_path, tmp_path / "albert-chinese")
    vectorizer = AlbertVectorizer(str(folder), dtype="float32", store_weights_in_pickle=True)
    expected = vectorizer.fit(["预热"]).transform(REVIEWS)
    payload = pickle.dumps(vectorizer)
    shutil.rmtree(folder)
    restored = pickle.loads(payload)
    assert type(restored._ensure_loaded().tokenizer).__name__ == "BertTokenizer"
    np.testing.assert_allclose(restored.transform(REVIEWS), expected, atol=1e-6)


def test_character_candidates_never_cross_punctuation(chinese_albert_path):
    extractor = AlbertKeywordExtractor(
        str(chinese_albert_path), analyzer="char", ngram_range=(2, 3)
    )
    candidates = extractor.list_candidates("房间干净，早餐丰富。")
    assert "房间" in candidates and "早餐丰" in candidates
    assert all("，" not in c and "。" not in c for c in candidates)
    assert "净早" not in candidates  # "净" ends one clause, "早" starts the next
    assert all(2 <= len(candidate) <= 3 for candidate in candidates)


def test_auto_uses_characters_for_chinese_without_jieba(chinese_albert_path, monkeypatch):
    import sklearn_albert._keywords as keywords

    monkeypatch.setattr(keywords, "_jieba_installed", lambda: False)
    extractor = AlbertKeywordExtractor(str(chinese_albert_path))
    assert extractor._analyzer_for(REVIEWS[1]) == "char"
    assert extractor._analyzer_for("a good hotel 好") == "word"


def test_chinese_stop_words_are_left_out(chinese_albert_path):
    extractor = AlbertKeywordExtractor(
        str(chinese_albert_path), analyzer="char", ngram_range=(1, 1), stop_words=["的", "了"]
    )
    assert "的" not in extractor.list_candidates("特价的房间了")


def test_keywords_of_chinese_reviews_are_substrings_of_them(chinese_albert_path):
    extractor = AlbertKeywordExtractor(
        str(chinese_albert_path), analyzer="char", ngram_range=(1, 2), top_k=3, dtype="float32"
    )
    keywords = extractor.extract_keywords(REVIEWS)
    assert [len(row) for row in keywords] == [3, 3, 0, 3]
    for review, row in zip(REVIEWS, keywords):
        assert all(keyword in review.lower() for keyword, _ in row)


def test_jieba_candidates_are_segmented_words(chinese_albert_path):
    pytest.importorskip("jieba", reason="needs the jieba package (pip install .[chinese])")
    extractor = AlbertKeywordExtractor(
        str(chinese_albert_path), analyzer="jieba", ngram_range=(1, 1)
    )
    candidates = extractor.list_candidates("这个宾馆比较陈旧了")
    assert {"宾馆", "陈旧"} <= set(candidates)
    assert AlbertKeywordExtractor(str(chinese_albert_path))._analyzer_for(REVIEWS[1]) == "jieba"
    keywords = extractor.fit().extract_keywords(REVIEWS[:2], top_k=2)
    assert all(keyword in review for review, row in zip(REVIEWS, keywords) for keyword, _ in row)
