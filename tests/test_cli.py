"""The sklearn-albert command line: embed, resume, info, demo, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sklearn_albert import _cli, _files

ROOT = Path(__file__).parents[1]
TEXTS = [
    "a great film",
    "a dull and boring film",
    "",
    'the plot is very clever, and the music is "lovely"',
    "i hate this",
    "they love the garden",
    "one two three",
    "the director was brilliant but the script was weak",
    "bad",
    "warm and funny",
]


@pytest.fixture
def model_options(tiny_albert_path):
    return ["--model", str(tiny_albert_path), "--device", "cpu", "--dtype", "float32", "--offline"]


@pytest.fixture
def expected(vectorizer):
    """What AlbertVectorizer gives for TEXTS with the options of ``model_options``."""
    return vectorizer.set_params(device="cpu").fit([]).transform(TEXTS)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def run(argv, capsys):
    status = _cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------- embed


def test_embed_txt_to_npy(text_file, tmp_path, model_options, expected, capsys):
    output = tmp_path / "out.npy"

    status, out, err = run(["embed", text_file, "-o", output, *model_options], capsys)

    assert status == 0, err
    result = np.load(output)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-6)
    assert "Embedding" in err and f"Wrote {output} 10 x 32 float32" in err
    assert not _files.sidecar_folder(output).exists()


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_embed_reads_tables_by_column(suffix, tmp_path, model_options, expected, capsys):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": range(len(TEXTS)), "review": TEXTS})
    source = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        frame.to_csv(source, index=False)
    elif suffix == ".tsv":
        source.write_text("id\treview\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TEXTS)))
    elif suffix == ".jsonl":
        frame.to_json(source, orient="records", lines=True, force_ascii=False)
    else:
        pytest.importorskip("pyarrow", reason="needs pyarrow (pip install .[test])")
        frame.to_parquet(source)
    output = tmp_path / "out.npy"

    status, out, err = run(
        ["embed", source, "-o", output, "--column", "review", "-q", *model_options], capsys
    )

    assert status == 0, err
    np.testing.assert_allclose(np.load(output), expected, atol=1e-6)


def test_embed_writes_parquet_with_one_column_per_feature(
    text_file, tmp_path, model_options, expected, capsys
):
    pq = pytest.importorskip("pyarrow.parquet", reason="needs pyarrow (pip install .[test])")
    output = tmp_path / "out.parquet"

    status, out, err = run(["embed", text_file, "-o", output, "-q", *model_options], capsys)

    assert status == 0, err
    table = pq.read_table(output)
    assert table.column_names[:2] == ["albertvectorizer0", "albertvectorizer1"]
    result = np.column_stack([column.to_numpy() for column in table.columns])
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_embed_passes_prompt_truncate_dim_and_output_dtype(
    text_file, tmp_path, model_options, vectorizer, capsys
):
    output = tmp_path / "out.npy"
    options = ["--prompt", "query: ", "--truncate-dim", "20", "--output-dtype", "ubinary"]

    status, _, err = run(["embed", text_file, "-o", output, "-q", *options, *model_options], capsys)

    assert status == 0, err
    assert "x 3 ubinary" in err
    params = {"prompt": "query: ", "truncate_dim": 20, "output_dtype": "ubinary"}
    expected = vectorizer.set_params(device="cpu", **params).fit([]).transform(TEXTS)
    result = np.load(output)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


def test_embed_passes_pooling_and_normalize(text_file, tmp_path, model_options, capsys):
    output = tmp_path / "out.npy"

    status, _, err = run(
        [
            "embed",
            text_file,
            "-o",
            output,
            "--pooling",
            "mean,cls",
            "--normalize",
            "-q",
            *model_options,
        ],
        capsys,
    )

    assert status == 0, err
    result = np.load(output)
    assert result.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(result, axis=1), 1, rtol=1e-5)


# ---------------------------------------------------------------------- resume


REAL_EMBED_CHUNK = _files.embed_chunk


class FailAfter:
    """Stands in for ``embed_chunk``: counts chunks and fails after ``n_ok`` of them."""

    def __init__(self, n_ok=None, error=None):
        error = RuntimeError("injected failure") if error is None else error
        self.calls = 0
        self.n_ok = n_ok
        self.error = error

    def __call__(self, vectorizer, texts):
        if self.n_ok is not None and self.calls >= self.n_ok:
            raise self.error
        self.calls += 1
        return REAL_EMBED_CHUNK(vectorizer, texts)


@pytest.mark.parametrize(
    "error, status", [(RuntimeError("injected failure"), 1), (KeyboardInterrupt(), 130)]
)
def test_an_interrupted_embed_resumes_without_recomputing_finished_chunks(
    text_file, tmp_path, model_options, expected, capsys, monkeypatch, error, status
):
    output = tmp_path / "out.npy"
    argv = ["embed", text_file, "-o", output, "--chunk-size", "2", "-q", *model_options]
    monkeypatch.setattr(_files, "embed_chunk", FailAfter(n_ok=2, error=error))

    first_status, _, err = run(argv, capsys)

    assert first_status == status
    line = error_line(err)
    assert "2 finished chunk(s) are kept" in line and "run the same command again" in line
    assert not output.exists()
    assert len(list(_files.sidecar_folder(output).glob("chunk-*.npy"))) == 2

    resumed = FailAfter()
    monkeypatch.setattr(_files, "embed_chunk", resumed)
    second_status, _, err = run(argv, capsys)

    assert second_status == 0, err
    assert resumed.calls == 3  # 5 chunks, 2 finished before the interruption
    assert "2 chunk(s) reused" in err
    np.testing.assert_allclose(np.load(output), expected, atol=1e-6)
    assert not _files.sidecar_folder(output).exists()


def test_chunks_of_another_input_are_discarded(
    text_file, tmp_path, model_options, capsys, monkeypatch
):
    output = tmp_path / "out.npy"
    argv = ["embed", text_file, "-o", output, "--chunk-size", "2", "-q", *model_options]
    monkeypatch.setattr(_files, "embed_chunk", FailAfter(n_ok=2))
    run(argv, capsys)
    text_file.write_text("\n".join(reversed(TEXTS)) + "\n", encoding="utf-8")

    fresh = FailAfter()
    monkeypatch.setattr(_files, "embed_chunk", fresh)
    status, _, err = run(argv, capsys)

    assert status == 0, err
    assert fresh.calls == 5
    assert "Discarding 2 chunks" in err


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make_input, extra, message",
    [
        (lambda d: d / "missing.txt", [], "no such file"),
        (lambda d: _write(d / "texts.xlsx", "x"), [], "unknown suffix '.xlsx'"),
        (
            lambda d: _write(d / "t.csv", "id,body\n1,hello\n"),
            [],
            "none is named 'text': say which one",
        ),
        (
            lambda d: _write(d / "t.csv", "id,body\n1,hello\n"),
            ["--column", "review"],
            "has the columns ['id', 'body']",
        ),
        (
            lambda d: _write(d / "t.jsonl", '{"text": "a"}\n{"text": null}\n'),
            [],
            "t.jsonl must contain only str documents, but row 1 is None",
        ),
        (lambda d: _write(d / "t.jsonl", '{"text": "a"}\nnot json\n'), [], "line 2 is not JSON"),
        (lambda d: _write_bytes(d / "t.txt", b"caf\xe9\n"), [], "is not UTF-8 text"),
        (
            lambda d: _write(d / "t.txt", "a\n"),
            ["--pooling", "median"],
            "The 'pooling' parameter of AlbertVectorizer must be",
        ),
        (lambda d: _write(d / "t.txt", "a\n"), ["--device", "tpu:9"], "Got device='tpu:9'"),
    ],
    ids=[
        "missing",
        "suffix",
        "no text column",
        "wrong column",
        "null",
        "bad json",
        "not utf-8",
        "pooling",
        "device",
    ],
)
def test_errors_are_one_line_on_stderr(tmp_path, model_options, capsys, make_input, extra, message):
    source = make_input(tmp_path)

    status, out, err = run(
        ["embed", source, "-o", tmp_path / "out.npy", *model_options, *extra], capsys
    )

    assert status == 1
    assert message in error_line(err)
    assert out == ""


def test_an_unknown_model_folder_is_a_one_line_error(text_file, tmp_path, capsys):
    status, _, err = run(
        ["embed", text_file, "-o", tmp_path / "o.npy", "--model", tmp_path / "nope", "--offline"],
        capsys,
    )
    assert status == 1
    assert "it looks like a local path, but no folder exists there" in error_line(err)


def test_an_existing_output_is_kept_unless_overwrite(text_file, tmp_path, model_options, capsys):
    output = tmp_path / "out.npy"
    output.write_bytes(b"keep me")

    status, _, err = run(["embed", text_file, "-o", output, *model_options], capsys)
    assert status == 1 and "exists. Pass --overwrite" in error_line(err)
    assert output.read_bytes() == b"keep me"

    status, _, err = run(
        ["embed", text_file, "-o", output, "--overwrite", "-q", *model_options], capsys
    )
    assert status == 0, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["embed", "in.txt"], "the following arguments are required: -o/--output"),
        (["embed", "in.txt", "-o", "o.npy", "--batch-size", "0"], "expected a positive integer"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["embed", "in.txt", "-o", "out.csv"], None),
    ],
)
def test_wrong_usage_is_one_line_and_status_2(argv, message, capsys):
    status, _, err = run(argv, capsys)
    if message is None:  # a wrong output suffix is found by the command, not argparse
        assert status == 1 and "unknown suffix '.csv'" in error_line(err)
        return
    assert status == 2
    assert message in error_line(err)


def test_traceback_option_shows_the_real_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        _cli.main(
            ["--traceback", "embed", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o.npy")]
        )


def test_version_and_help_exit_zero(capsys):
    assert _cli.main(["--version"]) == 0
    assert "sklearn-albert 0." in capsys.readouterr().out
    assert _cli.main(["embed", "--help"]) == 0
    assert "--chunk-size" in capsys.readouterr().out


# ---------------------------------------------------------------------- info and demo


def test_info_reports_model_device_dtype_dimensions_and_speed(model_options, capsys):
    status, out, err = run(["info", *model_options, "--speed-texts", "4", "--json"], capsys)

    assert status == 0, err
    report = json.loads(out)
    assert report["architecture"] == "AlbertModel"
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    assert report["hidden_size"] == 32 and report["n_features_out"] == 32
    assert report["max_length"] == 64 and report["hidden_states"] == 4
    assert report["speed"]["texts"] == 4 and report["speed"]["texts_per_second"] > 0

    status, out, _ = run(["info", *model_options, "--speed-texts", "0"], capsys)
    assert status == 0
    assert "hidden size 32" in out and "speed" not in out


def test_demo_runs_the_demo_module_with_its_own_arguments(monkeypatch, capsys):
    import sklearn_albert._demo as demo

    received = []
    monkeypatch.setattr(demo, "main", lambda argv=None: received.append(argv) or 0)

    assert _cli.main(["demo", "--fast", "--model", "x"]) == 0
    assert received == [["--fast", "--model", "x"]]


# ---------------------------------------------------------------------- packaging


def test_console_script_points_at_main():
    pyproject = (ROOT / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert scripts.strip() == 'sklearn-albert = "sklearn_albert._cli:main"'


def test_python_m_runs_in_a_fresh_process_with_identical_output(
    text_file, tmp_path, model_options, expected
):
    output = tmp_path / "out.npy"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sklearn_albert",
            "embed",
            str(text_file),
            "-o",
            str(output),
            *model_options,
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    # Deterministic across processes: the same bits as this process computed.
    np.testing.assert_array_equal(np.load(output), expected)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _write_bytes(path, content):
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------- reading files


def test_txt_lines_keep_empty_texts_and_accept_crlf(tmp_path):
    path = _write_bytes(tmp_path / "t.txt", b"\xef\xbb\xbffirst\r\n\r\nthird\twith tab\nlast")
    assert _files.read_texts(path) == ["first", "", "third\twith tab", "last"]


def test_csv_fields_may_hold_newlines_quotes_and_very_long_texts(tmp_path):
    pd = pytest.importorskip("pandas")
    texts = ["line one\nline two", 'say "hi"', "x" * 200_000, "\u2028separator"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "t.csv", index=False)
    assert _files.read_texts(tmp_path / "t.csv") == texts


def test_an_empty_input_writes_an_empty_array(tmp_path, model_options, capsys):
    source = _write(tmp_path / "empty.txt", "")
    status, _, err = run(["embed", source, "-o", tmp_path / "o.npy", "-q", *model_options], capsys)
    assert status == 0, err
    assert np.load(tmp_path / "o.npy").shape == (0, 32)


# ---------------------------------------------------------------------- stdout holds results only


def test_info_json_with_int8_prints_only_the_json_on_stdout(tiny_albert_path):
    pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
    pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "sklearn_albert", "info", "--json", "--dtype", "int8"]
    command += ["--model", str(tiny_albert_path), "--offline", "--speed-texts", "0"]
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=300
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)  # nothing but the JSON
    assert report["dtype"] == "int8" and report["n_features_out"] == 32
    assert "Statistics collection" not in completed.stderr  # silent unless asked


def test_embed_prints_nothing_on_stdout(text_file, tmp_path, model_options, capfd):
    capfd.readouterr()
    output = tmp_path / "out.npy"
    assert _cli.main(["embed", str(text_file), "-o", str(output), *model_options]) == 0
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "Wrote " in captured.err  # the summary line is a message, on stderr
    assert np.load(output).shape == (len(TEXTS), 32)


def test_info_reports_what_changes_the_features_beyond_the_checkpoint(tiny_albert_path):
    from sklearn_albert import AlbertVectorizer

    plain = AlbertVectorizer(tiny_albert_path, embedding_cache=None).fit([])
    shaped = AlbertVectorizer(
        tiny_albert_path, prompt="query: ", truncate_dim=16, embedding_cache=None
    ).fit([])

    report = _cli.describe_model(shaped)
    assert report["prompt"] == "query: " and report["truncate_dim"] == 16
    assert report["output_dtype"] == "float32" and report["adapted"] is False
    assert report["n_features_out"] == 16
    text = _cli._format_report(report)
    assert "prompt='query: '" in text and "truncate_dim=16" in text
    assert "adapted" not in text and "output_dtype" not in text
    assert "prompt" not in _cli._format_report(_cli.describe_model(plain))
