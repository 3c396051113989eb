"""Without a network, a load that needs the hub fails in seconds, with the loader's message.

Each load runs in a fresh process whose ``HF_ENDPOINT`` is a local port nothing listens
on and whose Hugging Face cache is empty, so the hub is unreachable on any machine.
Before ``_hub.py`` these loads sat in ``huggingface_hub``'s retry loop for five minutes;
the 60-second limit of each run is what tells.
"""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUN_LIMIT_SECONDS = 60
OFFLINE_HELP = "To work offline, download the checkpoint once where the hub is reachable"


def closed_port():
    """A local TCP port that nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_environment(tmp_path, endpoint):
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"}
    }
    environment.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        HF_HOME=str(tmp_path / "hf-home"),
        HF_ENDPOINT=endpoint,
    )
    return environment


def run_python(arguments, tmp_path, endpoint, cwd=None):
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        env=offline_environment(tmp_path, endpoint),
        cwd=cwd or tmp_path,
        timeout=RUN_LIMIT_SECONDS,
    )


def fit_in_fresh_process(model, tmp_path, endpoint, cwd=None):
    code = (
        "from sklearn_albert import AlbertVectorizer\n"
        f"AlbertVectorizer({model!r}, dtype='float32').fit(['x'])\n"
        "print('loaded')\n"
    )
    return run_python(["-c", code], tmp_path, endpoint, cwd=cwd)


@pytest.fixture
def unreachable_endpoint():
    return f"http://127.0.0.1:{closed_port()}"


def assert_failed_fast_with_the_loaders_message(completed, model):
    assert completed.returncode != 0 and "loaded" not in completed.stdout
    assert "Retry" not in completed.stderr, completed.stderr[-2000:]
    last_lines = completed.stderr.strip().splitlines()[-2:]
    assert last_lines[0].startswith(f"OSError: Could not load model_name_or_path={model!r}")
    assert last_lines[1].startswith(OFFLINE_HELP)
    return last_lines[0]


def test_an_uncached_hub_id_fails_fast_when_the_hub_is_unreachable(tmp_path, unreachable_endpoint):
    completed = fit_in_fresh_process("albert-base-v2", tmp_path, unreachable_endpoint)

    message = assert_failed_fast_with_the_loaders_message(completed, "albert-base-v2")
    assert f"could not connect to the Hugging Face hub at {unreachable_endpoint}" in message
    assert "is neither in the local Hugging Face cache" in message


def test_a_mistyped_relative_folder_fails_fast_and_says_it_is_no_folder_here(
    tmp_path, unreachable_endpoint
):
    # "models/albert-base-v2" is a valid hub id too: with no models/ folder here it is
    # tried as one, and the message says it is not a folder here either.
    completed = fit_in_fresh_process("models/albert-base-v2", tmp_path, unreachable_endpoint)

    message = assert_failed_fast_with_the_loaders_message(completed, "models/albert-base-v2")
    assert f"nor a folder here ({tmp_path})" in message


def test_a_missing_folder_under_an_existing_one_is_a_path_error_without_a_probe(
    tmp_path, unreachable_endpoint
):
    (tmp_path / "models").mkdir()

    completed = fit_in_fresh_process("models/albert-base-v3", tmp_path, unreachable_endpoint)

    message = assert_failed_fast_with_the_loaders_message(completed, "models/albert-base-v3")
    assert "it looks like a local path, but no folder exists there" in message
    assert "could not connect" not in completed.stderr


def test_the_command_lines_default_model_fails_fast_in_one_line(tmp_path, unreachable_endpoint):
    completed = run_python(
        ["-m", "sklearn_albert", "info", "--speed-texts", "0"], tmp_path, unreachable_endpoint
    )

    assert completed.returncode == 1
    assert "Retry" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr[-2000:]
    assert lines[0].startswith(
        "sklearn-albert: error: Could not load model_name_or_path='albert-base-v2'"
    )
    assert f"could not connect to the Hugging Face hub at {unreachable_endpoint}" in lines[0]


def cache_tiny_albert_as_a_hub_download(tmp_path, tiny_albert_path):
    """Lay the tiny ALBERT out in the Hugging Face cache as ``someorg/tiny-albert``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-home" / "hub" / "models--someorg--tiny-albert"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in Path(tiny_albert_path).iterdir():
        if file.is_file():
            (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return "someorg/tiny-albert"


def test_a_cached_checkpoint_loads_from_the_cache_once_a_probe_found_the_hub_unreachable(
    tmp_path, tiny_albert_path, unreachable_endpoint
):
    cached = cache_tiny_albert_as_a_hub_download(tmp_path, tiny_albert_path)
    code = (
        "from sklearn_albert import AlbertVectorizer\n"
        "try:\n"
        "    AlbertVectorizer('albert-base-v2').fit([])\n"
        "except OSError as error:\n"
        "    print('refused:', str(error).splitlines()[0])\n"
        f"vectorizer = AlbertVectorizer({cached!r}, dtype='float32').fit(['x'])\n"
        "print('loaded', vectorizer.transform(['a film']).shape)\n"
    )

    completed = run_python(["-c", code], tmp_path, unreachable_endpoint)

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "refused: Could not load model_name_or_path='albert-base-v2'" in completed.stdout
    assert "loaded (1, 32)" in completed.stdout
    assert "Retry" not in completed.stderr


def test_a_cached_checkpoint_loaded_first_thing_offline_reads_the_cache_without_retries(
    tmp_path, tiny_albert_path, unreachable_endpoint
):
    # No earlier probe and no offline variable: the load itself probes, finds the hub out of
    # reach and reads the cache, instead of sitting in huggingface_hub's retries (146 s).
    cached = cache_tiny_albert_as_a_hub_download(tmp_path, tiny_albert_path)
    code = (
        "from sklearn_albert import AlbertVectorizer\n"
        f"vectorizer = AlbertVectorizer({cached!r}, dtype='float32').fit(['x'])\n"
        "print('loaded', vectorizer.transform(['a film']).shape)\n"
    )

    completed = run_python(["-c", code], tmp_path, unreachable_endpoint)

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "loaded (1, 32)" in completed.stdout
    assert "Retry" not in completed.stderr


def test_a_cached_checkpoint_under_offline_set_at_run_time_never_contacts_the_hub(
    tmp_path, tiny_albert_path
):
    """HF_HUB_OFFLINE set after huggingface_hub was imported: no probe, no request."""
    cached = cache_tiny_albert_as_a_hub_download(tmp_path, tiny_albert_path)
    code = (
        "import os\n"
        "from sklearn_albert import AlbertVectorizer\n"
        "os.environ['HF_HUB_OFFLINE'] = '1'\n"
        f"vectorizer = AlbertVectorizer({cached!r}, dtype='float32').fit(['x'])\n"
        "print('loaded', vectorizer.transform(['a film']).shape)\n"
    )
    counter = ConnectionCounter()
    try:
        completed = run_python(["-c", code], tmp_path, counter.endpoint)
    finally:
        counter.close()

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "loaded (1, 32)" in completed.stdout
    assert counter.connections == 0


class ConnectionCounter:
    """A local TCP listener that counts the connections made to it."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.server.close()


@pytest.mark.parametrize("local_files_only", [False, True])
def test_local_checkpoints_load_without_probing_the_hub(
    tmp_path, tiny_albert_path, local_files_only
):
    counter = ConnectionCounter()
    try:
        code = (
            "from sklearn_albert import AlbertVectorizer\n"
            f"AlbertVectorizer({str(tiny_albert_path)!r}, dtype='float32', "
            f"local_files_only={local_files_only}).fit(['x'])\n"
            "print('loaded')\n"
        )
        completed = run_python(["-c", code], tmp_path, counter.endpoint)
    finally:
        counter.close()

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert counter.connections == 0


@pytest.mark.parametrize(
    "source, expected",
    [
        ("albert-base-v2", False),
        ("google/electra-small-discriminator", False),
        ("./albert-base-v2", True),
        (".albert", True),
        ("../models/albert", True),
        ("/opt/models/albert", True),
        ("~/models/albert", True),
        ("models/albert/v2", True),
        ("models\\albert", True),
        ("C:\\models\\albert", True),
    ],
)
def test_names_that_can_only_be_paths_are_told_from_hub_ids(source, expected):
    from sklearn_albert._hub import looks_like_local_path

    assert looks_like_local_path(source) is expected


def test_owner_slash_name_is_a_path_when_the_owner_is_a_folder_here(tmp_path, monkeypatch):
    from sklearn_albert._hub import looks_like_local_path

    monkeypatch.chdir(tmp_path)
    assert looks_like_local_path("models/albert-base-v2") is False
    (tmp_path / "models").mkdir()
    assert looks_like_local_path("models/albert-base-v2") is True
