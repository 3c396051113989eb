"""fit warns when most tokens of its texts are the tokenizer's unknown token."""

import warnings

import pytest
from _chinese_model import build_tiny_chinese_albert
from conftest import shared_path

from sklearn_albert import AlbertVectorizer

REVIEWS = [
    "这个宾馆比较陈旧了，特价的房间也很一般。总体来说一般。",
    "酒店服务很好，早餐丰富，房间干净，下次还会再来！",
]


@pytest.fixture(scope="module")
def vocab_dir():
    return shared_path("models", "albert-chinese-vocab")


@pytest.fixture(scope="module")
def unk_only_albert_path(tmp_path_factory, vocab_dir):
    """A Chinese ALBERT saved with BertTokenizerFast(vocab_file=...), as transformers 5 builds it.

    transformers 5 ignores ``vocab_file`` (the argument is now ``vocab``): the tokenizer
    keeps its five special tokens and maps every word to [UNK].
    """
    from transformers import BertTokenizerFast

    folder = build_tiny_chinese_albert(tmp_path_factory.mktemp("models") / "unk-only", vocab_dir)
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_dir / "vocab.txt"))
    assert len(tokenizer) == 5  # the defect this file is about, as transformers 5 has it
    tokenizer.save_pretrained(folder)
    return folder


def unknown_token_warnings(records):
    return [str(record.message) for record in records if "unknown token" in str(record.message)]


def test_fit_warns_that_a_tokenizer_without_its_vocabulary_maps_everything_to_unk(
    unk_only_albert_path,
):
    vectorizer = AlbertVectorizer(str(unk_only_albert_path), dtype="float32")

    with pytest.warns(UserWarning, match="unknown token") as records:
        vectorizer.fit(REVIEWS)

    (message,) = unknown_token_warnings(records)
    n_tokens = sum(len(review) for review in REVIEWS)  # one token per character here
    assert message.startswith(
        f"{n_tokens} of {n_tokens} tokens (100%) in the texts fit saw are the unknown token "
        "'[UNK]' of the tokenizer (BertTokenizer): their embeddings carry little of the texts."
    )
    assert "its vocabulary holds only 5 tokens" in message
    assert "BertTokenizer.from_pretrained(folder holding vocab.txt)" in message
    assert "BertTokenizer(vocab='vocab.txt')" in message
    assert [record.filename for record in records if "unknown token" in str(record.message)] == [
        __file__
    ]


def test_fit_transform_warns_too_counting_the_ids_it_encodes(unk_only_albert_path):
    vectorizer = AlbertVectorizer(str(unk_only_albert_path), dtype="float32", embedding_cache=None)

    with pytest.warns(UserWarning, match="unknown token") as records:
        features = vectorizer.fit_transform(REVIEWS)

    assert features.shape == (2, 32)
    assert len(unknown_token_warnings(records)) == 1
    assert [record.filename for record in records if "unknown token" in str(record.message)] == [
        __file__
    ]


def test_the_advised_fix_gives_the_whole_vocabulary_and_no_warning(
    tmp_path, unk_only_albert_path, vocab_dir
):
    """What the warning advises, under transformers 5: from_pretrained, or vocab=."""
    import shutil

    from transformers import BertTokenizer

    from_folder = BertTokenizer.from_pretrained(str(vocab_dir))
    from_file = BertTokenizer(vocab=str(vocab_dir / "vocab.txt"))
    assert len(from_folder) == len(from_file) == 21128
    folder = shutil.copytree(unk_only_albert_path, tmp_path / "fixed")
    from_folder.save_pretrained(folder)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectorizer = AlbertVectorizer(str(folder), dtype="float32").fit(REVIEWS)
    assert len(vectorizer._ensure_loaded().tokenizer) == 21128


def test_texts_in_a_script_the_vocabulary_lacks_get_the_other_advice(tiny_albert_path):
    vectorizer = AlbertVectorizer(str(tiny_albert_path), dtype="float32")

    with pytest.warns(UserWarning, match="unknown token") as records:
        vectorizer.fit(REVIEWS)

    (message,) = unknown_token_warnings(records)
    assert "vocabulary does not cover these texts" in message
    assert "vocab_file" not in message


def test_a_few_unknown_tokens_are_no_reason_to_warn(tiny_albert_path):
    texts = ["a great film 宾馆", "the music was lovely and the plot clever"]
    vectorizer = AlbertVectorizer(str(tiny_albert_path), dtype="float32")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectorizer.fit(texts)
        vectorizer.fit_transform(texts)
        vectorizer.fit([])
