"""Text columns in pandas and polars tables: ColumnTransformer, set_output, direct columns."""

import re

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TEXTS = ["the good film", "a bad movie", "", "i love this very moving story", "dull"]
DATA = {
    "review": TEXTS,
    "price": [3.0, 1.5, 2.0, 4.5, 1.0],
    "genre": ["drama", "comedy", "drama", "drama", "comedy"],
}
FRAMES = {"pandas": pd.DataFrame, "polars": pl.DataFrame}


def table_transformer(vectorizer, text_column):
    return ColumnTransformer(
        [
            ("text", clone(vectorizer), text_column),
            ("num", StandardScaler(), ["price"]),
            ("cat", OneHotEncoder(sparse_output=False), ["genre"]),
        ]
    )


@pytest.mark.parametrize("library", ["pandas", "polars"])
@pytest.mark.parametrize("text_column", ["review", ["review"]], ids=["name", "list"])
def test_a_column_transformer_embeds_the_text_column_beside_the_others(
    vectorizer, library, text_column
):
    # "review" hands the vectorizer a Series, ["review"] a one-column table: both work.
    table = FRAMES[library](DATA)
    columns = table_transformer(vectorizer, text_column).set_output(transform=library)
    out = columns.fit_transform(table)
    n_text = vectorizer.fit(TEXTS).n_features_out_
    assert isinstance(out, FRAMES[library])
    assert out.shape == (5, n_text + 1 + 2)
    names = list(out.columns)
    assert names[:2] == ["text__review_0", "text__review_1"]
    assert names[n_text:] == ["num__price", "cat__genre_comedy", "cat__genre_drama"]
    assert names == columns.get_feature_names_out().tolist()
    np.testing.assert_allclose(
        np.asarray(out[names[:n_text]]), vectorizer.transform(TEXTS), rtol=1e-6
    )


@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_set_output_gives_a_frame_named_after_the_column(vectorizer, library):
    table = FRAMES[library](DATA)
    for column in (table["review"], table[["review"]]):
        fitted = clone(vectorizer).set_output(transform=library).fit(column)
        out = fitted.transform(column)
        assert isinstance(out, FRAMES[library])
        assert list(out.columns[:2]) == ["review_0", "review_1"]
        np.testing.assert_array_equal(out.to_numpy(), fitted.transform(TEXTS).to_numpy())


def test_a_polars_column_reads_like_a_list(vectorizer):
    vectorizer.fit(TEXTS)
    table = pl.DataFrame(DATA)
    expected = vectorizer.transform(TEXTS)
    np.testing.assert_array_equal(vectorizer.transform(table["review"]), expected)
    np.testing.assert_array_equal(vectorizer.transform(table.select("review")), expected)
    np.testing.assert_array_equal(
        vectorizer.transform(table.lazy().select("review").collect()), expected
    )


def test_a_wide_polars_table_names_its_shape_and_the_fix(vectorizer):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X must be one column of texts, got an array-like of shape (5, 3). "
            "Select the text column first, e.g. df['text']."
        ),
    ):
        vectorizer.fit(pl.DataFrame(DATA))


def test_a_missing_value_in_a_polars_column_names_its_row(vectorizer):
    column = pl.Series("review", ["fine", None, "good"])
    with pytest.raises(ValueError, match=r"row 1 is None of type NoneType"):
        vectorizer.fit(column)
