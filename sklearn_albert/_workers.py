"""What a worker process of a cluster engine (Dask, Spark) does with a shipped estimator.

Each process unpickles a given estimator once, keeps it for every partition it embeds,
and prepares it for its own device (``choose_device_here``).
"""

import threading

# Per worker process: estimators already unpickled, by content digest (insertion order).
MAX_RECEIVED = 4
_received_estimators = {}
_received_lock = threading.Lock()
_counts = {"estimators_unpickled": 0}


def received(digest, payload):
    """The estimator of ``payload``, unpickled once per process and prepared for it."""
    with _received_lock:
        estimator = _received_estimators.get(digest)
        if estimator is None:
            import pickle

            estimator = pickle.loads(payload)
            choose_device_here(estimator)
            _received_estimators[digest] = estimator
            while len(_received_estimators) > MAX_RECEIVED:  # oldest job's first
                _received_estimators.pop(next(iter(_received_estimators)))
            _counts["estimators_unpickled"] += 1
        return estimator


def choose_device_here(estimator):
    """Refit ``device="auto"`` vectorizers whose fitted device is not this worker's best.

    ``fit`` learns nothing from data: it loads the model and resolves the device, here
    (a GPU worker of a CPU-only client uses its GPU). A vectorizer whose weights travel in
    the pickle keeps them, on the device the pickle remapped it to.
    """
    import warnings

    import torch

    from ._vectorizer import AlbertVectorizer

    if torch.cuda.is_available():
        best = "cuda"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        best = "mps"
    else:
        best = "cpu"
    found = [estimator] if isinstance(estimator, AlbertVectorizer) else []
    if hasattr(estimator, "get_params"):
        found += [
            value
            for value in estimator.get_params(deep=True).values()
            if isinstance(value, AlbertVectorizer)
        ]
    for vectorizer in found:
        if (
            vectorizer.device != "auto"
            or vectorizer.store_weights_in_pickle
            or vectorizer.device_.split(":")[0] == best
        ):
            continue
        fingerprint = vectorizer.model_fingerprint_
        vectorizer.fit([])
        if vectorizer.model_fingerprint_ != fingerprint:
            warnings.warn(
                f"The checkpoint {vectorizer.model_name_or_path!r} on this worker differs "
                "from the one the vectorizer was fitted with; embeddings will differ. "
                "Pickle with store_weights_in_pickle=True to ship the exact weights.",
                UserWarning,
                stacklevel=2,
            )


def process_counts():
    """This process's counters (for tests and benchmarks): estimators unpickled."""
    return dict(_counts)
