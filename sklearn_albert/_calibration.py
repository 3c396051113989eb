"""Calibrating static int8 on the texts ``fit`` sees: the sample, the fallback, a memo.

``AlbertVectorizer(dtype="int8").fit`` learns activation ranges from at most
``MAX_CALIBRATION_TEXTS`` of its distinct texts (a seeded sample), or from the built-in
sample when it sees fewer than ``MIN_CALIBRATION_TEXTS``. Clones fitted on the same texts
(the candidates of one grid-search fold) share one calibration through a memo that lives
as long as an estimator holds the encoder.
"""

import hashlib
import warnings
import weakref
from functools import partial

import numpy as np

from ._engine import cut_windows, tokenize

# Calibrated encoders by (model fingerprint, digest of the calibration token ids).
_calibrations = {}


def calibrate_on_texts(texts, loaded, settings, *, progress=False):
    """A static int8 encoder calibrated on (a sample of) ``texts``, and what it learned from.

    Parameters
    ----------
    texts : list of str
        The texts ``fit`` sees.
    loaded : LoadedModel
        Its float32 model is traced and calibrated (not modified).
    settings : EncodeSettings
        Texts are cropped to its ``max_length``, as the engine crops them.
    progress : bool, default=False
        Show the calibration's progress bars on stderr (the estimator's ``verbose``).

    Returns
    -------
    encoder : StaticInt8Encoder
    report : dict
        ``n_texts`` calibrated on, ``seconds`` it took, ``source`` ("fit texts" or
        "built-in sample").
    """
    from ._cpu.int8 import (
        MAX_CALIBRATION_TEXTS,
        MIN_CALIBRATION_TEXTS,
        builtin_calibration_texts,
        calibrate_int8,
        check_int8_supported,
    )

    check_int8_supported(loaded.device)
    sample = list(dict.fromkeys(texts))
    source = "fit texts"
    if len(sample) < MIN_CALIBRATION_TEXTS:
        sample, source = builtin_calibration_texts(), "built-in sample"
        warnings.warn(
            f"dtype='int8' calibrates its activation ranges on the texts fit sees, but fit "
            f"saw {len(set(texts))} distinct texts (fewer than {MIN_CALIBRATION_TEXTS}): "
            f"calibrated on the built-in sample of {len(sample)} English sentences instead. "
            "Fit on texts like those you will embed for the best fidelity.",
            UserWarning,
            stacklevel=5,
        )
    elif len(sample) > MAX_CALIBRATION_TEXTS:
        chosen = np.random.default_rng(0).choice(len(sample), MAX_CALIBRATION_TEXTS, False)
        sample = [sample[i] for i in np.sort(chosen)]
    windows = cut_windows(
        tokenize(loaded.tokenizer, sample), loaded, settings, long_text="truncate"
    )
    encoder = _remembered(loaded, windows.ids, partial(calibrate_int8, progress=progress))
    report = {
        "n_texts": int(encoder.n_calibration_texts),
        "seconds": round(float(encoder.calibration_seconds), 3),
        "source": source,
    }
    return encoder, report


def _remembered(loaded, ids, calibrate):
    digest = hashlib.blake2b(repr(ids).encode(), digest_size=16).hexdigest()
    key = (loaded.fingerprint, digest)
    reference = _calibrations.get(key)
    encoder = reference() if reference is not None else None
    if encoder is None:
        encoder = calibrate(loaded.model, ids, pad_id=loaded.pad_id)
        _calibrations[key] = weakref.ref(encoder)
    return encoder
