"""Warnings that name the user's line, once per call.

A truncation is found deep inside the library, often under scikit-learn (a ``Pipeline``,
``cross_val_score``, ``GridSearchCV``): a fixed ``stacklevel`` would name a line of
``sklearn/base.py``. :func:`warn_at_caller` walks out of this package's, scikit-learn's
and joblib's frames and names the first line outside them: the user's.

Once per call: a direct call of a method of this package warns at most once (each method
warns once). A call of a scikit-learn function or meta-estimator (``cross_val_score``,
``GridSearchCV.fit``, ``Pipeline.fit``) runs the vectorizer many times, once per fold
and candidate; it warns for the first of them only, since every later warning would name
the same user line. A call is told apart from the next by its outermost scikit-learn frame
and the user's line, remembered by identity only: holding the frame itself would keep the
user's arguments (data sets, estimators) alive. A frame's id may be reused by a later call
from the same line, which then stays silent too: a repeat of a warning already shown.
"""

import os
import sys
import threading
import warnings

import joblib
import sklearn

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIBRARY_DIRS = (_PACKAGE_DIR,) + tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep for module in (sklearn, joblib)
)
_last_call = threading.local()


def warn_at_caller(message, category=UserWarning):
    """Warn ``message``, naming the first line outside this package and scikit-learn.

    Parameters
    ----------
    message : str
        The warning's text.
    category : type of Warning, default=UserWarning
        Its class.
    """
    frame = sys._getframe(1)
    stacklevel = 2  # warnings.warn's count for the frame that called this function
    outermost = None
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        outermost = frame
        frame = frame.f_back
        stacklevel += 1
    if frame is None:  # all library code (a worker thread): name the line that warned
        warnings.warn(message, category, stacklevel=2)
        return
    if not outermost.f_code.co_filename.startswith(_PACKAGE_DIR):
        # Called through scikit-learn: one warning for the whole call.
        call = (id(outermost), outermost.f_code, id(frame), frame.f_lasti)
        if getattr(_last_call, "key", None) == call:
            return
        _last_call.key = call
    warnings.warn(message, category, stacklevel=stacklevel)
