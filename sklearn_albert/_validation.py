"""Turn whatever the user passed as a corpus into a clean list of ``str``, or a clear error."""

import math
from collections.abc import Iterable, Mapping
from numbers import Real

STRING_INPUT_ERROR = "Iterable over raw text documents expected, string object received."


def validate_texts(X, *, parameter="X"):
    """Return the documents of ``X`` as a list of ``str``.

    Accepted containers are lists, tuples, 1-D numpy arrays, ``(n, 1)`` numpy arrays,
    pandas Series, one-column DataFrames and any other iterable of strings (generators
    are consumed once). Every element must be a ``str``; ``""`` is a valid document.

    Parameters
    ----------
    X : iterable of str
        The corpus.
    parameter : str, default="X"
        The name used for ``X`` in error messages.

    Returns
    -------
    texts : list of str

    Raises
    ------
    ValueError
        If ``X`` is a single string (or bytes), a mapping, a set (no order to return
        rows in), a table with several columns, or if an element is not a valid ``str``:
        None, NaN, pandas' NA, numbers, bytes, nested lists, text with a lone surrogate
        (the message names the first bad row and its type).

    Notes
    -----
    An empty ``X`` is valid and gives an empty list. ``str`` subclasses such as numpy's
    ``str_`` are converted to ``str``.
    """
    if isinstance(X, (str, bytes, bytearray, memoryview)):
        raise ValueError(STRING_INPUT_ERROR)
    if isinstance(X, Mapping):
        raise ValueError(
            f"{parameter} must be an iterable of str, got a {type(X).__name__}. "
            "Pass the texts themselves, e.g. list(mapping.values())."
        )
    if isinstance(X, (set, frozenset)):
        # Output rows follow input order; a set has none, so rows could not be matched.
        raise ValueError(
            f"{parameter} must be an ordered iterable of str, got a {type(X).__name__}, "
            "whose order is arbitrary. Pass a list, e.g. sorted(texts)."
        )
    X = _single_column(X, parameter)
    if not isinstance(X, Iterable) or getattr(X, "shape", None) == ():
        raise ValueError(f"{parameter} must be an iterable of str, got {type(X).__name__}.")
    texts = list(X)
    for row, text in enumerate(texts):
        if type(text) is not str:
            if not isinstance(text, str):
                _raise_bad_element(row, text, parameter)
            # numpy's str_ and other str subclasses become plain str for the tokenizer.
            texts[row] = str.__str__(text)
    for row, text in enumerate(texts):
        if not text.isascii():
            _check_encodable(row, text, parameter)
    return texts


def _single_column(X, parameter):
    """Unwrap a one-column DataFrame or ``(n, 1)`` array; refuse wider tables."""
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) < 2:
        return X
    if len(shape) > 2 or shape[1] != 1:
        raise ValueError(
            f"{parameter} must be one column of texts, got an array-like of shape "
            f"{tuple(shape)}. Select the text column first, e.g. df['text']."
        )
    if hasattr(X, "iloc"):
        return X.iloc[:, 0]
    return X[:, 0]


def _raise_bad_element(row, value, parameter):
    kind = type(value).__name__
    if _is_missing(value):
        hint = "Drop or fill missing values first, e.g. series.fillna('')."
    elif isinstance(value, (bytes, bytearray)):
        hint = "Decode bytes to str first, e.g. value.decode('utf-8')."
    else:
        hint = "Convert every document to str first."
    raise ValueError(
        f"{parameter} must contain only str documents, but row {row} is "
        f"{value!r:.60} of type {kind}. {hint}"
    )


def _is_missing(value):
    """None, a float NaN (numpy's too), or pandas' NA and NaT."""
    if value is None or type(value).__name__ in {"NAType", "NaTType"}:
        return True
    try:
        return isinstance(value, Real) and math.isnan(value)
    except (TypeError, ValueError):
        return False


def _check_encodable(row, text, parameter):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{parameter} row {row} is not valid Unicode: it holds the lone surrogate "
            f"{text[error.start]!r} at position {error.start}. Repair it first, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8')."
        ) from None


def input_name(X):
    """The name of the text column ``X`` is, when it has one, else None.

    A pandas or polars Series with a string name, or a one-column pandas or polars
    DataFrame, is a named column (skrub's TableVectorizer hands columns over this way);
    lists, arrays and unnamed Series are not. Read before ``validate_texts`` consumes ``X``.
    """
    columns = getattr(X, "columns", None)
    if columns is not None and getattr(X, "shape", (0, 0))[1:] == (1,):
        name = list(columns)[0]
    else:
        name = getattr(X, "name", None) if hasattr(X, "shape") else None
    return name if isinstance(name, str) and name else None
