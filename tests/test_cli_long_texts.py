"""The command line's long-text options: --long-text, --stride, --chunk-aggregation."""

import numpy as np
import pytest

from sklearn_albert import AlbertVectorizer, _cli

# The tiny ALBERT reads 64 tokens: the first text needs several windows, the second one.
LONG_TEXT = " ".join(["the film was good and the music was great but the plot was dull"] * 12)
TEXTS = [LONG_TEXT, "a short one"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def model_options(tiny_albert_path):
    return ["--model", str(tiny_albert_path), "--device", "cpu", "--dtype", "float32", "--offline"]


def embed(text_file, tmp_path, model_options, capsys, *options):
    output = tmp_path / "out.npy"
    status = _cli.main(
        ["embed", str(text_file), "-o", str(output), "-q", "--overwrite", *model_options, *options]
    )
    captured = capsys.readouterr()
    return status, (np.load(output) if status == 0 else None), captured.err


def expected(tiny_albert_path, **params):
    vectorizer = AlbertVectorizer(
        str(tiny_albert_path), device="cpu", dtype="float32", embedding_cache=None, **params
    )
    return vectorizer.fit([]).transform(TEXTS)


def test_long_text_chunk_encodes_long_texts_whole_as_the_estimator_does(
    text_file, tmp_path, model_options, tiny_albert_path, capsys
):
    status, chunked, err = embed(text_file, tmp_path, model_options, capsys, "--long-text", "chunk")

    assert status == 0, err
    assert "truncated" not in err
    np.testing.assert_allclose(
        chunked, expected(tiny_albert_path, long_text="chunk"), rtol=1e-5, atol=1e-6
    )
    with pytest.warns(UserWarning, match="1 of 2 distinct texts are longer"):
        truncated = expected(tiny_albert_path)
    assert not np.allclose(chunked[0], truncated[0], atol=1e-3)  # the windows after the first
    np.testing.assert_allclose(chunked[1], truncated[1], rtol=1e-5, atol=1e-6)  # one window


def test_stride_and_chunk_aggregation_reach_the_vectorizer(
    text_file, tmp_path, model_options, tiny_albert_path, capsys
):
    options = ["--long-text", "chunk", "--stride", "8", "--chunk-aggregation", "max"]

    status, result, err = embed(text_file, tmp_path, model_options, capsys, *options)

    assert status == 0, err
    reference = expected(tiny_albert_path, long_text="chunk", stride=8, chunk_aggregation="max")
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-6)
    default_chunking = expected(tiny_albert_path, long_text="chunk")
    assert not np.allclose(result[0], default_chunking[0], atol=1e-3)


def test_the_truncation_warning_names_the_command_line_option(
    text_file, tmp_path, model_options, capsys
):
    status, _, err = embed(text_file, tmp_path, model_options, capsys)

    assert status == 0, err
    warning = next(line for line in err.splitlines() if "truncated" in line)
    assert warning == (
        "sklearn-albert: warning: 1 of 2 distinct texts are longer than max_length_=64 tokens "
        "and were truncated. --long-text chunk encodes them whole."
    )


@pytest.mark.parametrize("option", [["--stride", "8"], ["--chunk-aggregation", "max"]])
def test_chunk_options_without_long_text_chunk_are_a_usage_error(
    text_file, tmp_path, model_options, capsys, option
):
    status, _, err = embed(text_file, tmp_path, model_options, capsys, *option)

    assert status == 2
    assert err.strip() == (
        f"sklearn-albert: error: {option[0]} applies only with --long-text chunk"
    )


def test_a_stride_too_large_for_the_window_is_a_one_line_error(
    text_file, tmp_path, model_options, capsys
):
    options = ["--long-text", "chunk", "--stride", "500"]

    status, _, err = embed(text_file, tmp_path, model_options, capsys, *options)

    assert status == 1
    assert err.strip() == (
        "sklearn-albert: error: Got stride=500 but a window holds only 62 text tokens "
        "(max_length minus special tokens). Use a stride below 62."
    )


@pytest.mark.parametrize("command", ["embed", "info"])
def test_help_lists_the_long_text_options(command, capsys):
    assert _cli.main([command, "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--long-text {truncate,chunk}" in help_text
    assert "--stride STRIDE" in help_text
    assert "--chunk-aggregation {mean,max,weighted}" in help_text
