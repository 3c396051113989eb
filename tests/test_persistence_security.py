"""Hostile files: a restore never writes outside its own folder, nor follows what it should not.

Each test builds the hostile file the way an attacker would (editing a skops archive, a
pickle's state, a saved folder's ``estimator.json`` or files) and checks what the load
refuses, what the error names, and that nothing was written anywhere around it.
"""

import copyreg
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _estimator_file import edit_estimator_file

from sklearn_albert import AlbertVectorizer, skops_trusted_types

TEXTS = ["a great film", "a dull and boring film", "the plot is very clever"]
SANDBOX_TARGET = "evil.pth"


@pytest.fixture
def with_weights(vectorizer):
    return vectorizer.set_params(store_weights_in_pickle=True).fit(TEXTS)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A private temporary root: ``tempfile`` makes its folders in ``sandbox/tmp``.

    So ``../../evil.pth`` from a restore folder and the absolute name used below point to
    the same place, ``sandbox/evil.pth``, inside the tree the tests hash.
    """
    root = tmp_path / "sandbox"
    (root / "tmp").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    return root


def tree_digest(folder):
    """Every path under ``folder`` with its kind and content hash: any write changes it."""
    digest = {}
    for path in sorted(Path(folder).rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            digest[relative] = "link:" + os.readlink(path)
        elif path.is_file():
            digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[relative] = "other"
    return digest


def hostile_names(sandbox):
    return {
        "absolute": str(sandbox / SANDBOX_TARGET),
        "parent": f"../../{SANDBOX_TARGET}",
        "unknown": SANDBOX_TARGET,
    }


@contextmanager
def deadline(seconds):
    """Fail (rather than hang) if the block blocks, as an open() of a FIFO would."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------- skops and pickle


def add_skops_model_file(file, name):
    """Add ``name`` to the model-files mapping of a skops archive (content: config.json's)."""
    with zipfile.ZipFile(file) as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    schema = json.loads(members["schema.json"])

    def visit(node):
        if isinstance(node, dict):
            if "_model_files" in node:
                mapping = node["_model_files"]["content"]
                mapping[name] = dict(mapping["config.json"], __id__=1)
                key_types = node["_model_files"]["key_types"]["content"]
                key_types.append(key_types[0])  # skops zips keys with their types
                return True
            return any(visit(child) for child in node.values())
        if isinstance(node, list):
            return any(visit(child) for child in node)
        return False

    assert visit(schema), "the skops file holds no _model_files mapping"
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(file, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


@pytest.mark.parametrize("kind", ["absolute", "parent", "unknown"])
def test_a_skops_file_naming_a_model_file_outside_the_allow_list_writes_nothing(
    with_weights, sandbox, tmp_path, kind
):
    sio = pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    name = hostile_names(sandbox)[kind]
    file = tmp_path / "vect.skops"
    sio.dump(with_weights, file)
    add_skops_model_file(file, name)
    # The check the docs recommend passes: the hostile part is data, not a type.
    assert set(sio.get_untrusted_types(file=file)) <= set(skops_trusted_types())
    before = tree_digest(tmp_path)

    with pytest.raises(ValueError, match=re.escape(repr(name))):
        sio.load(file, trusted=skops_trusted_types())

    assert tree_digest(tmp_path) == before
    assert not (sandbox / SANDBOX_TARGET).exists()
    assert not Path("/", SANDBOX_TARGET).exists()


@pytest.mark.parametrize("kind", ["absolute", "parent", "unknown"])
def test_a_pickle_naming_a_model_file_outside_the_allow_list_writes_nothing(
    with_weights, sandbox, tmp_path, kind
):
    name = hostile_names(sandbox)[kind]
    state = with_weights.__getstate__()
    state["_model_files"][name] = b"import os; os.system('echo owned')\n"

    class Forger(pickle.Pickler):
        def reducer_override(self, obj):
            if obj is with_weights:
                return copyreg.__newobj__, (AlbertVectorizer,), state
            return NotImplemented

    file = tmp_path / "vect.pkl"
    with open(file, "wb") as handle:
        Forger(handle).dump(with_weights)
    before = tree_digest(tmp_path)

    with pytest.raises(ValueError, match=re.escape(repr(name))):
        pickle.loads(file.read_bytes())

    assert tree_digest(tmp_path) == before
    assert not (sandbox / SANDBOX_TARGET).exists()


def test_a_dumped_int8_vectorizer_round_trips_through_skops(tiny_albert_path, tmp_path):
    """skops.io.dump of a fitted int8 vectorizer used to abort the interpreter (SIGABRT)."""
    pytest.importorskip("skops.io", reason="needs skops (pip install .[test])")
    pytest.importorskip("openvino", reason="needs OpenVINO (pip install .[int8])")
    pytest.importorskip("nncf", reason="needs NNCF (pip install .[int8])")
    script = textwrap.dedent(
        f"""
        import numpy as np
        import skops.io as sio
        from sklearn_albert import AlbertVectorizer, skops_trusted_types

        texts = {TEXTS!r}
        vect = AlbertVectorizer({str(tiny_albert_path)!r}, dtype="int8").fit(texts)
        expected = vect.transform(texts)
        file = {str(tmp_path / "int8.skops")!r}
        sio.dump(vect, file)
        untrusted = sio.get_untrusted_types(file=file)
        assert set(untrusted) <= set(skops_trusted_types()), untrusted
        restored = sio.load(file, trusted=skops_trusted_types())
        assert restored.dtype_ == "int8", restored.dtype_
        assert np.array_equal(restored.transform(texts), expected)
        print("ROUND TRIP OK")
        """
    )
    # In a child process: an abort would take pytest down with it.
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ROUND TRIP OK" in result.stdout


# ---------------------------------------------------------------------- saved folders


def edit_document(folder, change):
    """Edit ``estimator.json`` and rewrite its checksum, as an attacker who can write it can."""
    edit_estimator_file(folder, change)


@pytest.mark.parametrize("kind", ["absolute", "parent"])
def test_a_saved_folder_listing_a_model_file_outside_its_folder_is_refused(
    fitted_tiny_vectorizer, tmp_path, kind
):
    folder = fitted_tiny_vectorizer.save(tmp_path / "vect")
    outside = (tmp_path / "outside.json") if kind == "absolute" else (folder / "outside.json")
    outside.write_text("{}")
    name = str(outside) if kind == "absolute" else "../outside.json"
    edit_document(
        folder,
        lambda document: document["files"].update({name: hashlib.sha256(b"{}").hexdigest()}),
    )
    before = tree_digest(tmp_path)

    with pytest.raises(ValueError, match=re.escape(repr(name))):
        AlbertVectorizer.load(folder)

    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("linked", ["model/config.json", "model"])
def test_a_saved_folder_with_a_symbolic_link_is_refused(fitted_tiny_vectorizer, tmp_path, linked):
    folder = fitted_tiny_vectorizer.save(tmp_path / "vect")
    original = folder / linked
    elsewhere = tmp_path / "elsewhere" / original.name
    elsewhere.parent.mkdir()
    os.replace(original, elsewhere)
    os.symlink(elsewhere, original)  # same content: only the link itself is wrong
    before = tree_digest(tmp_path)

    with pytest.raises(ValueError, match=re.escape(str(original)) + ".*symbolic link"):
        AlbertVectorizer.load(folder)

    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("replaced", ["model/tokenizer_config.json", "estimator.json"])
def test_a_fifo_in_a_saved_folder_is_refused_without_blocking(
    fitted_tiny_vectorizer, tmp_path, replaced
):
    folder = fitted_tiny_vectorizer.save(tmp_path / "vect")
    (folder / replaced).unlink()
    os.mkfifo(folder / replaced)

    with deadline(60), pytest.raises(ValueError, match=re.escape(replaced) + ".*FIFO"):
        AlbertVectorizer.load(folder)


def test_a_consistent_forgery_of_weights_and_hashes_is_accepted(tiny_albert_path, tmp_path):
    """Documented limit (docs/security.rst): the SHA-256 catches accidents, not a forger.

    Changing the weights alone is refused; changing them together with the recorded hash,
    the fingerprint and estimator.json's own checksum, as anyone who can write the folder
    can, loads and changes the output.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from sklearn_albert._loading import load_model_from_folder

    checkpoint = shutil.copytree(tiny_albert_path, tmp_path / "checkpoint")
    original = AlbertVectorizer(str(checkpoint), dtype="float32").fit(TEXTS)
    expected = original.transform(TEXTS)
    folder = original.save(tmp_path / "vect")
    weights_file = folder / "model" / "model.safetensors"
    tensors = load_file(weights_file)
    name = next(key for key in sorted(tensors) if "word_embeddings" in key)
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, weights_file, metadata={"format": "pt"})

    with pytest.raises(ValueError, match="model.safetensors changed since it was saved"):
        AlbertVectorizer.load(folder)

    forged_fingerprint = load_model_from_folder(
        folder / "model", device=torch.device("cpu")
    ).fingerprint

    def forge(document):
        document["files"]["model.safetensors"] = hashlib.sha256(
            weights_file.read_bytes()
        ).hexdigest()
        settings = document["fitted"]["settings_"]["__settings__"]["__dict__"]
        settings["model_fingerprint"] = forged_fingerprint

    edit_document(folder, forge)
    forged = AlbertVectorizer.load(folder)

    assert not np.allclose(forged.transform(TEXTS), expected)


@pytest.mark.parametrize("key", ["transform", "_loaded", "n_features_out"])
def test_an_unknown_fitted_attribute_is_refused(fitted_tiny_vectorizer, tmp_path, key):
    folder = fitted_tiny_vectorizer.save(tmp_path / "vect")
    edit_document(folder, lambda document: document["fitted"].update({key: 1}))

    with pytest.raises(ValueError, match=re.escape(repr(key)) + ".*not fitted attributes"):
        AlbertVectorizer.load(folder)


def test_every_attribute_fit_sets_is_a_known_fitted_attribute(fitted_tiny_vectorizer, tmp_path):
    public = {name for name in vars(fitted_tiny_vectorizer) if name.endswith("_")}
    public = {name for name in public if not name.startswith("_")}
    assert public <= set(AlbertVectorizer._FITTED_ATTRIBUTES)
    restored = AlbertVectorizer.load(fitted_tiny_vectorizer.save(tmp_path / "vect"))
    assert {name for name in vars(restored) if name in public} == public


def test_a_saved_token_env_must_name_a_hugging_face_token_variable(vectorizer, tmp_path):
    folder = vectorizer.set_params(token_env="AWS_SECRET_ACCESS_KEY").save(tmp_path / "vect")

    with pytest.raises(ValueError, match=re.escape("token_env='AWS_SECRET_ACCESS_KEY'")):
        AlbertVectorizer.load(folder)
    assert AlbertVectorizer.load(folder, token_env=None).token_env is None
    chosen = AlbertVectorizer.load(folder, token_env="AWS_SECRET_ACCESS_KEY")
    assert chosen.token_env == "AWS_SECRET_ACCESS_KEY"  # the caller's explicit choice
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_READ_TOKEN"):
        folder = vectorizer.set_params(token_env=name).save(tmp_path / name)
        assert AlbertVectorizer.load(folder).token_env == name


def test_a_saved_embedding_cache_folder_is_not_followed(fitted_tiny_vectorizer, tmp_path):
    from sklearn.base import clone

    cache = tmp_path / "cache"
    vect = clone(fitted_tiny_vectorizer).set_params(embedding_cache=cache).fit(TEXTS)
    folder = vect.save(tmp_path / "vect")
    del vect
    if cache.exists():
        import shutil

        shutil.rmtree(cache)

    with pytest.warns(UserWarning, match="does not follow a cache folder"):
        restored = AlbertVectorizer.load(folder)
    assert restored.embedding_cache == "memory"
    restored.transform(TEXTS)
    assert not cache.exists()

    chosen = AlbertVectorizer.load(folder, embedding_cache=tmp_path / "mine")
    assert chosen.embedding_cache == tmp_path / "mine"


# ---------------------------------------------------------------------- the allow-list and writer


def test_the_allow_list_covers_what_save_pretrained_writes_sharded_or_not(
    tiny_albert_path, tmp_path
):
    from transformers import AutoModel, AutoTokenizer

    from sklearn_albert._model_files import is_checkpoint_file_name

    model = AutoModel.from_pretrained(str(tiny_albert_path))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_albert_path))
    for folder, shard_size in ((tmp_path / "whole", "5GB"), (tmp_path / "sharded", "20KB")):
        model.save_pretrained(folder, max_shard_size=shard_size)
        tokenizer.save_pretrained(folder)
        names = sorted(path.name for path in folder.iterdir())
        assert [name for name in names if not is_checkpoint_file_name(name)] == []
    assert any(name.startswith("model-00001-of-") for name in os.listdir(tmp_path / "sharded"))


@pytest.mark.parametrize(
    "name",
    [
        "sub/config.json",
        "/etc/passwd",
        "..",
        ".",
        "",
        "config.json/..",
        "modeling_albert.py",
        "pytorch_model.bin",
        "model-1-of-2.safetensors",
        "model-00001-of-00002.safetensors.py",
    ],
)
def test_names_outside_the_allow_list_are_refused_by_name(name):
    from sklearn_albert._model_files import check_checkpoint_file_names

    with pytest.raises(ValueError, match=re.escape(repr(name))):
        check_checkpoint_file_names(["config.json", name], source="a test mapping")


def test_restored_files_are_private_and_an_existing_link_is_never_followed(tmp_path):
    from sklearn_albert._model_files import restored_checkpoint, write_new_file

    with restored_checkpoint({"config.json": b"{}", "vocab.txt": b"[PAD]\n"}) as folder:
        for name in ("config.json", "vocab.txt"):
            assert os.stat(Path(folder, name)).st_mode & 0o777 == 0o600
        restored = folder
    assert not os.path.exists(restored)

    target = tmp_path / "target.txt"
    target.write_text("unchanged")
    os.symlink(target, tmp_path / "config.json")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "config.json", b"overwritten")
    assert target.read_text() == "unchanged"
