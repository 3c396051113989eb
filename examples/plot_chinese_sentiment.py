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
``../shared/data/chnsenticorp`` (``text<TAB>label``) when present. There, with the
random-weight architecture, the embeddings score 0.733 and the TF-IDF baseline 0.845
(measured on this project's 2-core AMD EPYC machine; random features of the
characters, so this says nothing of what a pretrained Chinese ALBERT would score).
Without it, 600 distinct reviews are generated from the hand-written hotel, book,
laptop and takeout phrases below (seeded): 400 to train on, 200 to test on. Some turn
on a negation ("并不吵", "不太干净") or on a "虽然 ..., 但是 ..." contrast, so neither
method scores 1.000: 0.880 for the random-weight embeddings, 0.940 for TF-IDF.
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

# aspect: positive phrases, negative phrases, positive adjectives, negative adjectives
# (the adjectives take a negation: "不太干净" is negative, "一点也不吵" positive)
ASPECTS = {
    "hotel": [
        (
            "房间",
            "很干净 宽敞明亮 布置得很温馨",
            "很脏 太小了 有一股霉味",
            "干净 安静 宽敞",
            "脏 吵 小",
        ),
        (
            "服务",
            "很周到 非常热情 响应很及时",
            "态度很差 冷冰冰的 慢得要命",
            "周到 热情 及时",
            "差 慢 冷淡",
        ),
        (
            "早餐",
            "品种丰富 很可口 挺实惠",
            "太单调 很难吃 端上来就是凉的",
            "丰富 可口 新鲜",
            "难吃 单调 贵",
        ),
        ("位置", "很方便 离地铁很近", "太偏僻 很难找", "方便 好找", "偏 远"),
        ("床", "很舒服 软硬适中", "太硬了 睡得腰疼", "舒服 干净", "硬 脏"),
    ],
    "book": [
        (
            "内容",
            "很精彩 有深度 引人入胜",
            "空洞无物 很无聊 东拼西凑",
            "精彩 有趣 充实",
            "无聊 空洞 乏味",
        ),
        ("印刷", "很清晰 很精美 纸张厚实", "模糊不清 很粗糙 错字连篇", "清晰 精美", "模糊 粗糙"),
        ("翻译", "流畅自然 很准确", "生硬拗口 错误很多", "流畅 准确", "生硬 别扭"),
        ("故事", "感人至深 节奏紧凑", "拖沓冗长 情节老套", "感人 紧凑 新颖", "拖沓 老套"),
    ],
    "laptop": [
        ("屏幕", "清晰细腻 色彩鲜艳", "有坏点 反光严重", "清晰 亮", "暗 模糊"),
        ("电池", "很耐用 续航很长", "掉电很快 用半天就没电", "耐用 持久", "差 短命"),
        ("运行速度", "很快 非常流畅", "经常卡顿 动不动就死机", "快 流畅", "慢 卡"),
        ("键盘", "手感很好 敲起来很舒服", "有点松动 按键很硬", "舒服 好用", "硬 松"),
        ("散热", "做得不错 很安静", "风扇声音很大 烫得不敢摸", "安静 好", "吵 烫"),
    ],
    "takeout": [
        ("菜", "很新鲜 味道很好 火候刚好", "太咸了 又油又腻", "新鲜 好吃 入味", "咸 油腻 难吃"),
        ("送餐", "很准时 特别快", "太慢了 迟到了一个小时", "准时 快", "慢 拖拉"),
        ("分量", "很足 两个人都吃不完", "太少了 一口就没了", "足 实在", "少 小气"),
        ("包装", "很严实 干净卫生", "漏汤了 很简陋", "严实 讲究", "简陋 脏"),
    ],
}
CLOSING = {
    1: "推荐购买。 下次还会再来。 总的来说很满意。 物有所值。 五星好评！ 值得一试。 会推荐给朋友。",
    0: "不推荐。 再也不会来了。 总的来说很失望。 太不值了。 差评！ 后悔了。 千万别买。",
}
NEGATE = {0: "不太{} 不够{} 没有想象中{}", 1: "一点也不{} 并不{} 完全不{}"}


def clause(aspect, polarity, rng):
    name, good, bad, good_adj, bad_adj = aspect
    if rng.random() < 0.3:  # the polarity said by negating a word of the other side
        word = rng.choice((bad_adj if polarity else good_adj).split())
        return name + rng.choice(NEGATE[polarity].split()).format(word)
    return name + rng.choice((good if polarity else bad).split())


def review(rng):
    label = rng.randint(0, 1)
    aspects = rng.sample(ASPECTS[rng.choice(list(ASPECTS))], rng.randint(2, 3))
    if rng.random() < 0.4:  # a contrast: the first aspect goes the other way, "但是" decides
        first = clause(aspects[0], 1 - label, rng)
        rest = "，".join(clause(aspect, label, rng) for aspect in aspects[1:])
        text = f"虽然{first}，但是{rest}。"
    else:
        text = "，".join(clause(aspect, label, rng) for aspect in aspects) + "。"
    if rng.random() < 0.6:
        text += rng.choice(CLOSING[label].split())
    return text, label


def reviews(n, seed=0):
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        text, label = review(rng)
        if text not in seen:
            seen.add(text)
            out.append((text, label))
    return out


def load_reviews(n_train=800, n_test=400, seed=0):
    """ChnSentiCorp when present, else 600 generated reviews (400 train, 200 test)."""
    folder = SHARED / "data" / "chnsenticorp"
    if not folder.exists():
        n_train, n_test = 400, 200
        print(f"{folder} not found: {n_train} + {n_test} generated reviews (seed {seed}).")
        generated = reviews(n_train + n_test, seed)
        texts, labels = [text for text, _ in generated], [label for _, label in generated]
        return texts[:n_train], labels[:n_train], texts[n_train:], labels[n_train:]

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
    model = str(
        random_albert_chinese_tiny(Path(workspace.name) / "albert-chinese-tiny", X_train + X_test)
    )
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
# On ChnSentiCorp, reviews longer than 128 tokens (about three in ten) are truncated;
# the vectorizer says how many.

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
