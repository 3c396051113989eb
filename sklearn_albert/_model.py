"""Loading a checkpoint: lazy imports, device and dtype resolution, sharing, clear errors.

A loaded checkpoint is kept in a small process-wide registry so that every clone of an
estimator (``GridSearchCV`` makes one per candidate and fold) reuses the same weights
instead of reading them again.
"""

import copy
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("sklearn_albert")

#: How many distinct checkpoints the registry keeps alive after their last user is gone.
MAX_SHARED_MODELS = 3

#: Config entries that say where a checkpoint was read from, or which transformers
#: version wrote the dict, not what the checkpoint computes.
PROVENANCE_CONFIG_KEYS = frozenset({"_name_or_path", "_commit_hash", "transformers_version"})

_registry = OrderedDict()
_registry_lock = threading.RLock()

#: ``model_name_or_path`` prefix naming a model that lives only in memory (fine-tuned weights).
IN_MEMORY_PREFIX = "in-memory:"

# In-memory models by (fingerprint, device): an entry lives as long as an estimator holds it.
_in_memory = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to encode, and the facts the estimators need about it."""

    model: object
    tokenizer: object
    device: object
    fingerprint: str
    max_length: int
    n_hidden_states: int
    hidden_size: int
    has_pooler: bool
    special_prefix: tuple
    special_suffix: tuple
    compute_variants: dict = field(default_factory=dict, compare=False, repr=False)

    def model_for(self, compute_dtype):
        """The model to run under autocast at ``compute_dtype``.

        For reduced precision, a copy whose ``Linear`` weights are stored in
        ``compute_dtype``: autocast would otherwise cast every weight again on every
        forward pass (its weight cache does not apply under ``inference_mode``).
        Normalisations, embeddings and softmax keep float32 weights, and autocast runs
        them in float32. The copy shares every other parameter with the original. On
        CPU, float32 and bfloat16 run a copy whose Linear weights are packed once for
        oneDNN (``_packed_linear.py``). Each copy is built on first use and kept.
        """
        import torch

        on_cpu = self.device.type == "cpu"
        if compute_dtype == torch.float32 and not on_cpu:
            return self.model
        variant = self.compute_variants.get(compute_dtype)
        if variant is None:
            if compute_dtype == INT8:
                variant = _quantize_int8(self.model)
            else:
                from ._packed_linear import inference_copy

                pack = on_cpu and compute_dtype in (torch.float32, torch.bfloat16)
                variant = inference_copy(self.model, compute_dtype, pack=pack)
            variant = self.compute_variants.setdefault(compute_dtype, variant)
        return variant


def _quantize_int8(model):
    """A copy with dynamically quantized int8 ``Linear`` layers (CPU only).

    Weights are quantized per output channel: on the real MiniLM that raised the mean
    cosine to float32 embeddings from 0.934 (torch's per-tensor default) to 0.972, and ran
    no slower.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch deprecates the eager quantization API in favour of torchao; it still works.
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            copy.deepcopy(model),
            {torch.nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )


def resolve_device(device):
    """Turn ``"auto"`` or a device string into a usable ``torch.device``.

    Parameters
    ----------
    device : str
        ``"auto"`` picks cuda if available, else mps, else cpu.

    Returns
    -------
    torch.device
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"Got device={device!r}, which torch does not understand. Use 'auto', "
            "'cpu', 'cuda', 'cuda:0' or 'mps'."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Got device={device!r} but CUDA is not available on this machine. "
            "Use device='auto' or device='cpu'."
        )
    if resolved.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            f"Got device={device!r} but MPS is not available on this machine. "
            "Use device='auto' or device='cpu'."
        )
    return resolved


def cpu_supports_bfloat16():
    """Whether this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # pragma: no cover - probe unavailable on this build
            continue
    return False


#: The precision name for CPU dynamic int8 quantization (not a torch dtype).
INT8 = "int8"


def resolve_dtype(dtype, device):
    """The compute precision for ``dtype`` on ``device``, as a ``torch.dtype``.

    ``"auto"`` is float16 on CUDA (bfloat16 where the GPU supports it), bfloat16 on a CPU
    with native bfloat16 instructions, float32 otherwise. Reduced precision is applied
    with autocast: weights stay float32, normalisations and pooling run in float32.
    """
    import torch

    named = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == INT8:
        if device.type != "cpu":
            raise ValueError(
                f"Got dtype='int8' with device={str(device)!r}, but dynamic int8 quantization "
                "runs on CPU only. Use device='cpu', or dtype='float16'/'bfloat16' on a GPU."
            )
        return INT8
    if dtype != "auto":
        return named[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bfloat16():
        return torch.bfloat16
    return torch.float32


def dtype_name(torch_dtype):
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    if torch_dtype == INT8:
        return INT8
    return str(torch_dtype).removeprefix("torch.")


def load_model(
    model_name_or_path,
    *,
    device,
    revision=None,
    cache_dir=None,
    local_files_only=False,
    token_env=None,
):
    """Load (or reuse) a checkpoint and its tokenizer on ``device``.

    Parameters
    ----------
    model_name_or_path : str or path-like
        A Hugging Face hub id or a local folder.
    device : torch.device
        Where the model runs.
    revision, cache_dir, local_files_only : see ``AlbertVectorizer``.
    token_env : str or None
        Name of an environment variable holding a hub token.

    Returns
    -------
    LoadedModel
    """
    source = os.fspath(model_name_or_path)
    if source.startswith(IN_MEMORY_PREFIX):
        return _load_in_memory(source, device)
    if os.path.isdir(source):
        source = str(Path(source).resolve())
    key = (
        source,
        _folder_signature(source),
        revision,
        str(cache_dir),
        bool(local_files_only),
        str(device),
    )
    with _registry_lock:
        if key in _registry:
            _registry.move_to_end(key)
            return _registry[key]
        options = dict(
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=os.environ.get(token_env) if token_env else None,
            trust_remote_code=False,
        )
        started = time.perf_counter()
        tokenizer = _load_tokenizer(source, options)
        model = _load_encoder(source, options)
        loaded = _prepare(model, tokenizer, device)
        _remember(key, loaded)
        logger.info(
            "Loaded %s (%s) on %s in %.1f s.",
            source,
            type(model).__name__,
            device,
            time.perf_counter() - started,
        )
        return loaded


def _folder_signature(source):
    """Names, sizes and modification times of a local checkpoint's files (None for hub ids).

    Part of the registry key, so that a checkpoint re-saved into the same folder is loaded
    again rather than served from memory.
    """
    if not os.path.isdir(source):
        return None
    return tuple(
        (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
        for entry in sorted(os.scandir(source), key=lambda entry: entry.name)
        if entry.is_file()
    )


def load_model_from_files(files, *, device):
    """Rebuild a checkpoint from the ``{file name: bytes}`` of :func:`export_model_files`."""
    with tempfile.TemporaryDirectory(prefix="sklearn_albert_") as folder:
        for name, content in files.items():
            Path(folder, name).write_bytes(content)
        return load_model_from_folder(folder, device=device)


def load_model_from_folder(folder, *, device):
    """Load a checkpoint folder written by :func:`save_model_files`, offline.

    Unlike :func:`load_model`, the shared registry keys it by content fingerprint, not
    by path, so a folder that is saved again with other weights is never served stale.
    """
    options = dict(local_files_only=True, trust_remote_code=False)
    tokenizer = _load_tokenizer(os.fspath(folder), options)
    model = _load_encoder(os.fspath(folder), options)
    loaded = _prepare(model, tokenizer, device)
    with _registry_lock:
        key = ("fingerprint", loaded.fingerprint, str(device))
        if key in _registry:
            return _registry[key]
        _remember(key, loaded)
    return loaded


def register_loaded_model(model, tokenizer, device):
    """Make an in-memory model (such as fine-tuned weights) loadable like a checkpoint.

    The model is prepared for inference on ``device`` (which freezes its weights) and can
    then be loaded by :func:`load_model` under the name ``in_memory_name(loaded)``, for as
    long as some estimator holds the returned object.

    Returns
    -------
    LoadedModel
    """
    return remember_in_memory(_prepare(model, tokenizer, device))


def remember_in_memory(loaded):
    """Make an already prepared ``LoadedModel`` loadable under ``in_memory_name(loaded)``.

    If a live model with the same content and device is known already, that one is kept
    and returned: replacing it would let the entry vanish with the newcomer while the
    first holder still relies on the name.
    """
    key = (loaded.fingerprint, str(loaded.device))
    with _registry_lock:
        return _in_memory.setdefault(key, loaded)


def in_memory_name(loaded):
    """The ``model_name_or_path`` under which :func:`load_model` finds ``loaded``."""
    return IN_MEMORY_PREFIX + loaded.fingerprint


def _load_in_memory(source, device):
    """An in-memory model by name, on ``device`` (copied there if it lives elsewhere)."""
    import copy

    wanted = source.removeprefix(IN_MEMORY_PREFIX)
    with _registry_lock:
        candidates = [
            loaded for (fingerprint, _), loaded in list(_in_memory.items()) if fingerprint == wanted
        ] + [loaded for key, loaded in _registry.items() if key[:2] == ("fingerprint", wanted)]
    for loaded in candidates:
        if loaded.device == device:
            return loaded
    if candidates:
        source_model = candidates[0]
        return register_loaded_model(
            copy.deepcopy(source_model.model), source_model.tokenizer, device
        )
    raise OSError(
        f"Could not load model_name_or_path={source!r}: it names fine-tuned weights that "
        "lived only in memory, in an estimator that no longer exists in this process. "
        "Keep the weights with AlbertClassifier.to_vectorizer(save_to=folder) and use that "
        "folder, or pickle the vectorizer with store_weights_in_pickle=True."
    )


def export_model_files(loaded):
    """The checkpoint as ``{file name: bytes}``: safetensors weights, config, tokenizer."""
    with tempfile.TemporaryDirectory(prefix="sklearn_albert_") as folder:
        save_model_files(loaded, folder)
        return {
            path.name: path.read_bytes()
            for path in sorted(Path(folder).iterdir())
            if path.is_file()
        }


def save_model_files(loaded, folder):
    """Write the checkpoint into ``folder``: safetensors weights, config and tokenizer."""
    with quiet_transformers_progress():
        loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)


def clear_model_registry():
    """Forget every shared checkpoint (they are freed once no estimator holds them)."""
    with _registry_lock:
        _registry.clear()


def _remember(key, loaded):
    _registry[key] = loaded
    while len(_registry) > MAX_SHARED_MODELS:
        _registry.popitem(last=False)


def _load_tokenizer(source, options):
    from transformers import AutoTokenizer

    if _is_wordpiece_only(source, options):
        # AutoTokenizer follows config.json to AlbertTokenizer and, finding no
        # spiece.model, silently returns a 5-token vocabulary that maps every word to
        # <unk>. These checkpoints' own model cards say to use BertTokenizer.
        fallback = _load_wordpiece_tokenizer(source, options)
        if fallback is not None:
            return fallback
    try:
        return AutoTokenizer.from_pretrained(source, **options)
    except Exception as error:  # noqa: BLE001 - re-raised with guidance below
        fallback = _load_wordpiece_tokenizer(source, options)
        if fallback is not None:
            return fallback
        raise _load_error(source, options, error) from error


def _is_wordpiece_only(source, options):
    """Whether the checkpoint ships a BERT ``vocab.txt`` and no other tokenizer files.

    That is the ``albert_chinese_*`` layout: an AlbertModel whose tokenizer is BERT's
    WordPiece, with neither ``spiece.model`` nor ``tokenizer.json`` beside it.
    """
    from transformers.utils.hub import cached_file

    lookup = {
        name: options[name]
        for name in ("revision", "cache_dir", "local_files_only", "token")
        if options.get(name) is not None
    }

    def has(file_name):
        try:
            return (
                cached_file(
                    source,
                    file_name,
                    _raise_exceptions_for_missing_entries=False,
                    _raise_exceptions_for_connection_errors=False,
                    **lookup,
                )
                is not None
            )
        except Exception:  # noqa: BLE001 - an unreachable file counts as absent
            return False

    return has("vocab.txt") and not has("spiece.model") and not has("tokenizer.json")


def _load_wordpiece_tokenizer(source, options):
    """albert_chinese_* checkpoints pair AlbertModel with a BERT ``vocab.txt``."""
    from transformers import BertTokenizer

    try:
        return BertTokenizer.from_pretrained(source, **options)
    except Exception:  # noqa: BLE001 - the caller reports the original error
        return None


def _load_encoder(source, options):
    from transformers import AutoModel

    try:
        with quiet_transformers_progress():
            return AutoModel.from_pretrained(source, **options)
    except Exception as error:  # noqa: BLE001 - re-raised with guidance below
        raise _load_error(source, options, error) from error


_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_restore = False


@contextmanager
def quiet_transformers_progress():
    """Hide transformers' own progress bars ("Loading weights", "Writing model shards").

    The library is silent by default (``verbose=False``); those bars would print on every
    load and on every pickle that stores weights. The user's setting is restored when the
    last concurrent user leaves.
    """
    global _quiet_users, _quiet_restore
    from transformers.utils import logging as hf_logging

    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_restore = hf_logging.is_progress_bar_enabled()
            if _quiet_restore:
                hf_logging.disable_progress_bar()
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0 and _quiet_restore:
                hf_logging.enable_progress_bar()


def _load_error(source, options, error):
    offline_help = (
        "To work offline, download the checkpoint once where the hub is reachable "
        "(`hf download <id>` or `AutoModel.from_pretrained(id).save_pretrained(folder)` "
        "with its tokenizer) and pass that folder, or keep it in the Hugging Face cache and "
        "set local_files_only=True or HF_HUB_OFFLINE=1."
    )
    if not os.path.isdir(source) and _looks_like_path(source):
        return OSError(
            f"Could not load model_name_or_path={source!r}: it looks like a local path, but "
            "no folder exists there. Check the path, or pass a Hugging Face hub id such as "
            f"'albert-base-v2'.\n{offline_help}"
        )
    where = "local folder" if os.path.isdir(source) else "Hugging Face hub id"
    offline = options.get("local_files_only") or os.environ.get("HF_HUB_OFFLINE") == "1"
    mode = "offline (local cache only)" if offline else "from the local cache, then the hub"
    return OSError(
        f"Could not load model_name_or_path={source!r} (tried as a {where}, {mode}): "
        f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}\n"
        f"{offline_help}"
    )


def _looks_like_path(source):
    """Hub ids are ``name`` or ``owner/name``; these can only be file-system paths."""
    return (
        source.startswith(("/", "./", "../", "~", "\\"))
        or bool(os.path.splitdrive(source)[0])
        or source.count("/") > 1
    )


def _prepare(model, tokenizer, device):
    """Move to ``device``, switch to inference, and probe what the checkpoint offers."""
    import torch

    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.inference_mode():
        probe = tokenizer(["probe"], return_tensors="pt")
        output = model(
            input_ids=probe["input_ids"].to(device),
            attention_mask=probe["attention_mask"].to(device),
            output_hidden_states=True,
        )
    hidden_states = getattr(output, "hidden_states", None)
    if not hidden_states:
        raise ValueError(
            f"The checkpoint {type(model).__name__} returns no hidden states; "
            "AlbertVectorizer needs an encoder such as ALBERT or BERT."
        )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        fingerprint=fingerprint(model, tokenizer),
        max_length=model_max_length(model, tokenizer),
        n_hidden_states=len(hidden_states),
        hidden_size=int(hidden_states[-1].shape[-1]),
        has_pooler=getattr(output, "pooler_output", None) is not None,
        **special_tokens_around(tokenizer),
    )


def special_tokens_around(tokenizer):
    """The special token ids the tokenizer puts before and after a single text."""
    probe = "probe"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return {
                "special_prefix": tuple(full[:start]),
                "special_suffix": tuple(full[start + len(plain) :]),
            }
    raise ValueError(  # pragma: no cover - no known tokenizer rewrites the text itself
        f"Cannot locate the text inside the special tokens of {type(tokenizer).__name__}."
    )


def model_max_length(model, tokenizer):
    """The longest input the checkpoint accepts: its position table and tokenizer limit."""
    limits = []
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models reserve the first positions for padding.
        if getattr(model.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
            positions -= (model.config.pad_token_id or 0) + 1
        limits.append(int(positions))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limits.append(int(tokenizer_limit))
    return min(limits) if limits else 512


def fingerprint(model, tokenizer):
    """A content hash of config, tokenizer and weights: the model's identity for caching."""
    digest = hashlib.blake2b(digest_size=16)
    # Where the checkpoint was read from is not part of what it is: a copied or saved
    # folder, or the same folder under a newer transformers, keeps its fingerprint.
    config = {
        key: value
        for key, value in model.config.to_dict().items()
        if key not in PROVENANCE_CONFIG_KEYS
    }
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy())
    return digest.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def warn_device_change(previous, current):
    """Warn that a persisted estimator now runs somewhere else."""
    warnings.warn(
        f"This AlbertVectorizer was fitted on device {previous!r}, which is not available "
        f"here; it now runs on {current!r}. Set device explicitly to silence this warning.",
        UserWarning,
        stacklevel=3,
    )
