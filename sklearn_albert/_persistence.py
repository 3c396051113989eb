"""Persistence for every estimator that holds a checkpoint: pickle, a pickle-free folder, devices.

:class:`EncoderPersistence` is the one base that ``AlbertVectorizer`` and
``AlbertClassifier`` share: ``__getstate__``/``__setstate__`` (the weights travel when the
estimator says so, and an estimator restored with its weights hands them to its clones),
``save``/``load``, and the move to this machine's device when the fitted one is
missing. Each estimator supplies four small hooks (see the class).

A pickle (or joblib) file runs code when it is loaded, so it is only safe from a trusted
source. ``save`` writes a folder that loads without executing anything::

    estimator.json      class, versions, parameters, fitted attributes, file hashes, and
                        the SHA-256 of all of that (``document_sha256``)
    model/              the checkpoint: model.safetensors, config.json, tokenizer files
    head.safetensors    weights the estimator adds on top of the checkpoint (a fine-tuned
                        AlbertClassifier's classification head); absent for a vectorizer

Parameters and fitted attributes are plain JSON values; tuples and paths are tagged so
that ``get_params()`` round-trips exactly; arrays of labels (``classes_``) and lists of
records (``history_``) round-trip too. ``load`` refuses any model file whose name is not
a checkpoint file name ``save_pretrained`` writes (``_model_files.py``), any link, FIFO or
other non-regular file, any file whose SHA-256 differs from the one recorded at save time,
and any fitted attribute the class does not define. ``estimator.json`` checks itself
first: its ``document_sha256`` is the SHA-256 of the canonical JSON of every other field
(:func:`estimator_file_checksum`), so a flipped digit in a setting (the layer pooled,
``max_length``) is refused instead of changing the embeddings. Folders of format 2 and
earlier have no such field and load as before. The hashes catch accidental change (a
truncated copy, a flipped bit), not a forger: whoever can write the folder can change a
file and its recorded hashes together (docs/security.rst).

This module also names the types a skops file of this project holds
(:func:`skops_trusted_types`), for ``skops.io.load(file, trusted=...)``.
"""

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from ._model_files import (
    check_checkpoint_file_names,
    check_real_folder,
    open_regular_file,
)
from ._settings import EncodeSettings

logger = logging.getLogger("sklearn_albert")

FORMAT_NAME = "sklearn_albert.estimator"
#: 3: ``estimator.json`` records ``document_sha256``, which format 3 requires (2 and
#: earlier have none). A reader of format 2 refuses a format 3 folder (it could not check
#: it) and says to upgrade.
FORMAT_VERSION = 3
#: The first format whose ``estimator.json`` must hold :data:`CHECKSUM_FIELD`.
CHECKSUMMED_FORMAT_VERSION = 3
ESTIMATOR_FILE = "estimator.json"
#: The field of ``estimator.json`` holding the SHA-256 of every other field.
CHECKSUM_FIELD = "document_sha256"
MODEL_FOLDER = "model"
#: Suffixes of checkpoint files that are pure data; anything else is refused on load.
DATA_SUFFIXES = (".json", ".safetensors", ".model", ".txt")
EXTRA_WEIGHTS_FILE = "head.safetensors"
#: Fitted artefacts beside the checkpoint (a calibrated int8 encoder: OpenVINO's XML graph,
#: its binary weights, a JSON description), each checked by hash on load; never code.
EXTRA_FILES_FOLDER = "fitted"
EXTRA_FILE_SUFFIXES = (".xml", ".bin", ".json")
#: The environment variables a saved folder's ``token_env`` may name without the caller
#: confirming it: Hugging Face token variables (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``,
#: ``HF_..._TOKEN``). A folder naming another variable (``AWS_SECRET_ACCESS_KEY``,
#: ``GITHUB_TOKEN``) could otherwise make load() send that secret to the hub.
HUB_TOKEN_VARIABLE = re.compile(r"(HF|HUGGING_FACE)(_[A-Z0-9]+)*_TOKEN")


class _AsSaved:
    """The default of ``load``'s overrides: keep what the folder holds (after its checks)."""

    def __repr__(self):
        return "'as saved'"


AS_SAVED = _AsSaved()


def save_estimator(estimator, path, *, include_model=True):
    """Write ``estimator`` into the folder ``path``.

    Parameters
    ----------
    estimator : AlbertVectorizer or AlbertClassifier
        Fitted or not; an unfitted one saves its parameters only.
    path : str or path-like
        A folder that does not exist yet, an empty folder, or a folder written by an
        earlier ``save`` (it is replaced as a whole).
    include_model : bool, default=True
        Write the checkpoint's weights and tokenizer, so the folder needs nothing else.
        If False, ``load`` reloads the model from ``model_name_or_path`` on first use.
        A fitted classifier's state is its tuned weights, so it needs True.

    Returns
    -------
    path : pathlib.Path
        The folder written.
    """
    path = Path(path)
    _check_destination(path)
    fitted = _fitted_attributes(estimator)
    extra_weights = estimator._extra_weights() if fitted else None
    if fitted and not include_model and estimator._weights_are_fitted_state():
        raise ValueError(
            f"Cannot save a fitted {type(estimator).__name__} with include_model=False: its "
            "fine-tuned weights are its fitted state. Use include_model=True (the default)."
        )
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": _qualified_name(type(estimator)),
        "versions": _versions(),
        "params": {
            name: to_json_value(value, f"parameter {name}")
            for name, value in estimator.get_params(deep=False).items()
        },
        "fitted": {
            name: to_json_value(value, f"fitted attribute {name}") for name, value in fitted.items()
        },
        "files": {},
        "extra_weights": None,
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if fitted and include_model:
            from ._loading import save_model_files

            model_folder = staging / MODEL_FOLDER
            model_folder.mkdir()
            save_model_files(estimator._model_to_save(), model_folder)
            document["files"] = _hash_files(model_folder)
            _refuse_code_files(model_folder, document["files"], when="saving")
        if extra_weights is not None:
            from safetensors.torch import save_file

            extra_file = staging / EXTRA_WEIGHTS_FILE
            save_file(
                {
                    name: tensor.detach().cpu().contiguous()
                    for name, tensor in extra_weights.items()
                },
                extra_file,
            )
            document["extra_weights"] = {
                "file": EXTRA_WEIGHTS_FILE,
                "sha256": file_sha256(extra_file),
            }
        extra_files = estimator._extra_files() if fitted else {}
        if extra_files:
            extra_folder = staging / EXTRA_FILES_FOLDER
            extra_folder.mkdir()
            for name, content in extra_files.items():
                _check_extra_file_name(name)
                (extra_folder / name).write_bytes(content)
            document["extra_files"] = _hash_files(extra_folder)
        document[CHECKSUM_FIELD] = estimator_file_checksum(document)
        (staging / ESTIMATOR_FILE).write_text(
            json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        _replace_folder(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Saved %s to %s", type(estimator).__name__, path)
    return path


def estimator_file_checksum(document):
    """The SHA-256 that ``estimator.json`` records of itself, as a hex string.

    It hashes the canonical JSON of every field but :data:`CHECKSUM_FIELD`: keys sorted,
    no whitespace (``separators=(",", ":")``), non-ASCII characters escaped, UTF-8. The
    document is parsed before hashing, so the file's own layout (indentation, key order)
    does not matter; any change of a value, key or type does.

    Parameters
    ----------
    document : dict
        The parsed ``estimator.json``, with or without :data:`CHECKSUM_FIELD`.

    Returns
    -------
    checksum : str
        64 hexadecimal digits.
    """
    content = {name: value for name, value in document.items() if name != CHECKSUM_FIELD}
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_saved(cls, path):
    """The parameters and fitted attributes of a folder written by :func:`save_estimator`.

    Parameters
    ----------
    cls : type
        The estimator class expected in the folder.
    path : str or path-like

    Returns
    -------
    document : dict
        The whole ``estimator.json``.
    params : dict
    fitted : dict
        Empty for an unfitted estimator.
    """
    path = Path(path)
    document = _read_document(path, cls)
    params = {name: from_json_value(value) for name, value in document["params"].items()}
    fitted = {name: from_json_value(value) for name, value in document["fitted"].items()}
    return document, params, fitted


def read_saved_model(path, document, *, device, fingerprint):
    """The checkpoint of a saved folder on ``device`` (None when saved without it).

    Every file is checked against its recorded SHA-256 and must be a data file; the
    checkpoint's fingerprint must be the one the estimator was fitted with. A fingerprint
    of the scheme before ``FINGERPRINT_SCHEME`` (a folder saved by an older sklearn_albert)
    cannot be recomputed the same way by every transformers release: there the recorded
    SHA-256s vouch for the files, and the estimator re-keys to today's fingerprint.
    """
    if not document["files"]:
        return None
    from ._loading import is_legacy_fingerprint, load_model_from_folder

    model_folder = Path(path) / MODEL_FOLDER
    _check_files(model_folder, document["files"])
    loaded = load_model_from_folder(model_folder, device=device)
    if loaded.fingerprint != fingerprint and not is_legacy_fingerprint(fingerprint):
        raise ValueError(
            f"Refusing to load {str(model_folder)!r}: its checkpoint's fingerprint differs "
            "from the one the estimator was fitted with."
        )
    return loaded


def read_saved_extra_weights(path, document):
    """The tensors of ``head.safetensors`` after checking its name and hash, or None."""
    return _read_extra_weights(Path(path), document.get("extra_weights"))


def read_saved_extra_files(path, document):
    """``{name: bytes}`` of the fitted artefacts a folder holds, each hash-checked."""
    recorded = document.get("extra_files") or {}
    folder = Path(path) / EXTRA_FILES_FOLDER
    check_real_folder(folder)
    files = {}
    for name, expected in recorded.items():
        _check_extra_file_name(name)
        content = _read_regular(folder / name)
        if hashlib.sha256(content).hexdigest() != expected:
            raise ValueError(
                f"Refusing to load {str(folder)!r}: {name} changed since it was saved "
                "(its SHA-256 differs from the one in estimator.json)."
            )
        files[name] = content
    return files


def _check_extra_file_name(name):
    if (
        not isinstance(name, str)
        or Path(name).name != name
        or name in (".", "..")
        or not name.endswith(EXTRA_FILE_SUFFIXES)
    ):
        raise ValueError(
            f"Refusing the fitted file {name!r}: only plain names ending in "
            f"{', '.join(EXTRA_FILE_SUFFIXES)} are data this format reads."
        )


class EncoderPersistence:
    """Pickling, saving without pickle and device moves for estimators that hold a checkpoint.

    Mix in left of ``BaseEstimator``. The estimator keeps its resolved
    :class:`~sklearn_albert._settings.EncodeSettings` in ``settings_`` (the device and
    precision live there) and its loaded checkpoint in ``_loaded``, and defines:

    - ``_TRANSIENT``: private attributes never pickled (rebuilt from the weights);
    - ``_weights_travel()``: whether a pickle carries the weights;
    - ``_weights_are_fitted_state()``: whether the weights were tuned by ``fit`` (then
      they always travel, and ``save`` refuses ``include_model=False``);
    - ``_model_to_save()``: the ``LoadedModel`` whose files a pickle or folder holds;
    - ``_extra_weights()``: tensors beside the checkpoint (a classifier's head), or None;
    - ``_extra_files()`` / ``_restore_extra_files(files)``: other fitted artefacts as
      ``{name: bytes}`` (a calibrated int8 encoder); none by default;
    - ``_attach_model(loaded, extra_weights)``: take a checkpoint restored from a pickle
      or folder;
    - ``_dtype_on(device)``: the precision name the estimator computes in on ``device``.
    """

    _TRANSIENT = ("_loaded",)

    def _extra_files(self):
        return {}

    def _weights_are_fitted_state(self):
        return False

    def _restore_extra_files(self, files):
        if files:
            raise ValueError(f"A {type(self).__name__} folder holds no fitted files.")

    @property
    def device_(self):
        """The device the model runs on."""
        return self.settings_.device

    @property
    def dtype_(self):
        """The compute precision in use."""
        return self.settings_.compute_dtype

    @property
    def max_length_(self):
        """The token limit in use, special tokens included."""
        return self.settings_.max_length

    @property
    def model_fingerprint_(self):
        """A hash of the checkpoint's architecture, tokenizer and weights."""
        return self.settings_.model_fingerprint

    def __getstate__(self):
        # A copy: on Python 3.11+ BaseEstimator hands back the live __dict__ itself.
        state = dict(super().__getstate__())
        for name in self._TRANSIENT:
            state.pop(name, None)
        if "settings_" in state and self._extra_files():
            # Fitted artefacts (a calibrated int8 encoder) travel as data files, never as
            # the live runtime objects: skops could not walk those (it aborted the
            # interpreter), and a pickle of them would carry more than data.
            state["_fitted_files"] = dict(self._extra_files())
        if "settings_" in state and self._weights_travel():
            from ._loading import export_model_files

            state["_model_files"] = export_model_files(self._model_to_save())
            extra = self._extra_weights()
            if extra is not None:
                from safetensors.torch import save

                state["_extra_weights"] = save(
                    {name: tensor.detach().cpu().contiguous() for name, tensor in extra.items()}
                )
        return state

    def __setstate__(self, state):
        model_files = state.pop("_model_files", None)
        extra = state.pop("_extra_weights", None)
        fitted_files = state.pop("_fitted_files", None)
        super().__setstate__(state)
        if "settings_" not in vars(self):
            return
        self._move_to_available_device()
        if fitted_files is not None:
            self._restore_extra_files(fitted_files)
        if model_files is not None:
            import torch

            from ._loading import is_legacy_fingerprint, load_model_from_files

            loaded = load_model_from_files(model_files, device=torch.device(self.device_))
            if loaded.fingerprint != self.model_fingerprint_ and not is_legacy_fingerprint(
                self.model_fingerprint_
            ):
                # A pickle has no checksum: its weights are checked as a folder's are.
                raise ValueError(
                    f"Refusing to restore the {type(self).__name__}: the weights in the "
                    "pickle are not those it was fitted with (their fingerprint differs): "
                    "the file is damaged or was edited. Pickle or save it again."
                )
            if extra is not None:
                from safetensors.torch import load

                extra = load(extra)
            self._attach_model(loaded, extra)

    def save(self, path, *, include_model=True):
        """Save to a folder that loads without executing code (no pickle).

        The folder holds ``estimator.json`` (parameters and fitted attributes) and, when
        fitted, ``model/`` (safetensors weights, config and tokenizer files) and, for a
        fine-tuned classifier, ``head.safetensors``. Secrets are never written:
        ``token_env`` is saved, the token it names is not.

        Parameters
        ----------
        path : str or path-like
            A new or empty folder, or one written by an earlier ``save`` (replaced).
        include_model : bool, default=True
            Write the checkpoint too. If False, the loaded estimator reloads it from
            ``model_name_or_path`` on first use, as a default pickle does (a fitted
            classifier's tuned weights are its state: it needs True).

        Returns
        -------
        path : pathlib.Path
            The folder written.

        See Also
        --------
        load : Read such a folder back.
        """
        return save_estimator(self, path, include_model=include_model)

    @classmethod
    def load(cls, path, *, device=None, token_env=AS_SAVED, embedding_cache=AS_SAVED):
        """Load an estimator written by :meth:`save`, without executing stored code.

        ``estimator.json`` is checked first against the SHA-256 of its own fields that it
        records (folders saved before format 3 have none and load unchecked), then every
        file against the SHA-256 recorded at save time (which catches accidental change,
        not a forger who rewrites the hashes too). Only regular data files with the names
        ``save_pretrained`` writes are read (no links, no FIFOs), and only the fitted
        attributes the class defines are set.

        Parameters
        ----------
        path : str or path-like
            The folder ``save`` wrote.
        device : str, default=None
            Run on this device (also sets the ``device`` parameter). None keeps the
            saved device, or uses this machine's best one, with a warning, when the
            saved device is missing here.
        token_env : str or None, default='as saved'
            The environment variable holding a hub token. By default the saved one, if it
            is a Hugging Face token variable (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``,
            ``HF_..._TOKEN``); a folder naming any other variable is refused, since it
            would send that variable's value to the hub. Pass a name (or None) to choose.
        embedding_cache : "memory", path-like or None, default='as saved'
            The embedding cache (vectorizer only). By default the saved one, except that a
            saved folder path is not followed: it becomes "memory", with a warning (the
            cache folder is trusted like code, and a saved folder should not choose it).
            Pass a folder to use one.

        Returns
        -------
        estimator : instance of cls
            Fitted if it was fitted when saved.
        """
        document, params, fitted = read_saved(cls, path)
        if device is not None:
            params["device"] = device
        _apply_load_overrides(cls, path, params, token_env, embedding_cache)
        unknown = sorted(set(fitted) - set(cls._FITTED_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"Refusing to load path={str(path)!r}: {ESTIMATOR_FILE} sets {unknown}, which "
                f"are not fitted attributes of {cls.__name__} (known: "
                f"{', '.join(cls._FITTED_ATTRIBUTES)}). Save it again with this version."
            )
        estimator = cls(**params)
        if not fitted:
            return estimator
        estimator.__dict__.update(fitted)
        estimator._move_to_available_device(device)
        import torch

        loaded = read_saved_model(
            path,
            document,
            device=torch.device(estimator.device_),
            fingerprint=estimator.model_fingerprint_,
        )
        extra = read_saved_extra_weights(path, document)
        estimator._restore_extra_files(read_saved_extra_files(path, document))
        if loaded is not None:
            estimator._attach_model(loaded, extra)
        logger.info("Loaded %s from %s on %s", cls.__name__, path, estimator.device_)
        return estimator

    def _move_to_available_device(self, device=None):
        """Run on ``device``, or on this machine's best one when the fitted one is missing."""
        from ._devices import available_device, resolve_device, warn_device_change

        if device is not None:
            target = resolve_device(device)
        else:
            target, moved = available_device(self.device_, self.device)
            if not moved:
                return
            warn_device_change(type(self).__name__, self.device_, str(target))
        self.settings_ = self.settings_.on_device(target, self._dtype_on(target))


def move_to_device(estimator, device):
    """Run a fitted estimator on ``device`` from now on, without refitting.

    Only its settings move (and the precision its ``dtype`` resolves to there); its model
    loads on ``device`` at first use. Hosts (``_hosts``: the Dask, Spark, serving and
    MLflow workers) call this.

    Parameters
    ----------
    estimator : AlbertVectorizer or AlbertClassifier
        Fitted.
    device : str or torch.device
    """
    estimator._move_to_available_device(device)


def _apply_load_overrides(cls, path, params, token_env, embedding_cache):
    """``load``'s rules for ``token_env`` and ``embedding_cache`` (see its docstring)."""
    if token_env is not AS_SAVED:
        params["token_env"] = token_env
    else:
        saved = params.get("token_env")
        if saved is not None and not (
            isinstance(saved, str) and HUB_TOKEN_VARIABLE.fullmatch(saved)
        ):
            raise ValueError(
                f"Refusing to load path={str(path)!r}: it names token_env={saved!r}, which is "
                "not a Hugging Face token variable (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, "
                "HF_..._TOKEN), and load() would send its value to the hub as a token. "
                f"Pass {cls.__name__}.load(path, token_env=None), or token_env={saved!r} "
                "if you meant that variable."
            )
    if embedding_cache is not AS_SAVED:
        if "embedding_cache" not in params:
            raise TypeError(f"{cls.__name__} has no embedding_cache; do not pass one to load().")
        params["embedding_cache"] = embedding_cache
        return
    saved = params.get("embedding_cache")
    if saved is not None and not (isinstance(saved, str) and saved == "memory"):
        warnings.warn(
            f"The folder {str(path)!r} was saved with embedding_cache={os.fspath(saved)!r}; "
            "load() does not follow a cache folder named by a saved file and uses "
            "embedding_cache='memory'. Pass load(path, embedding_cache=...) to use a folder.",
            UserWarning,
            stacklevel=3,
        )
        params["embedding_cache"] = "memory"


def skops_trusted_types():
    """The types a skops file of this project's estimators holds, safe to trust.

    Pass them to ``skops.io.load(file, trusted=...)`` after checking that
    ``skops.io.get_untrusted_types(file=...)`` lists nothing else.

    Returns
    -------
    names : list of str
        Fully qualified names of the estimator classes sklearn_albert exports, and of
        pathlib's concrete path classes (``model_name_or_path``, ``cache_dir`` and
        ``embedding_cache`` may be paths; building one runs no code of the file's), and
        the frozen settings a fitted estimator holds in ``settings_``.

    Examples
    --------
    >>> import skops.io as sio  # doctest: +SKIP
    >>> from sklearn_albert import skops_trusted_types
    >>> sio.dump(pipe, "model.skops")  # doctest: +SKIP
    >>> untrusted = sio.get_untrusted_types(file="model.skops")  # doctest: +SKIP
    >>> assert set(untrusted) <= set(skops_trusted_types())  # doctest: +SKIP
    >>> pipe = sio.load("model.skops", trusted=untrusted)  # doctest: +SKIP
    """
    import pathlib

    from sklearn.base import BaseEstimator

    import sklearn_albert

    names = [
        _qualified_name(pathlib.PosixPath),
        _qualified_name(pathlib.WindowsPath),
        _qualified_name(EncodeSettings),
    ]
    for public in sklearn_albert.__all__:
        value = getattr(sklearn_albert, public)
        if isinstance(value, type) and issubclass(value, BaseEstimator):
            names.append(_qualified_name(value))
    return sorted(set(names))


# ---------------------------------------------------------------------- saving


def _check_destination(path):
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot save to path={str(path)!r}: its parent folder does not exist. Create it first."
        )
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(
            f"Cannot save to path={str(path)!r}: it is a file. Give a folder path."
        )
    if any(path.iterdir()) and not (path / ESTIMATOR_FILE).is_file():
        raise FileExistsError(
            f"Cannot save to path={str(path)!r}: the folder is not empty and was not "
            "written by save(). Give a new or empty folder."
        )


def _replace_folder(staging, path):
    """Move the finished ``staging`` folder to ``path``; an earlier save goes only then."""
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.replace(path, retired / path.name)
        os.replace(staging, path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, path)


def _fitted_attributes(estimator):
    return {
        name: value
        for name, value in vars(estimator).items()
        if name.endswith("_") and not name.startswith("_")
    }


def _hash_files(folder):
    return {file.name: file_sha256(file) for file in sorted(folder.iterdir()) if file.is_file()}


def file_sha256(path):
    """SHA-256 of a regular file (no link followed), read in blocks: weights may be larger
    than free memory."""
    digest = hashlib.sha256()
    with open_regular_file(path) as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions():
    import sklearn

    import sklearn_albert

    return {"sklearn_albert": sklearn_albert.__version__, "scikit-learn": sklearn.__version__}


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def to_json_value(value, what):
    """A JSON value for ``value``; tuples, paths and arrays are tagged to round-trip."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, os.PathLike):
        return {"__path__": os.fspath(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [to_json_value(item, what) for item in value]}
    if isinstance(value, list):
        return [to_json_value(item, what) for item in value]
    if isinstance(value, EncodeSettings):
        return {"__settings__": to_json_value(vars(value).copy(), what)}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"__dict__": {key: to_json_value(item, what) for key, item in value.items()}}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUO":
        # Object arrays (labels of mixed types) keep their items only if each has a JSON form.
        return {"__ndarray__": to_json_value(value.tolist(), what), "dtype": value.dtype.str}
    raise TypeError(
        f"Cannot save {what}={value!r:.80}: a {type(value).__name__} has no JSON form. "
        "save() handles None, bool, int, float, str, paths, lists, tuples, dicts with str "
        "keys and arrays of those; use joblib or skops for anything else."
    )


def from_json_value(value):
    if isinstance(value, list):
        return [from_json_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(from_json_value(item) for item in value["__tuple__"])
    if "__path__" in value:
        return Path(value["__path__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__settings__" in value:
        return EncodeSettings(**from_json_value(value["__settings__"]))
    if "__dict__" in value:
        return {key: from_json_value(item) for key, item in value["__dict__"].items()}
    if "__ndarray__" in value:
        dtype = np.dtype(value["dtype"])
        items = from_json_value(value["__ndarray__"])
        if dtype.kind == "O":
            # np.array would nest equal-length tuples and lists; keep one item per cell.
            array = np.empty(len(items), dtype=object)
            array[:] = items
            return array
        return np.array(items, dtype=dtype)
    raise ValueError(f"Unknown tagged value in {ESTIMATOR_FILE}: {value!r:.80}")


# ---------------------------------------------------------------------- loading


def _read_regular(file):
    """The bytes of ``file``, refusing links, FIFOs and other non-regular files."""
    with open_regular_file(file) as opened:
        return opened.read()


def saved_class_name(path):
    """The qualified class name a folder written by :func:`save_estimator` records.

    Read as loading reads it: the file is never reached through a link, and its own
    checksum is verified before the name is believed.

    Raises
    ------
    FileNotFoundError
        If the folder has no ``estimator.json``.
    ValueError
        If the file is damaged, edited, not an estimator file, or of a newer format.
    """
    return _read_checked_document(Path(path), "save()")["class"]


def _read_document(path, cls):
    document = _read_checked_document(path, f"{cls.__name__}.save()")
    if document.get("class") != _qualified_name(cls):
        raise TypeError(
            f"Cannot load path={str(path)!r} as {cls.__name__}: it holds a "
            f"{document.get('class')!r}."
        )
    return document


def _read_checked_document(path, writer):
    file = path / ESTIMATOR_FILE
    if not os.path.lexists(file):
        raise FileNotFoundError(
            f"Cannot load path={str(path)!r}: it has no {ESTIMATOR_FILE}. Give a folder "
            f"written by {writer}; pickles load with joblib.load instead."
        )
    try:
        document = json.loads(_read_regular(file).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Cannot load path={str(path)!r}: {file.name} is not valid JSON ({error}): it "
            "is damaged, cut short or was edited. Save the fitted estimator again."
        ) from None
    if isinstance(document, dict) and CHECKSUM_FIELD in document:
        # First, before any field is believed: a flipped bit anywhere, the format
        # version included, is reported as damage, not as what the flip made it say.
        _check_document_checksum(path, document)
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ValueError(
            f"Cannot load path={str(path)!r}: {file.name} is not a sklearn_albert estimator file."
        )
    version = document.get("format_version", 0)
    if not isinstance(version, Integral) or isinstance(version, bool):
        raise ValueError(
            f"Cannot load path={str(path)!r}: {file.name} has format_version={version!r}, "
            "not an integer: it is damaged or was edited. Save the fitted estimator again."
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"Cannot load path={str(path)!r}: it uses format version "
            f"{document['format_version']}, newer than this sklearn_albert understands "
            f"({FORMAT_VERSION}). Upgrade sklearn_albert (saved with "
            f"{document.get('versions', {}).get('sklearn_albert', '?')})."
        )
    if version >= CHECKSUMMED_FORMAT_VERSION and CHECKSUM_FIELD not in document:
        # Format 3 always writes it: a flipped bit in the field's name lands here.
        raise ValueError(
            f"Refusing to load path={str(path)!r}: its {file.name} is damaged or was edited: "
            f"format version {version} records its own SHA-256 in {CHECKSUM_FIELD!r}, and "
            "that field is missing. Save the fitted estimator again."
        )
    if not isinstance(document.get("class"), str):
        raise ValueError(
            f"Cannot load path={str(path)!r}: {file.name} names no estimator class: it is "
            "damaged or was edited. Save the fitted estimator again."
        )
    return document


def _check_document_checksum(path, document):
    """Refuse ``estimator.json`` unless its recorded SHA-256 is that of its other fields."""
    recorded = document[CHECKSUM_FIELD]
    try:
        actual = estimator_file_checksum(document)
    except ValueError:  # a float the flip made infinite or NaN has no canonical JSON
        actual = None
    if recorded != actual:
        raise ValueError(
            f"Refusing to load path={str(path)!r}: its {ESTIMATOR_FILE} is damaged or was "
            f"edited: its fields no longer match the SHA-256 recorded in {CHECKSUM_FIELD!r} "
            "at save time. Save the fitted estimator again (estimator.save(path)); to change "
            "a saved estimator, load it, set_params and save it, rather than editing the file."
        )


def _refuse_code_files(folder, files, *, when):
    unsafe = sorted(name for name in files if not name.endswith(DATA_SUFFIXES))
    if unsafe:
        raise ValueError(
            f"Refusing {when} {str(folder)!r}: {unsafe} are not data files "
            f"({', '.join(DATA_SUFFIXES)}); loading them could execute code."
        )


def _check_files(folder, files):
    _refuse_code_files(folder, files, when="to load")
    check_checkpoint_file_names(files, source=repr(str(folder)))
    check_real_folder(folder)
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    extra = sorted(present - set(files))
    if extra:
        raise ValueError(
            f"Refusing to load {str(folder)!r}: it holds files that save() did not write: "
            f"{extra}. Remove them or save again."
        )
    for name, expected in files.items():
        file = folder / name
        if not os.path.lexists(file):
            raise FileNotFoundError(f"Cannot load {str(folder)!r}: {name} is missing.")
        if file_sha256(file) != expected:
            raise ValueError(
                f"Refusing to load {str(folder)!r}: {name} changed since it was saved "
                "(its SHA-256 differs from the one in estimator.json)."
            )


def _read_extra_weights(path, record):
    """The tensors of ``head.safetensors`` after checking its name and hash, or None."""
    if record is None:
        return None
    from safetensors.torch import load

    name = record.get("file")
    if name != EXTRA_WEIGHTS_FILE:
        raise ValueError(
            f"Refusing to load path={str(path)!r}: {ESTIMATOR_FILE} names the weight file "
            f"{name!r}; save() only writes {EXTRA_WEIGHTS_FILE!r}."
        )
    file = path / name
    if not os.path.lexists(file):
        raise FileNotFoundError(f"Cannot load path={str(path)!r}: {name} is missing.")
    content = _read_regular(file)  # hashed and parsed from one read: no swap in between
    if hashlib.sha256(content).hexdigest() != record.get("sha256"):
        raise ValueError(
            f"Refusing to load path={str(path)!r}: {name} changed since it was saved "
            "(its SHA-256 differs from the one in estimator.json)."
        )
    return load(content)
