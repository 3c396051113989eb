"""Whether a checkpoint can come from the Hugging Face hub, decided in seconds.

Without a network, ``huggingface_hub`` retries every file it asks for five times with a
growing back-off: loading a hub id that is not cached took over five minutes to end in
an error, and so did a mistyped relative folder such as ``"models/albert-base-v2"``
(which reads as the hub id ``models/albert-base-v2``). Before any download starts,
:func:`check_source` tells a missing local folder from a hub id, and for a hub id that
is not in the local cache, probes the hub once with a short TCP connection (to the
endpoint ``HF_ENDPOINT`` names, or to the HTTPS proxy that would carry the request). The
verdict is remembered, so that the probe costs a process one connection.

A checkpoint whose files are local (a folder or ``local_files_only=True``) is never
probed for: its load goes on as before. A hub id in the Hugging Face cache is probed too
(one connection per process): where the hub is out of reach (the probe failed, or
``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set, even after ``huggingface_hub`` was
imported), it is read from the cache without asking the hub, instead of after
``huggingface_hub``'s minutes of retries.
"""

import os
import socket
import threading
import time
import urllib.request
from urllib.parse import urlsplit

#: Seconds the probe waits for a TCP connection to the hub (name lookup included).
PROBE_SECONDS = 3.0

#: Seconds an "unreachable" verdict is kept: a process that started offline finds the hub
#: again once the network is back, at the cost of one more probe.
UNREACHABLE_KEPT_SECONDS = 300.0

#: Values of ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` that mean "offline", as
#: ``huggingface_hub`` reads them.
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}

_verdicts = {}  # (host, port) -> (reason or None, when it was found)
_verdicts_lock = threading.Lock()


def check_source(source, *, revision=None, cache_dir=None, local_files_only=False):
    """How to load ``source``, or why it cannot load, without waiting on the hub.

    Parameters
    ----------
    source : str
        ``model_name_or_path``: a folder or a hub id.
    revision, cache_dir, local_files_only : see ``AlbertVectorizer``.

    Returns
    -------
    local_files_only : bool
        The value to load with: True where the hub is known to be out of reach but the
        checkpoint is in the Hugging Face cache.
    problem : OSError or None
        Why ``source`` cannot load (a missing folder, or a hub id neither cached nor
        reachable); None when loading should go ahead.
    """
    if local_files_only or os.path.isdir(source):
        return local_files_only, None
    hub_id = _is_hub_id(source)
    cached = hub_id and _in_hub_cache(source, revision, cache_dir)
    if not cached and looks_like_local_path(source):
        return local_files_only, OSError(
            f"no folder {source!r} exists (relative paths start from {os.getcwd()})"
        )
    if not hub_id:
        return local_files_only, None  # huggingface_hub refuses it at once, with its reason
    reason = offline_variable()
    if reason is None:
        # A cached checkpoint is probed too: without a verdict, huggingface_hub would spend
        # minutes retrying its revision check before falling back on the cache (146 s here).
        reason = hub_unreachable_reason()
    if reason is None:
        return False, None
    if cached:
        return True, None
    return False, OSError(
        f"{reason}, and {source!r} is neither in the local Hugging Face cache "
        f"({cache_dir or _hub_cache()}) nor a folder here ({os.getcwd()})."
    )


def looks_like_local_path(source):
    """Whether ``source`` can only be a file-system path, never a hub id.

    Hub ids are ``name`` or ``owner/name`` and never start with ``.``; so a name that
    starts with ``.``, ``/``, ``~`` or a drive, holds a backslash or more than one ``/``,
    or is ``owner/name`` where ``owner`` is an existing folder here, is a path.
    """
    source = os.fspath(source)
    if source.startswith((".", "/", "~", "\\")) or os.path.splitdrive(source)[0]:
        return True
    if "\\" in source or source.count("/") > 1:
        return True
    separators = {os.sep, os.altsep} - {None, "/"}
    if any(separator in source for separator in separators):
        return True
    owner, slash, _ = source.partition("/")
    return bool(slash) and os.path.isdir(owner)


def offline_variable():
    """``"HF_HUB_OFFLINE=1 is set"`` (or ``TRANSFORMERS_OFFLINE``), or None.

    Read now, not when ``huggingface_hub`` was imported, so that setting it in a running
    notebook takes effect here too.
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name, "")
        if value.upper() in TRUE_VALUES:
            return f"{name}={value} is set, so the Hugging Face hub is not used"
    return None


def hub_unreachable_reason():
    """Why the hub cannot be reached from this process, or None when it can.

    Probes once with a TCP connection to the hub's host (or the HTTPS proxy that
    ``huggingface_hub`` would go through), in a thread, so that a name lookup that hangs
    costs at most :data:`PROBE_SECONDS`. The verdict is remembered.
    """
    target, description = _probe_target()
    with _verdicts_lock:
        known = _fresh(_verdicts.get(target))
    if known is not None:
        return known[0]
    outcome = {}
    probe = threading.Thread(
        target=lambda: outcome.update(error=_connect(target)),
        name="sklearn_albert_hub_probe",
        daemon=True,
    )
    probe.start()
    probe.join(PROBE_SECONDS)
    if "error" not in outcome:
        error = f"no answer within {PROBE_SECONDS:g} s"
    else:
        error = outcome["error"]
    reason = None if error is None else f"could not connect to {description} ({error})"
    with _verdicts_lock:
        _verdicts[target] = (reason, time.monotonic())
    return reason


def forget_verdicts():
    """Forget what probes found, so that the next hub load probes again."""
    with _verdicts_lock:
        _verdicts.clear()


def _fresh(verdict):
    if verdict is None:
        return None
    reason, found_at = verdict
    if reason is not None and time.monotonic() - found_at > UNREACHABLE_KEPT_SECONDS:
        return None
    return verdict


def _probe_target():
    """``((host, port), description)`` of the first hop of a request to the hub."""
    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    scheme = endpoint.scheme or "https"
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if scheme == "https" else 80)
    description = f"the Hugging Face hub at {constants.ENDPOINT}"
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            default_port = 443 if parsed.scheme == "https" else 80
            return (parsed.hostname, parsed.port or default_port), (
                f"the proxy {parsed.hostname}:{parsed.port or default_port} for {description}"
            )
    return (host, port), description


def _connect(target):
    """None if a TCP connection to ``target`` opens, else what went wrong."""
    try:
        with socket.create_connection(target, timeout=PROBE_SECONDS):
            return None
    except OSError as error:
        return f"{target[0]}:{target[1]}: {error.strerror or error}"


def _is_hub_id(source):
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(source)
    except ValueError:
        return False
    return True


def _in_hub_cache(source, revision, cache_dir):
    """Whether the checkpoint's ``config.json`` is in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            source, "config.json", cache_dir=cache_dir, revision=revision
        )
    except ValueError:  # not a valid repo id or revision for the cache's layout
        return False
    return isinstance(found, str)


def _hub_cache():
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE
