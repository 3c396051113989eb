import re

import numpy as np
import pandas as pd
import polars as pl
import pytest

from sklearn_albert._validation import STRING_INPUT_ERROR, validate_texts


@pytest.mark.parametrize(
    "container",
    [
        ["a", "b"],
        ("a", "b"),
        np.array(["a", "b"]),
        np.array([["a"], ["b"]], dtype=object),
        pd.Series(["a", "b"]),
        pd.DataFrame({"text": ["a", "b"]}),
        pl.Series("text", ["a", "b"]),
        pl.DataFrame({"text": ["a", "b"]}),
        (text for text in ["a", "b"]),
    ],
    ids=[
        "list",
        "tuple",
        "array",
        "column-array",
        "series",
        "frame",
        "polars-series",
        "polars-frame",
        "generator",
    ],
)
def test_every_supported_container_becomes_a_list_of_str(container):
    assert validate_texts(container) == ["a", "b"]


def test_numpy_str_elements_become_plain_str():
    texts = validate_texts(np.array(["a", "b"]))
    assert all(type(text) is str for text in texts)


def test_a_bare_string_is_not_a_corpus():
    with pytest.raises(ValueError, match=re.escape(STRING_INPUT_ERROR)):
        validate_texts("just one text")


@pytest.mark.parametrize(
    "bad, type_name",
    [(None, "NoneType"), (float("nan"), "float"), (3, "int"), (b"bytes", "bytes"), (["x"], "list")],
)
def test_a_non_str_element_is_named_by_row_and_type(bad, type_name):
    with pytest.raises(ValueError, match=rf"row 2 is .* of type {type_name}\."):
        validate_texts(["ok", "fine", bad, None])


def test_a_lone_surrogate_is_named_by_row():
    with pytest.raises(ValueError, match=r"row 1 is not valid Unicode"):
        validate_texts(["fine", "bad \ud800 text"])


def test_wide_tables_are_refused_with_a_hint():
    frame = pd.DataFrame({"a": ["x"], "b": ["y"]})
    with pytest.raises(ValueError, match=r"one column of texts.*shape \(1, 2\)"):
        validate_texts(frame)


def test_a_mapping_is_refused():
    with pytest.raises(ValueError, match="got a dict"):
        validate_texts({"a": "text"})


def test_empty_strings_and_empty_corpora_are_valid():
    assert validate_texts(["", " "]) == ["", " "]
    assert validate_texts([]) == []
