"""Loading a checkpoint: lazy imports, a registry shared by clones, fingerprint, clear errors.

A loaded checkpoint is kept in a small process-wide registry so that every clone of an
estimator (``GridSearchCV`` makes one per candidate and fold) reuses the same weights
instead of reading them again. Fine-tuned weights, which exist only in this process, are
held under a name made of their fingerprint for as long as an estimator uses them, so that
clones resolve them too. Weights restored from a pickle for a named checkpoint stay with the
restored estimator and its clones (:class:`RestoredCheckpoint`), never under the name: a
fresh estimator of that name loads what the name holds now. Each checkpoint loads under its
own lock: a slow download never holds up other loads or registry hits.
"""

import copy
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ._devices import INT8
from ._hub import check_source, looks_like_local_path

logger = logging.getLogger("sklearn_albert")

#: How many distinct checkpoints the registry keeps alive after their last user is gone.
MAX_SHARED_MODELS = 3

#: Config entries that cannot change what an encoder computes from token ids, left out of
#: the fingerprint, as are every entry whose name starts with ``_`` (``_name_or_path``,
#: ``_attn_implementation``) and every dropout probability (a name holding ``dropout``:
#: inference runs without dropout). Every other entry counts unless it holds its default
#: value (:func:`config_definition`), so that a config spelling out a default leaves
#: fingerprints (and caches, and saved folders) valid. An entry nobody listed (a newer
#: release's option set to a non-default value) changes the fingerprint: a cache can miss,
#: but never serves the vectors of another computation.
CONFIG_KEYS_IGNORED = (
    # version stamps
    "transformers_version",
    # where the checkpoint came from, what it was saved as
    "name_or_path",
    "architectures",
    # task heads and label maps: AutoModel loads the bare encoder
    "id2label",
    "label2id",
    "num_labels",
    "finetuning_task",
    "problem_type",
    "task_specific_params",
    # what a forward pass returns, not what it computes
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "use_return_dict",
    "torchscript",
    # the storage precision (the weights themselves are hashed)
    "torch_dtype",
    "dtype",
    # how weights are initialised before loading
    "initializer_range",
)

#: Defaults of config entries that some supported transformers releases define and others
#: do not (4.x's ``PretrainedConfig`` generic and generation entries, and entries such as
#: ALBERT's ``position_embedding_type`` that 5.x dropped). A config file that holds one of
#: these at this value (the published ``albert-base-v2`` holds ``is_decoder``,
#: ``pruned_heads``, ``num_beams``...) fingerprints the same under every release: one that
#: defines the entry leaves it out as a default, one that does not would otherwise keep it.
#: The config class's own defaults take precedence.
CONFIG_DEFAULTS_ACROSS_RELEASES = {
    "is_decoder": False,
    "is_encoder_decoder": False,
    "add_cross_attention": False,
    "cross_attention_hidden_size": None,
    "tie_encoder_decoder": False,
    "tie_word_embeddings": True,
    "chunk_size_feed_forward": 0,
    "pruned_heads": {},
    "use_bfloat16": False,
    "tf_legacy_loss": False,
    "use_cache": True,
    "position_embedding_type": "absolute",
    "tokenizer_class": None,
    "prefix": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    # generation entries (4.x kept them in every config; 5.x moved them out)
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "output_scores": False,
    "return_dict_in_generate": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
}

#: Config entries that decided the fingerprints of sklearn_albert 0.x before
#: :data:`FINGERPRINT_SCHEME` (see :func:`legacy_fingerprint`).
LEGACY_ARCHITECTURE_KEYS = (
    "model_type",
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "num_hidden_groups",
    "inner_group_num",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "position_embedding_type",
    "pad_token_id",
)

#: Prefix of the fingerprints :func:`fingerprint` computes. Fingerprints written before it
#: existed are 32 bare hex digits (:func:`is_legacy_fingerprint`), and hashed only a
#: whitelist of BERT/ALBERT config entries.
FINGERPRINT_SCHEME = "fp2-"

#: Options of slow (Python) tokenizers that change the ids they produce.
SLOW_TOKENIZER_OPTIONS = (
    "do_lower_case",
    "remove_space",
    "keep_accents",
    "tokenize_chinese_chars",
    "strip_accents",
    "never_split",
)

_registry = OrderedDict()
_registry_lock = threading.Lock()  # guards the dictionaries only, never a load
_load_locks = {}

#: ``model_name_or_path`` prefix naming a model that lives only in memory (fine-tuned weights).
IN_MEMORY_PREFIX = "in-memory:"

# Fine-tuned weights held by (in-memory name, device). An entry lives as long as an
# estimator holds it.
_held = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to encode, and the facts the estimators need about it."""

    model: object
    tokenizer: object
    device: object
    fingerprint: str
    tokenizer_fingerprint: str
    max_length: int
    n_hidden_states: int
    hidden_size: int
    has_pooler: bool
    special_prefix: tuple
    special_suffix: tuple
    compute_variants: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def pad_id(self):
        """The id padding positions hold (0 when the tokenizer names none)."""
        return self.tokenizer.pad_token_id or 0

    def model_for(self, compute_dtype):
        """The model to run under autocast at ``compute_dtype``.

        For reduced precision, a copy whose ``Linear`` weights are stored in
        ``compute_dtype``: autocast would otherwise cast every weight again on every
        forward pass (its weight cache does not apply under ``inference_mode``).
        Normalisations, embeddings and softmax keep float32 weights, and autocast runs
        them in float32. The copy shares every other parameter with the original. On
        CPU the copy holds Linear weights packed once for oneDNN and runs short
        sequences' attention as matmuls (``_cpu/``). Each copy is built on first use and
        kept. (``"int8"`` runs a calibrated encoder the estimator holds, not a copy.)
        """
        import torch

        on_cpu = self.device.type == "cpu"
        if compute_dtype == torch.float32 and not on_cpu:
            return self.model
        variant = self.compute_variants.get(compute_dtype)
        if compute_dtype == INT8:
            raise ValueError("int8 runs the estimator's calibrated encoder, not a model copy.")
        if variant is None:
            from ._cpu.packed_linear import inference_copy

            variant = inference_copy(self.model, compute_dtype, cpu=on_cpu)
            variant = self.compute_variants.setdefault(compute_dtype, variant)
        return variant


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

    An in-memory name (:func:`in_memory_name`) resolves to the fine-tuned weights held
    under it. Any other name comes from the shared registry, or else the folder or the hub:
    weights restored from a pickle are never found by the name of their checkpoint (see
    :class:`RestoredCheckpoint`), so a folder saved again with other weights is read again.

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
        return _find_held(source, device) or _missing_in_memory(source)
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
        key_lock = _load_locks.setdefault(key, threading.Lock())
    with key_lock:  # one load per checkpoint at a time; others proceed meanwhile
        with _registry_lock:
            if key in _registry:
                return _registry[key]
        options = dict(
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=os.environ.get(token_env) if token_env else None,
            trust_remote_code=False,
        )
        # Decided in seconds, before huggingface_hub's minutes of retries without a network.
        options["local_files_only"], unavailable = check_source(
            source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
        if unavailable is not None:
            raise _load_error(source, options, unavailable)
        started = time.perf_counter()
        tokenizer = _load_tokenizer(source, options)
        model = _load_encoder(source, options)
        loaded = _prepare(model, tokenizer, device)
        with _registry_lock:
            _remember(key, loaded)
            _load_locks.pop(key, None)
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
    """Rebuild a checkpoint from the ``{file name: bytes}`` of :func:`export_model_files`.

    The names come from a pickle or skops file: only allow-listed checkpoint file names
    are written, into a fresh private folder (see ``_model_files.restored_checkpoint``).
    """
    from ._model_files import restored_checkpoint

    with restored_checkpoint(files) as folder:
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


def prepare_model(model, tokenizer, device):
    """Make an in-memory model (such as fine-tuned weights) a ``LoadedModel`` on ``device``.

    The model is moved to ``device`` and frozen for inference. Pass the result to
    :func:`hold_in_memory` under :func:`in_memory_name` to make it loadable by name.
    """
    return _prepare(model, tokenizer, device)


def hold_in_memory(name, loaded):
    """Make ``loaded`` what :func:`load_model` returns for ``name`` in this process.

    ``name`` is :func:`in_memory_name` of fine-tuned weights: it names their fingerprint,
    so one name never stands for two sets of weights. The entry lives as long as some
    estimator holds the returned object. If a live model is held under that name and
    device already, that one is kept and returned (the same weights, shared).
    """
    with _registry_lock:
        return _held.setdefault((name, str(loaded.device)), loaded)


class RestoredCheckpoint:
    """Weights restored from a pickle or folder for a named checkpoint, and where they run.

    A restored estimator keeps one, and hands it to its clones (``__sklearn_clone__``),
    so that a grid search over a restored pipeline encodes with the restored weights even
    when the checkpoint's folder is gone or holds other weights now. It applies only while
    the clone names the same checkpoint and revision; a fresh estimator of that name, or a
    clone given another name, loads what the name holds now (:func:`load_model`).

    Parameters
    ----------
    model_name_or_path : str or path-like
        The checkpoint the estimator was fitted with.
    revision : str or None
        Its revision.
    loaded : LoadedModel
        The restored weights.
    """

    def __init__(self, model_name_or_path, revision, loaded):
        self.model_name_or_path = os.fspath(model_name_or_path)
        self.revision = revision
        self._by_device = {str(loaded.device): loaded}
        self._lock = threading.Lock()

    def applies_to(self, model_name_or_path, revision):
        """Whether an estimator with these parameters names the restored checkpoint."""
        return (
            isinstance(model_name_or_path, (str, os.PathLike))
            and os.fspath(model_name_or_path) == self.model_name_or_path
            and revision == self.revision
        )

    def on(self, device):
        """The restored weights on ``device`` (copied there once, then kept)."""
        with self._lock:
            loaded = self._by_device.get(str(device))
            if loaded is None:
                source = next(iter(self._by_device.values()))
                loaded = _prepare(copy.deepcopy(source.model), source.tokenizer, device)
                self._by_device[str(device)] = loaded
            return loaded


def in_memory_name(loaded):
    """The ``model_name_or_path`` under which :func:`load_model` finds fine-tuned weights."""
    return IN_MEMORY_PREFIX + loaded.fingerprint


def _find_held(name, device):
    """The model held under ``name`` on ``device`` (copied there if held elsewhere), or None."""
    with _registry_lock:
        candidates = [loaded for (held, _), loaded in list(_held.items()) if held == name]
    for loaded in candidates:
        if loaded.device == device:
            return loaded
    if not candidates:
        return None
    source = candidates[0]
    moved = _prepare(copy.deepcopy(source.model), source.tokenizer, device)
    return hold_in_memory(name, moved)


def _missing_in_memory(source):
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
    if not os.path.isdir(source) and looks_like_local_path(source):
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


def _prepare(model, tokenizer, device):
    """Move to ``device``, switch to inference, and probe what the checkpoint offers."""
    import torch

    tokenizer_hash = tokenizer_fingerprint(tokenizer)
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
        fingerprint=fingerprint(model, tokenizer, tokenizer_hash=tokenizer_hash),
        tokenizer_fingerprint=tokenizer_hash,
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


def fingerprint(model, tokenizer, *, tokenizer_hash=None):
    """A content hash of a checkpoint: its config, tokenizer and weights.

    ``"fp2-"`` and 32 hex digits, a BLAKE2b digest of:

    - the model's config: every entry of ``config.to_dict()`` whose value differs from the
      config class's default, but those in :data:`CONFIG_KEYS_IGNORED`, those whose name
      starts with ``_`` and dropout probabilities (see :data:`CONFIG_KEYS_IGNORED`), and
      always ``model_type``;
    - the tokenizer (:func:`tokenizer_fingerprint`);
    - every tensor of ``model.state_dict()``: its name, dtype, shape and bytes.

    Where the checkpoint was read from never counts. ``tokenizer_hash`` is the tokenizer's
    :func:`tokenizer_fingerprint` when the caller has it already.
    """
    import torch

    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(config_definition(model.config), sort_keys=True, default=str).encode())
    digest.update((tokenizer_hash or tokenizer_fingerprint(tokenizer)).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        if tensor.is_complex():
            tensor = torch.view_as_real(tensor)
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
    return FINGERPRINT_SCHEME + digest.hexdigest()


def config_definition(config):
    """The config entries the fingerprint hashes: those that can change the output.

    Entries equal to the config class's default (or, for an entry the class does not
    define, to :data:`CONFIG_DEFAULTS_ACROSS_RELEASES`) are left out, so that configs that
    differ only in spelling defaults out (or in the defaults a transformers release adds or
    drops) agree.
    """
    values = config.to_dict()
    try:
        own_defaults = type(config)().to_dict()
    except Exception:  # noqa: BLE001 - a config class that needs arguments: keep every entry
        own_defaults = {}
    defaults = {**CONFIG_DEFAULTS_ACROSS_RELEASES, **own_defaults}
    missing = object()
    kept = {
        key: value
        for key, value in values.items()
        if key not in CONFIG_KEYS_IGNORED
        and not key.startswith("_")
        and "dropout" not in key
        and defaults.get(key, missing) != value
    }
    kept["model_type"] = values.get("model_type", getattr(config, "model_type", ""))
    return kept


def tokenizer_fingerprint(tokenizer):
    """A hash of what decides the ids a tokenizer produces (``"fp2-"`` and 32 hex digits).

    Its class (without 4.x's ``Fast`` suffix), its special tokens and their ids, and
    :func:`tokenizer_definition`: the whole ``tokenizer.json`` of a fast tokenizer
    (vocabulary, merges, normaliser, pre-tokeniser, post-processor, added tokens) but its
    stored truncation and padding, or the vocabulary, SentencePiece model, BPE merges and
    options of a slow one.
    """
    specials = {
        str(name): [str(token), tokenizer.convert_tokens_to_ids(token)]
        for name, token in tokenizer.special_tokens_map.items()
        if isinstance(token, str)
    }
    # transformers 4.x names its tokenizers.json-backed classes "...Fast"; 5.x does not.
    name = type(tokenizer).__name__.removesuffix("Fast")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([name, specials], sort_keys=True).encode())
    digest.update(tokenizer_definition(tokenizer, call_settings=False))
    merges = getattr(tokenizer, "bpe_ranks", None)
    if merges and getattr(tokenizer, "backend_tokenizer", None) is None:
        digest.update(json.dumps(sorted(map(list, merges.items())), default=str).encode())
    return FINGERPRINT_SCHEME + digest.hexdigest()


def is_legacy_fingerprint(value):
    """Whether ``value`` was computed by :func:`legacy_fingerprint` (32 bare hex digits)."""
    return (
        isinstance(value, str)
        and len(value) == 32
        and all(character in "0123456789abcdef" for character in value)
    )


def legacy_fingerprint(model, tokenizer):
    """The fingerprint as sklearn_albert computed it before :data:`FINGERPRINT_SCHEME`.

    Kept so that estimators pickled then are recognised: it hashed only the config entries
    in :data:`LEGACY_ARCHITECTURE_KEYS`, the tokenizer and the weights. Never use it for
    new fingerprints: two checkpoints that differ elsewhere in their config share it.
    """
    digest = hashlib.blake2b(digest_size=16)
    config = model.config.to_dict()
    architecture = {key: config[key] for key in LEGACY_ARCHITECTURE_KEYS if key in config}
    digest.update(json.dumps(architecture, sort_keys=True, default=str).encode())
    digest.update(tokenizer_definition(tokenizer))
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy())
    return digest.hexdigest()


def tokenizer_definition(tokenizer, *, call_settings=True):
    """Bytes that change whenever the ids a tokenizer produces can change.

    ``call_settings=False`` leaves out a fast tokenizer's stored truncation and padding:
    transformers sets both afresh on every call, so they never change the ids, and
    ``save_pretrained`` drops them once the tokenizer was used (all-MiniLM-L6-v2's
    ``tokenizer.json`` carries ``max_length`` 128, its saved copy none). The legacy
    fingerprint kept them.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        if call_settings:
            return backend.to_str().encode()
        definition = json.loads(backend.to_str())
        definition.pop("truncation", None)
        definition.pop("padding", None)
        return json.dumps(definition, sort_keys=True).encode()
    parts = {
        "class": type(tokenizer).__name__,
        "special_tokens": {
            str(key): str(value) for key, value in tokenizer.special_tokens_map.items()
        },
        "options": {
            name: repr(getattr(tokenizer, name))
            for name in SLOW_TOKENIZER_OPTIONS
            if hasattr(tokenizer, name)
        },
    }
    digest = hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16)
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    sentencepiece = getattr(tokenizer, "sp_model", None)
    if sentencepiece is not None and hasattr(sentencepiece, "serialized_model_proto"):
        # The SentencePiece model also holds normalisation rules the vocabulary does not show.
        digest.update(sentencepiece.serialized_model_proto())
    return digest.digest()


def _byte_dtype():
    import torch

    return torch.uint8
