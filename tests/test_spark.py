"""sklearn_albert.spark.embedding_udf on a real local Spark (``local[2]``, Java 17)."""

import os
import re
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("pandas", reason="needs pandas (pip install .[test])")
pytest.importorskip("pyarrow", reason="needs pyarrow (pip install .[test])")
pyspark = pytest.importorskip("pyspark", reason="needs pyspark (pip install .[test])")

from _tiny_model import generated_sentences  # noqa: E402

from sklearn_albert.spark import embedding_udf  # noqa: E402

# pyspark warns that it does not yet fully support pandas 3; the UDF path used here works.
pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning"
)

TEXTS = generated_sentences(120, seed=7) + ["", "a repeated text", "a repeated text"]


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        pytest.skip("needs a Java runtime (17 or newer) for Spark")
    from pyspark.sql import SparkSession

    # The Python workers must run this interpreter, which has sklearn_albert installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sklearn_albert tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def embed_with_spark(spark, vectorizer, texts, **udf_options):
    frame = spark.createDataFrame(list(enumerate(texts)), ["id", "text"]).repartition(3)
    rows = frame.withColumn("embedding", embedding_udf(vectorizer, **udf_options)("text"))
    collected = sorted(rows.collect(), key=lambda row: row.id)
    assert [row.id for row in collected] == list(range(len(texts)))
    return np.array([row.embedding for row in collected], dtype=np.float32)


def test_embedding_udf_equals_transform(spark, vectorizer):
    vectorizer.fit(["warm up"])
    embedded = embed_with_spark(spark, vectorizer, TEXTS, batch_size=16)
    assert embedded.shape == (len(TEXTS), vectorizer.n_features_out_)
    np.testing.assert_allclose(embedded, vectorizer.transform(TEXTS), atol=1e-4)


@pytest.mark.parametrize(
    ("output_dtype", "spark_type"), [("int8", "tinyint"), ("ubinary", "smallint")]
)
def test_quantized_output_travels_as_spark_integers(spark, vectorizer, output_dtype, spark_type):
    vectorizer.set_params(output_dtype=output_dtype).fit(TEXTS)
    frame = spark.createDataFrame(list(enumerate(TEXTS[:20])), ["id", "text"])
    rows = frame.withColumn("embedding", embedding_udf(vectorizer)("text"))
    assert rows.schema["embedding"].dataType.simpleString() == f"array<{spark_type}>"
    collected = sorted(rows.collect(), key=lambda row: row.id)
    embedded = np.array([row.embedding for row in collected])
    np.testing.assert_array_equal(embedded, vectorizer.transform(TEXTS[:20]))


def test_embedding_udf_of_a_pandas_output_vectorizer_with_weights_in_the_pickle(spark, vectorizer):
    vectorizer.set_params(store_weights_in_pickle=True, normalize=True).fit(["warm up"])
    vectorizer.set_output(transform="pandas")
    embedded = embed_with_spark(spark, vectorizer, TEXTS)
    np.testing.assert_allclose(embedded, vectorizer.transform(TEXTS).to_numpy(), atol=1e-4)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_a_bad_batch_size_names_the_parameter(vectorizer, batch_size):
    vectorizer.fit(["warm up"])
    with pytest.raises(ValueError, match=re.escape(f"Got batch_size={batch_size!r} but")):
        embedding_udf(vectorizer, batch_size=batch_size)
