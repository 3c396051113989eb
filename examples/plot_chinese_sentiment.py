"""
=====================================================
Chinese ALBERT: sentiment of ChnSentiCorp reviews
=====================================================

The ``albert_chinese_*`` checkpoints pair an ``AlbertModel`` with BERT's Chinese
WordPiece vocabulary (a ``vocab.txt``, no SentencePiece model). They load through
:class:`~sklearn_albert.AlbertVectorizer` like any other checkpoint: the vectorizer
recognises the layout and uses ``BertTokenizer``, which splits Chinese into characters.
This example embeds ChnSentiCorp reviews, fits a logistic regression, and compares it
with a TF-IDF character n-gram baseline; it also shows per-character token vectors.

Model: the folder named by the ``SKLEARN_ALBERT_CHINESE_MODEL`` environment variable
(for instance a downloaded ``albert_chinese_tiny``) when set. Otherwise, since no
pretrained Chinese ALBERT weights are available offline, it builds the
``albert_chinese_tiny`` *architecture* (``../shared/models/albert-chinese-vocab``:
brightmart's config and the 21,128-token vocabulary) with seeded *random* weights:
that exercises the whole path, but its accuracy only measures what random features of
the characters can do, not what a pretrained model would.

Data: 800 training and 400 development reviews drawn at random from
``../shared/data/chnsenticorp`` (``text<TAB>label``) when present, else a few built-in
reviews (the figures are then a smoke test).
"""

import csv
import json
import os
import random
import tempfile
import time
import warnings
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_albert import AlbertVectorizer

SHARED = Path(
    os.environ.get(
        "SKLEARN_ALBERT_SHARED",
        Path(globals().get("__file__", "example.py")).resolve().parents[2] / "shared",
    )
)
VOCAB_DIR = SHARED / "models" / "albert-chinese-vocab"

BUILT_IN = [
    ("房间很干净，服务也很周到，下次还会再来。", "positive"),
    ("早餐丰富，位置方便，性价比很高。", "positive"),
    ("这本书写得很好，值得一读。", "positive"),
    ("电脑运行很快，屏幕清晰，非常满意。", "positive"),
    ("酒店环境优美，前台热情。", "positive"),
    ("物流很快，包装完好，推荐购买。", "positive"),
    ("房间太小，隔音很差，晚上睡不好。", "negative"),
    ("服务态度恶劣，再也不来了。", "negative"),
    ("书的印刷质量很差，错字很多。", "negative"),
    ("电池不耐用，键盘也不好用。", "negative"),
    ("卫生间有异味，设施陈旧。", "negative"),
    ("等了一个小时才上菜，太失望了。", "negative"),
]


def load_reviews(n_train=800, n_test=400, seed=0):
    folder = SHARED / "data" / "chnsenticorp"
    if not folder.exists():
        print(f"{folder} not found: using {len(BUILT_IN)} built-in reviews for both sides.")
        texts, labels = zip(*BUILT_IN)
        return list(texts), list(labels), list(texts), list(labels)

    def read(name, size):
        with open(folder / name, encoding="utf-8") as handle:
            rows = [
                row
                for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
                if len(row) == 2
            ]
        rows = random.Random(seed).sample(rows, size)
        return [text for text, _ in rows], [label for _, label in rows]

    print(
        f"ChnSentiCorp from {folder}: {n_train} train and {n_test} dev reviews "
        f"(random, seed {seed})."
    )
    return (*read("train.tsv", n_train), *read("dev.tsv", n_test))


def random_albert_chinese_tiny(folder, texts):
    """albert_chinese_tiny's architecture and vocabulary with seeded random weights."""
    import torch
    from transformers import AlbertConfig, AlbertModel

    folder.mkdir(parents=True, exist_ok=True)
    if VOCAB_DIR.exists():
        vocab = (VOCAB_DIR / "vocab.txt").read_text(encoding="utf-8")
        brightmart = json.loads((VOCAB_DIR / "albert_config_tiny.json").read_text(encoding="utf-8"))
    else:  # no ../shared: a vocabulary of the built-in texts' characters, same layout
        characters = sorted({character for text in texts for character in text})
        vocab = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]) + "\n"
        brightmart = {
            "hidden_size": 312,
            "embedding_size": 128,
            "intermediate_size": 1248,
            "num_attention_heads": 12,
            "num_hidden_layers": 4,
            "max_position_embeddings": 512,
        }
    (folder / "vocab.txt").write_text(vocab, encoding="utf-8")
    fields = (
        "hidden_size",
        "embedding_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
        "max_position_embeddings",
        "type_vocab_size",
    )
    config = AlbertConfig(
        vocab_size=vocab.count("\n"),  # not splitlines(): some tokens are Unicode line separators
        **{name: brightmart[name] for name in fields if name in brightmart},
        hidden_act="gelu",
        pad_token_id=0,
    )
    torch.manual_seed(0)
    AlbertModel(config).save_pretrained(folder)
    return folder


# %%
# Load the checkpoint and the reviews
# -----------------------------------

start = time.perf_counter()
X_train, y_train, X_test, y_test = load_reviews()
workspace = tempfile.TemporaryDirectory(prefix="albert_chinese_")
model = os.environ.get("SKLEARN_ALBERT_CHINESE_MODEL")
if model:
    print(f"Model: {model} (from SKLEARN_ALBERT_CHINESE_MODEL)")
else:
    model = str(random_albert_chinese_tiny(Path(workspace.name) / "albert-chinese-tiny", X_train))
    print(
        "Model: albert_chinese_tiny architecture with RANDOM weights (no pretrained Chinese "
        "ALBERT offline; set SKLEARN_ALBERT_CHINESE_MODEL to use one)"
    )

vectorizer = AlbertVectorizer(model, max_length=128).fit(X_train)
tokenizer = vectorizer._ensure_loaded().tokenizer
print(
    f"Tokenizer: {type(tokenizer).__name__}, {len(tokenizer)} tokens; "
    f"{vectorizer.n_hidden_states_ - 1} layers of {vectorizer.hidden_size_}"
)

# %%
# Sentiment classification
# ------------------------
# Reviews longer than 128 tokens (about three in ten) are truncated; the vectorizer says
# how many.

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    albert = make_pipeline(vectorizer, LogisticRegression(max_iter=2000, C=10)).fit(
        X_train, y_train
    )
    albert_accuracy = albert.score(X_test, y_test)
for warning in caught:
    print(f"  note: {warning.message}")
tfidf = make_pipeline(
    TfidfVectorizer(analyzer="char", ngram_range=(1, 2)), LogisticRegression(max_iter=2000)
).fit(X_train, y_train)
print(f"AlbertVectorizer + LogisticRegression accuracy: {albert_accuracy:.3f}")
print(f"TF-IDF character 1-2-grams + LogisticRegression: {tfidf.score(X_test, y_test):.3f}")

# %%
# One vector per character
# ------------------------
# ``transform_tokens`` returns the token vectors with their character offsets; with the
# BERT-Chinese vocabulary every Chinese character is a token, while Latin words and
# numbers stay whole at ``word_level=True``.

record = vectorizer.transform_tokens(["房间很干净，WiFi速度200M。"], word_level=True)[0]
print(f"tokens: {record.tokens}")
print(f"offsets: {record.offsets[:, 0].tolist()}  vectors: {record.embeddings.shape}")
vocabulary, table = vectorizer.static_embeddings()
print(f"input embedding table: {table.shape} (vocab x embedding_size, ALBERT's factorised table)")
print(f"Total time: {time.perf_counter() - start:.1f} s")
workspace.cleanup()
