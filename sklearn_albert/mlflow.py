"""An MLflow flavour: log, save and load fitted estimators and pipelines that encode text.

``log_model`` stores a fitted :class:`~sklearn_albert.AlbertVectorizer`,
:class:`~sklearn_albert.AlbertClassifier`, or any scikit-learn pipeline holding them, as an
MLflow model with two flavours: ``sklearn_albert`` (:func:`load_model` gives the estimator
back) and ``python_function`` (``mlflow.pyfunc.load_model(uri).predict(texts)``, and
``mlflow models serve``). mlflow is imported only when one of these functions runs, never
by ``import sklearn_albert``.

The model folder is self-contained::

    MLmodel                     flavours, signature, the encoders below
    estimator/estimator.pkl     the estimator, each encoder replaced by a reference
    estimator/encoders/0/       each encoder written by its own ``save``: estimator.json,
                                model/ (safetensors weights, config, tokenizer files) and,
                                for dtype="int8", the calibrated encoder
    requirements.txt, python_env.yaml, conda.yaml

The weights are kept out of the pickle and written by ``save``, which checks every file
against its SHA-256 when it loads: the logged model loads after the checkpoint folder it
was fitted from is gone, offline. MLmodel records the SHA-256 of ``estimator.pkl`` and of
each encoder's ``estimator.json``, so that every file of the model is checked before it is
read: a truncated, damaged or swapped file (or a link in place of a file or folder) is
refused, naming it. The folder is written beside ``path`` and moved into place when
complete, so that a failed or killed save leaves no model folder behind.

The rest of a pipeline (a ``LogisticRegression``, a
``FunctionTransformer``...) has no pickle-free format of its own, so it stays a pickle:
load models from a tracking server you trust, as with ``mlflow.sklearn``'s pickle formats
(see :doc:`/security`).
"""

import hashlib
import io
import os
import pickle
from pathlib import Path

__all__ = [
    "FLAVOR_NAME",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
    "text_signature",
]

FLAVOR_NAME = "sklearn_albert"
ESTIMATOR_FOLDER = "estimator"
PICKLE_FILE = "estimator.pkl"
ENCODERS_FOLDER = "encoders"
#: The file each encoder's own ``save`` writes its parameters and file hashes to.
ESTIMATOR_FILE = "estimator.json"
INPUT_COLUMN = "text"
# The persistent id a pickled encoder becomes (pickle's persistent_id protocol).
_ENCODER_REFERENCE = "sklearn_albert.encoder"


def get_default_pip_requirements():
    """What a model server needs: this library, torch, transformers, scikit-learn...

    Pinned to the versions installed here; a local version label (``torch==2.13.0+cpu``)
    is dropped, so that the requirement installs from PyPI.

    Returns
    -------
    requirements : list of str
    """
    import importlib.metadata

    import sklearn_albert

    pinned = []
    for package in ("torch", "transformers", "tokenizers", "safetensors", "scikit-learn"):
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pinned.append(package)
            continue
        pinned.append(f"{package}=={version.split('+')[0]}")
    return [f"sklearn-albert=={sklearn_albert.__version__}", *pinned, "pandas"]


def save_model(
    model,
    path,
    *,
    predict_method=None,
    signature=None,
    input_example=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    metadata=None,
    mlflow_model=None,
):
    """Write a fitted estimator as an MLflow model folder.

    Parameters
    ----------
    model : estimator
        Fitted: an ``AlbertVectorizer``, an ``AlbertClassifier``, or a pipeline (or other
        estimator) holding them, encoders at any depth.
    path : str or path-like
        A folder that does not exist yet, or an empty one. The model is written into a
        temporary folder beside it, moved to ``path`` once complete: a save that fails
        (a full disk) or is killed leaves no model at ``path``.
    predict_method : {"predict", "predict_proba", "transform"}, default=None
        What ``python_function``'s ``predict`` calls. None: ``predict`` when ``model``
        has it (a classifier or a pipeline ending in one), else ``transform`` (the
        embeddings of a vectorizer).
    signature : mlflow.models.ModelSignature or False, default=None
        None: one string column (:func:`text_signature`), which MLflow checks before
        ``predict`` runs; False: no signature.
    input_example : list of str, pandas.Series or pandas.DataFrame, default=None
        Stored with the model, and shown by MLflow as a request to the server.
    pip_requirements : list of str or str, default=None
        Replace the defaults (:func:`get_default_pip_requirements`).
    extra_pip_requirements : list of str or str, default=None
        Added to the defaults.
    metadata : dict, default=None
        Stored in the MLmodel file.
    mlflow_model : mlflow.models.Model, default=None
        The model this flavour is added to (``Model.log`` passes one).
    """
    from mlflow.models import Model
    from mlflow.utils.environment import _validate_env_arguments
    from mlflow.utils.model_utils import _validate_and_prepare_target_save_path
    from sklearn.utils.validation import check_is_fitted

    from ._model_files import staged_folder

    predict_method = _check_predict_method(model, predict_method)
    check_is_fitted(model)
    _validate_env_arguments(None, pip_requirements, extra_pip_requirements)
    path = os.fspath(path)
    existed = os.path.exists(path)
    _validate_and_prepare_target_save_path(path)  # refuses a folder that is not empty
    if not existed:
        os.rmdir(path)  # the complete model is renamed to ``path``
    mlflow_model = Model() if mlflow_model is None else mlflow_model
    with staged_folder(path) as staging:
        _write_model_folder(
            model,
            staging,
            mlflow_model,
            predict_method=predict_method,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
        )


def _write_model_folder(
    model,
    path,
    mlflow_model,
    *,
    predict_method,
    signature,
    input_example,
    pip_requirements,
    extra_pip_requirements,
    metadata,
):
    """Write every file of the model into the folder ``path`` (see :func:`save_model`)."""
    import mlflow
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.models.utils import _save_example
    from mlflow.utils.environment import (
        _CONDA_ENV_FILE_NAME,
        _CONSTRAINTS_FILE_NAME,
        _PYTHON_ENV_FILE_NAME,
        _REQUIREMENTS_FILE_NAME,
        _process_pip_requirements,
        _PythonEnv,
    )

    import sklearn_albert

    encoders, pickle_sha256 = _write_estimator(model, Path(path, ESTIMATOR_FOLDER))
    _save_example(mlflow_model, _as_input_frame(input_example), path)
    if signature is None:
        signature = text_signature()
    if signature is not False:
        mlflow_model.signature = signature
    if metadata is not None:
        mlflow_model.metadata = metadata
    mlflow.pyfunc.add_to_model(
        mlflow_model,
        loader_module=__name__,
        data=ESTIMATOR_FOLDER,
        conda_env=_CONDA_ENV_FILE_NAME,
        python_env=_PYTHON_ENV_FILE_NAME,
    )
    mlflow_model.add_flavor(
        FLAVOR_NAME,
        data=ESTIMATOR_FOLDER,
        predict_method=predict_method,
        sklearn_albert_version=sklearn_albert.__version__,
        encoders=encoders,
        pickle_sha256=pickle_sha256,
    )
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))

    # Explicit defaults: MLflow's inference would load the model in a subprocess to watch
    # its imports, which is slow and cannot see torch's optional packages.
    conda_env, requirements, constraints = _process_pip_requirements(
        get_default_pip_requirements(), pip_requirements, extra_pip_requirements
    )
    Path(path, _REQUIREMENTS_FILE_NAME).write_text("\n".join(requirements), encoding="utf-8")
    if constraints:
        Path(path, _CONSTRAINTS_FILE_NAME).write_text("\n".join(constraints), encoding="utf-8")
    import yaml

    with open(os.path.join(path, _CONDA_ENV_FILE_NAME), "w", encoding="utf-8") as file:
        yaml.safe_dump(conda_env, stream=file, default_flow_style=False)
    _PythonEnv.current().to_yaml(os.path.join(path, _PYTHON_ENV_FILE_NAME))


def log_model(model, name, **kwargs):
    """Log a fitted estimator as an MLflow model of the active run (one starts if none is).

    Parameters
    ----------
    model : estimator
        Fitted, as for :func:`save_model`.
    name : str
        The model's name within the run.
    **kwargs
        ``predict_method``, ``signature``, ``input_example``, ``pip_requirements``,
        ``extra_pip_requirements``, ``metadata`` (see :func:`save_model`), and what
        ``mlflow.models.Model.log`` takes: ``registered_model_name``, ``params``,
        ``tags``...

    Returns
    -------
    info : mlflow.models.model.ModelInfo
        ``info.model_uri`` loads it back.

    Examples
    --------
    >>> import mlflow  # doctest: +SKIP
    >>> import sklearn_albert.mlflow  # doctest: +SKIP
    >>> info = sklearn_albert.mlflow.log_model(pipe, name="sentiment")  # doctest: +SKIP
    >>> mlflow.pyfunc.load_model(info.model_uri).predict(["a moving film"])  # doctest: +SKIP
    """
    import inspect
    import sys

    from mlflow.models import Model

    # MLflow 3 names a logged model (``name``); MLflow 2 placed it at an ``artifact_path``.
    where = {"name": name} if "name" in inspect.signature(Model.log).parameters else {}
    return Model.log(
        artifact_path=None if where else name,
        flavor=sys.modules[__name__],
        model=model,
        **where,
        **kwargs,
    )


def load_model(model_uri, dst_path=None):
    """The estimator of a model logged or saved by this flavour.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI: ``runs:/<run_id>/<name>``, ``models:/<model_id>``,
        ``models:/<name>/<version>``, a local folder...
    dst_path : str, default=None
        Where to download the model; a temporary folder by default.

    Returns
    -------
    model : estimator
        As logged, its encoders loaded from the model's own files, each on this machine's
        device (``device="auto"`` encoders on its best device).

    Raises
    ------
    ValueError
        If a file of the model is truncated, damaged or not the one saved (its SHA-256
        differs from the one recorded), or is a link, naming the file.
    """
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri

    local = _download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path)
    configuration = _flavor_configuration(Path(local))
    return _read_estimator(Path(local, configuration["data"]), configuration)


def text_signature(column=None):
    """The signature of a model that reads texts: one string column; no declared output.

    Parameters
    ----------
    column : str, default=None
        None (the default of :func:`save_model`): the column is unnamed, so that
        ``predict`` takes a list of str, a Series, or a one-column DataFrame of any
        name. A name (``"text"``): callers must send a column of that name, and MLflow
        refuses a bare list.

    Returns
    -------
    signature : mlflow.models.ModelSignature
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", column)]))


def _load_pyfunc(path):
    """``python_function``'s loader (MLflow calls it with the ``data`` folder)."""
    configuration = _flavor_configuration(Path(path).parent)
    estimator = _read_estimator(Path(path), configuration)
    return _TextModel(estimator, configuration["predict_method"])


def _flavor_configuration(model_folder):
    """This flavour's entry of ``model_folder/MLmodel``; a clear error if it is damaged."""
    import yaml
    from mlflow.utils.model_utils import _get_flavor_configuration

    where = f"Cannot load the MLflow model {str(model_folder)!r}: its MLmodel file"
    try:
        configuration = _get_flavor_configuration(
            model_path=str(model_folder), flavor_name=FLAVOR_NAME
        )
    except yaml.YAMLError as error:
        raise ValueError(
            f"{where} is not valid YAML (truncated or damaged?): {error}. Log the model again."
        ) from None
    missing = [
        key
        for key in ("data", "encoders", "predict_method")
        if not isinstance(configuration, dict) or key not in configuration
    ]
    if missing or configuration["data"] != ESTIMATOR_FOLDER:
        raise ValueError(
            f"{where} has a damaged {FLAVOR_NAME!r} flavour (missing or unexpected: "
            f"{missing or ['data']}). Log the model again."
        )
    return configuration


class _TextModel:
    """``python_function``'s face: texts in (one call for the whole input), numpy out."""

    def __init__(self, estimator, predict_method):
        self.estimator = estimator
        self.predict_method = predict_method

    def get_raw_model(self):
        return self.estimator

    def predict(self, data, params=None):
        import numpy as np

        texts = _texts_of(data)
        return np.asarray(getattr(self.estimator, self.predict_method)(texts))


# ---------------------------------------------------------------------- the folder


def _write_estimator(model, folder):
    """Pickle ``model`` with its encoders saved beside it.

    Returns the encoders' descriptions and the pickle's SHA-256, for MLmodel.
    """
    from ._persistence import EncoderPersistence, file_sha256

    encoders = []

    class EncodersApart(pickle.Pickler):
        def persistent_id(self, obj):
            if not isinstance(obj, EncoderPersistence):
                return None
            for index, known in enumerate(encoders):
                if known["object"] is obj:  # one object in two places stays one
                    return (_ENCODER_REFERENCE, index)
            index = len(encoders)
            relative = f"{ENCODERS_FOLDER}/{index}"
            (folder / ENCODERS_FOLDER).mkdir(exist_ok=True)
            obj.save(folder / relative)
            encoders.append(
                {
                    "object": obj,
                    "path": relative,
                    "class": type(obj).__name__,
                    "device": str(obj.device),
                    "dtype": str(obj.dtype_),
                    "sha256": file_sha256(folder / relative / ESTIMATOR_FILE),
                }
            )
            return (_ENCODER_REFERENCE, index)

    folder.mkdir(parents=True)
    with open(folder / PICKLE_FILE, "wb") as file:
        EncodersApart(file, protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    descriptions = [
        {key: value for key, value in each.items() if key != "object"} for each in encoders
    ]
    return descriptions, file_sha256(folder / PICKLE_FILE)


def _read_estimator(folder, configuration):
    """The estimator of :func:`_write_estimator`'s folder, set up for this process.

    ``configuration`` is the flavour's entry of MLmodel: the encoders' descriptions and
    the pickle's SHA-256 (absent from models logged before it was recorded).
    """
    from ._hosts import reuse_freed_memory
    from ._model_files import check_real_folder

    check_real_folder(folder)
    # Hashed and unpickled from one read: no swap in between. A damaged pickle can crash
    # the interpreter, not only raise: nothing is unpickled before its hash matches.
    content = _read_checked(folder / PICKLE_FILE, configuration.get("pickle_sha256"))
    encoders = configuration["encoders"]
    reuse_freed_memory()
    loaded = {}

    class EncodersFromFolders(pickle.Unpickler):
        def persistent_load(self, reference):
            kind, index = reference
            if kind != _ENCODER_REFERENCE or not 0 <= index < len(encoders):
                raise pickle.UnpicklingError(f"Unknown reference {reference!r} in {folder}.")
            if index not in loaded:
                loaded[index] = _load_encoder(folder, encoders[index], index)
            return loaded[index]

    return EncodersFromFolders(io.BytesIO(content)).load()


def _load_encoder(folder, description, index):
    """One saved encoder, loaded by its own class on the device this host gives it."""
    import sklearn_albert

    from ._hosts import device_to_load_with
    from ._model_files import check_real_folder
    from ._persistence import EncoderPersistence

    expected = f"{ENCODERS_FOLDER}/{index}"
    if description.get("path") != expected:
        raise ValueError(
            f"The MLmodel file places encoder {index} at {description.get('path')!r}; this "
            f"flavour writes it at {expected!r}. The file is damaged or was edited."
        )
    encoder_folder = folder / expected
    check_real_folder(folder / ENCODERS_FOLDER)
    check_real_folder(encoder_folder)
    _read_checked(encoder_folder / ESTIMATOR_FILE, description.get("sha256"))

    cls = getattr(sklearn_albert, description["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, EncoderPersistence)):
        raise ValueError(
            f"The MLmodel file names an encoder of class={description['class']!r}, which is "
            "not an sklearn_albert estimator that saves its weights; log the model again "
            "with this version."
        )
    device = device_to_load_with(description["device"], description["dtype"])
    return cls.load(encoder_folder, device=device)


def _read_checked(path, expected):
    """The bytes of the regular file ``path``, refused unless their SHA-256 is ``expected``.

    ``expected`` None: a model logged before hashes were recorded; read as it is.
    """
    from ._model_files import open_regular_file

    with open_regular_file(path) as file:
        content = file.read()
    if expected is not None and hashlib.sha256(content).hexdigest() != expected:
        raise ValueError(
            f"Refusing to load {str(path)!r}: it changed since the model was saved (its "
            "SHA-256 differs from the one in MLmodel): the file is truncated, damaged or "
            "not the one saved. Log or save the model again."
        )
    return content


# ---------------------------------------------------------------------- the input


def _check_predict_method(model, predict_method):
    if predict_method is None:
        return "predict" if hasattr(model, "predict") else "transform"
    allowed = ("predict", "predict_proba", "transform")
    if predict_method not in allowed or not hasattr(model, predict_method):
        has = [name for name in allowed if hasattr(model, name)]
        raise ValueError(
            f"Got predict_method={predict_method!r} but expected one of {has}, the methods "
            f"this {type(model).__name__} has."
        )
    return predict_method


def _texts_of(data):
    """The list of str in what a ``python_function`` caller or the server hands over."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if INPUT_COLUMN in data.columns:
            column = data[INPUT_COLUMN]
        elif data.shape[1] == 1:
            column = data.iloc[:, 0]
        else:
            raise ValueError(
                f"Got a DataFrame with columns {list(data.columns)} but expected a "
                f"{INPUT_COLUMN!r} column, or a single column of texts."
            )
        return column.tolist()
    if isinstance(data, pd.Series):
        return data.tolist()
    if isinstance(data, str):
        return [data]
    if isinstance(data, np.ndarray):
        return data.ravel().tolist()
    return list(data)


def _as_input_frame(input_example):
    """An input example as MLflow stores it best: a DataFrame with the ``text`` column."""
    if input_example is None:
        return None
    import pandas as pd

    if isinstance(input_example, pd.DataFrame):
        return input_example
    return pd.DataFrame({INPUT_COLUMN: _texts_of(input_example)})
