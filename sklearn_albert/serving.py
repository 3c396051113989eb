"""Serve a fitted estimator over HTTP with LitServe: ``sklearn-albert serve MODEL``.

LitServe (``pip install 'sklearn-albert[serve]'``) runs the HTTP front end (FastAPI on
uvicorn), the inference worker processes, and the batching of concurrent requests: each
worker takes up to ``max_batch_size`` waiting requests (waiting at most ``batch_timeout``
seconds for them), and this module calls the estimator once on the concatenation of their
texts, then splits the answer back per request. One endpoint per method the estimator
has, each its own ``LitAPI``::

    POST /predict        {"texts": [...]} -> {"predictions": [...]}
    POST /predict_proba  {"texts": [...]} -> {"probabilities": [[...]], "classes": [...]}
    POST /transform      {"texts": [...]} -> {"embeddings": [[...]]}
    GET  /health         200 once every worker has loaded and warmed up the model, else 503
    GET  /metrics        request counts and latency, Prometheus' text format
    GET  /docs           LitServe's OpenAPI page

A method the estimator lacks answers 404 with a JSON message. Requests are checked in the
HTTP process before they reach a worker (a bad request answers 4xx naming the field and
never joins a batch), the number of requests in flight is capped (503 with
``Retry-After`` beyond it), and an optional bearer token guards the endpoints.

Importing this module imports litserve; ``import sklearn_albert`` does not.
"""

import hmac
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from queue import Empty

try:
    import litserve as ls
    from fastapi import HTTPException, Request
    from fastapi.responses import JSONResponse
    from litserve.loops.base import _StopLoopError
    from litserve.loops.simple_loops import BatchedLoop
    from litserve.utils import LitAPIStatus, LoopResponseType
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        "sklearn_albert.serving needs litserve: pip install 'sklearn-albert[serve]'."
    ) from error

from ._serving_metrics import RequestMetrics, RequestTable, metrics_endpoint
from ._threads import run_torch_on_streams_only

__all__ = ["RequestError", "build_server", "check_texts", "load_estimator", "serve"]

logger = logging.getLogger("sklearn_albert")

#: The endpoints, by path: the estimator method each calls, and the response's key.
METHODS = {"/predict": "predict", "/predict_proba": "predict_proba", "/transform": "transform"}
RESPONSE_KEYS = {
    "predict": "predictions",
    "predict_proba": "probabilities",
    "transform": "embeddings",
}
#: Large batches cost less per text; a worker waits at most ``DEFAULT_BATCH_TIMEOUT``
#: after a batch's first request for others, and not at all when no other is in flight.
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_BATCH_TIMEOUT = 0.01
DEFAULT_MAX_TEXTS_PER_REQUEST = 256
#: Characters per text: a few pages, far beyond the 512 tokens most encoders read.
DEFAULT_MAX_TEXT_CHARS = 20_000
#: Requests in flight: about what a CPU server answers within the request timeout
#: (``max_queue`` ~ requests per second x seconds a client may wait).
DEFAULT_MAX_QUEUE = 256
#: Seconds a client is told to wait (``Retry-After``) when the server is full.
RETRY_AFTER_SECONDS = 1
#: Batches a worker runs at once. While one batch ends (its last forward pass leaves a
#: CPU stream idle, then the classifier runs), the next one's passes keep every stream
#: busy: on 2 cores, calls of 36 texts two at a time ran at 0.90x the texts/s of one call
#: of 1,000, against 0.68x one after another (``benchmarks/bench_call_sizes.py``).
BATCHES_IN_FLIGHT = 2
#: Longest wait, in seconds, for a batch to fill while another one runs (it ends sooner,
#: when every request in flight has joined, or that batch ends).
OVERLAP_WAIT_LIMIT = 5.0
#: Seconds a request may wait for a worker before it answers 504 (LitServe's default).
DEFAULT_REQUEST_TIMEOUT = 30
API_KEY_ENV = "SKLEARN_ALBERT_API_KEY"
#: How LitServe starts its inference workers: the values they share are made by it.
_SPAWN = multiprocessing.get_context("spawn")
WARM_UP_TEXTS = ["warm up"]


# ---------------------------------------------------------------------- the model


def load_estimator(path, *, trusted=(), device="auto"):
    """Load a fitted estimator from a joblib/pickle file, a skops file or a saved folder.

    Parameters
    ----------
    path : str or path-like
        A folder written by ``AlbertVectorizer.save`` or ``AlbertClassifier.save``; a
        ``.skops`` file; or any other file, read with ``joblib.load`` (a pickle runs
        code when it is loaded: serve only files you trust).
    trusted : iterable of str, default=()
        For a skops file: type names to trust beyond sklearn_albert's own
        (:func:`sklearn_albert.skops_trusted_types`) and those skops trusts by default.
    device : str, default="auto"
        "auto" moves the estimator's ``device="auto"`` encoders to this process's best
        device; "cpu", "cuda", "cuda:1", "mps" run every encoder there.

    Returns
    -------
    estimator : object
        The fitted estimator or pipeline, ready for this process's device.
    """
    from ._hosts import choose_device_here
    from ._persistence import move_to_device

    path = Path(path)
    if path.is_dir():
        # A saved folder holds its weights: they load straight onto the device asked for
        # (or, for "auto", the saved one, or this machine's best when that is missing).
        return _saved_class(path).load(path, device=None if device == "auto" else device)
    if not path.is_file():
        raise FileNotFoundError(
            f"Cannot serve MODEL={str(path)!r}: no such file or folder. Give a joblib or "
            "pickle file, a .skops file, or a folder written by save()."
        )
    if path.suffix == ".skops":
        estimator = _load_skops(path, trusted)
    else:
        estimator = _load_joblib(path)
    if device == "auto":
        choose_device_here(estimator)
    else:
        for encoder in _encoders(estimator):
            move_to_device(encoder, device)
    return estimator


def _saved_class(path):
    """The class a folder written by ``save`` holds, from its ``estimator.json``."""
    import sklearn_albert
    from sklearn_albert._persistence import saved_class_name

    try:
        # Read as load() reads it: no link followed, its own checksum verified first.
        name = saved_class_name(path)
    except FileNotFoundError:
        raise ValueError(
            f"Cannot serve MODEL={str(path)!r}: a folder must be one written by "
            "AlbertVectorizer.save() or AlbertClassifier.save() (it has no "
            "estimator.json). Give a joblib or .skops file for a pipeline."
        ) from None
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot serve MODEL={str(path)!r}: {error}") from None
    module, _, class_name = name.rpartition(".")
    cls = getattr(sklearn_albert, class_name, None)
    if not module.startswith("sklearn_albert") or not hasattr(cls, "load"):
        raise ValueError(
            f"Cannot serve MODEL={str(path)!r}: its estimator.json names class {name!r}, "
            "which is not a sklearn_albert estimator with load()."
        )
    return cls


def _load_joblib(path):
    import pickle

    import joblib

    try:
        return joblib.load(path)
    except (EOFError, pickle.UnpicklingError) as error:
        # A pickle carries no checksum: this catches a file cut short or garbled, not
        # every damaged byte (docs/deploying.rst, "Damaged files").
        raise _damaged(path, "joblib or pickle", error) from None
    except ValueError as error:  # refused by the estimators' own checks: name the file
        raise ValueError(f"Cannot serve MODEL={str(path)!r}: {error}") from None


def _load_skops(path, trusted):
    import zipfile

    try:
        import skops.io as sio
    except ImportError:
        raise ImportError(
            f"MODEL={str(path)!r} is a skops file: pip install 'sklearn-albert[skops]'."
        ) from None
    from . import skops_trusted_types

    # A skops file is a zip archive: each member's CRC-32 is checked as it is read.
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise _damaged(path, "skops", error) from None
    refused = sorted(set(untrusted) - set(skops_trusted_types()) - set(trusted))
    if refused:
        raise ValueError(
            f"Refusing to load MODEL={str(path)!r}: it holds types that are not trusted: "
            f"{', '.join(refused)}. Check them, then pass --trusted TYPE for each."
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except (zipfile.BadZipFile, EOFError) as error:
        raise _damaged(path, "skops", error) from None
    except ValueError as error:  # refused by the estimators' own checks: name the file
        raise ValueError(f"Cannot serve MODEL={str(path)!r}: {error}") from None


def _damaged(path, kind, error):
    return ValueError(
        f"Cannot serve MODEL={str(path)!r}: it is not a complete {kind} file "
        f"({type(error).__name__}: {error or 'it ends too early'}); it is truncated or "
        "damaged. Copy or dump it again."
    )


def _encoders(estimator):
    """The AlbertVectorizer and AlbertClassifier objects inside ``estimator``."""
    from ._persistence import EncoderPersistence

    found = [estimator] if isinstance(estimator, EncoderPersistence) else []
    if hasattr(estimator, "get_params"):
        found += [
            value
            for value in estimator.get_params(deep=True).values()
            if isinstance(value, EncoderPersistence)
        ]
    return found


def served_methods(estimator):
    """The methods of ``estimator`` this server exposes, in endpoint order."""
    return [method for method in METHODS.values() if hasattr(estimator, method)]


# ---------------------------------------------------------------------- requests


class RequestError(Exception):
    """A request this server refuses: an HTTP status and a message for the client.

    Parameters
    ----------
    status_code : int
        400, 413, 415 or 422.
    message : str
        What is wrong, naming the field, and what would work.
    """

    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def check_texts(payload, *, max_texts, max_chars):
    """The texts of a request body, or a ``RequestError`` naming what is wrong.

    Parameters
    ----------
    payload : object
        The request's parsed JSON body; it must be ``{"texts": [str, ...]}``.
    max_texts : int
        Texts per request.
    max_chars : int
        Characters per text.

    Returns
    -------
    texts : list of str
    """
    example = 'send {"texts": ["first text", "second text"]}'
    if not isinstance(payload, dict):
        raise RequestError(
            422, f"The body is a JSON {_json_type(payload)}; expected an object: {example}."
        )
    if "texts" not in payload:
        fields = ", ".join(repr(name) for name in payload) or "none"
        raise RequestError(422, f"Field 'texts' is missing (fields sent: {fields}); {example}.")
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(
            422,
            f"Field 'texts' is a JSON {_json_type(texts)}; expected a list of strings: {example}.",
        )
    if not texts:
        raise RequestError(422, "Field 'texts' is an empty list; send at least one text.")
    if len(texts) > max_texts:
        raise RequestError(
            413,
            f"Field 'texts' holds {len(texts)} texts; this server takes at most {max_texts} "
            "per request (--max-texts-per-request): split them over several requests.",
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(
                422,
                f"texts[{index}] is a JSON {_json_type(text)}; every item of 'texts' must "
                'be a string (an empty text is "").',
            )
        if len(text) > max_chars:
            raise RequestError(
                413,
                f"texts[{index}] has {len(text)} characters; this server takes at most "
                f"{max_chars} per text (--max-text-chars): shorten or split it.",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                422,
                f"texts[{index}] holds a lone surrogate (an unpaired \\ud800-\\udfff escape); "
                "send valid Unicode text.",
            ) from None
    return texts


def _json_type(value):
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "number"


class _InFlightLimit:
    """ASGI middleware: at most ``limit`` requests to ``paths`` in flight, else 503.

    The count is shared by every HTTP process of the server (a ``multiprocessing.Value``
    created before LitServe forks them); a request counts from its arrival until the last
    part of its answer is sent, waiting for a worker or being computed.
    ``path_counters`` (path -> ``multiprocessing.Value``), where given, count each path's
    requests admitted in the same way, for its inference workers to read.
    """

    def __init__(self, app, *, limit, counter, paths, path_counters=None):
        self.app = app
        self.limit = limit
        self.counter = counter
        self.paths = frozenset(paths)
        self.path_counters = dict(path_counters or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        with self.counter.get_lock():
            admitted = self.counter.value < self.limit
            if admitted:
                self.counter.value += 1
        if not admitted:
            response = JSONResponse(
                {
                    "detail": f"The server is busy: {self.limit} requests are in flight "
                    f"(--max-queue). Retry after {RETRY_AFTER_SECONDS} s."
                },
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await response(scope, receive, send)
            return
        path_counter = self.path_counters.get(scope["path"])
        if path_counter is not None:
            with path_counter.get_lock():
                path_counter.value += 1
        counted = [self.counter] + ([path_counter] if path_counter is not None else [])

        def release():  # once per request
            while counted:
                counter = counted.pop()
                with counter.get_lock():
                    counter.value -= 1

        async def send_then_release(message):
            # The request leaves the count as the last part of its answer goes out, before
            # the client can read it: a client that sends its next request on the same
            # connection at once (keep-alive) must not find its last one still counted.
            if message["type"] == "http.response.body" and not message.get("more_body"):
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            release()


# ---------------------------------------------------------------------- the endpoints


#: The LitServe versions whose batched loop :class:`_IdleBatchedLoop` was written against.
_IDLE_LOOP_VERSIONS = ("0.2.",)


class _FirstRequest:
    """A request queue that hands out one request already taken from it, then the rest.

    With ``lit_api.in_flight`` (the endpoint's requests in flight, counted by the HTTP
    processes), it also ends the batch once every request in flight has joined it or a
    batch still running (``running`` requests): what is queued still joins, and when the
    queue is empty it lowers ``lit_api.max_batch_size`` to the batch's size, which ends
    LitServe's collation at its next check (the caller restores it). With ``settle``
    seconds, it ends only once every request in flight has been in for that long since
    the last one joined: while another batch runs, the clients it has just answered send
    their next requests within milliseconds, and the count does not hold them meanwhile.
    With ``other_ended`` (a callable), the batch also ends, once the queue is empty,
    ``grace`` seconds after it first returns True: a batch that was running when this one
    began has ended, the CPU streams are free for this one, and the grace lets the
    clients just answered by it join.
    """

    def __init__(
        self, queue, first, lit_api=None, running=0, other_ended=None, grace=0.0, settle=0.0
    ):
        self._queue = queue
        self._first = [first]
        self._lit_api = lit_api
        self._running = running
        self._other_ended = other_ended
        self._grace = grace
        self._settle = settle
        self._cut_at = None
        self._everyone_since = None
        self.taken = 0

    def get(self, block=True, timeout=None):
        if self._first:
            return self._take(self._first.pop())
        if self._settled() or self._past_cut():
            try:
                return self._take(self._queue.get_nowait())
            except Empty:
                self._lit_api.max_batch_size = self.taken
                raise
        return self._take(self._queue.get(block, timeout))

    def get_nowait(self):
        if self._first:
            return self._take(self._first.pop())
        return self._take(self._queue.get_nowait())

    def _take(self, request):
        self.taken += 1
        self._everyone_since = None  # settle counts from the last request to join
        return request

    def _everyone_in(self):
        in_flight = getattr(self._lit_api, "in_flight", None)
        return in_flight is not None and self.taken + self._running >= in_flight.value

    def _settled(self):
        """Every request in flight has joined, for ``settle`` seconds since the last one."""
        if not self._everyone_in():
            self._everyone_since = None
            return False
        if self._settle <= 0:
            return True
        now = time.monotonic()
        if self._everyone_since is None:
            self._everyone_since = now
        return now - self._everyone_since >= self._settle

    def _past_cut(self):
        if self._cut_at is None:
            if self._other_ended is None or not self._other_ended():
                return False
            self._cut_at = time.monotonic() + self._grace
        return time.monotonic() >= self._cut_at


class _IdleBatchedLoop(BatchedLoop):
    """LitServe's batched loop, asleep while no request waits, running two batches at once.

    Collecting a batch: LitServe's own loop asks its request queue (a
    ``multiprocessing.Manager`` proxy: a round trip to the Manager process each time) for
    a request every millisecond, idle or not. This one blocks until a first request
    arrives, waking each second to let LitServe check for shutdown, then fills the batch
    with LitServe's collation, for at most ``batch_timeout`` seconds after that first
    request. The endpoint's count of requests in flight (``lit_api.in_flight``, kept by
    the HTTP processes) ends the wait early: once every request in flight is in this
    batch or in one still running, no other can join it, so it runs at once (a lone
    client never waits for ``batch_timeout``, and eight clients wait only for each other).
    While another batch runs, the wait is not cut by ``batch_timeout`` but by the end of
    that batch, plus ``batch_timeout`` (the cores are busy until then): clients whose
    answers just went out have time to send their next request, so that batches do not
    shrink as they trickle in. For the same reason, a batch collected while another runs
    ends on "every request in flight has joined" only ``batch_timeout`` after the last
    request joined (measured in ``benchmarks/README.md``).

    Running batches: up to :data:`BATCHES_IN_FLIGHT` at once, each on a batch thread of
    its own calling the estimator (``transform`` is thread-safe), so that the CPU streams
    start on the next batch while the last one ends; a lone client's batch runs on the
    main thread instead (:meth:`run_batched_loop`). A batch takes at most its share of the
    requests in flight (``1 / BATCHES_IN_FLIGHT`` of them, rounded up), so that a crowd of
    clients splits into as many batches as can overlap instead of one batch running alone.
    LitServe's stop sentinel ends the loop after the running batches have answered.
    """

    def __init__(self):
        super().__init__()
        self._running = 0  # requests in the batches now running
        self._free = BATCHES_IN_FLIGHT  # batches that could start now
        self._ended = 0  # batches whose estimator call has returned
        self._lock = None  # made in the worker: LitServe pickles the loop to start it

    def get_batch_requests(self, lit_api, request_queue, transport):
        try:
            first = request_queue.get(timeout=1.0)
        except Empty:
            return [], []
        running, ended = self._running, self._ended  # int reads: atomic under the GIL
        other_running = self._free < BATCHES_IN_FLIGHT
        in_flight = getattr(lit_api, "in_flight", None)
        queue = _FirstRequest(
            request_queue,
            first,
            lit_api,
            running,
            other_ended=(lambda: self._ended > ended) if other_running else None,
            grace=lit_api.batch_timeout,
            settle=lit_api.batch_timeout if other_running else 0.0,
        )
        # LitServe's collation reads both limits from the API at every step.
        batch_timeout, max_batch_size = lit_api.batch_timeout, lit_api.max_batch_size
        if in_flight is not None:
            waiting = in_flight.value - running
            if waiting <= 1:
                lit_api.batch_timeout = 0  # 0 takes what is queued now
            elif other_running:  # until that batch ends, not batch_timeout
                lit_api.batch_timeout = max(batch_timeout, OVERLAP_WAIT_LIMIT)
            # A batch takes at most its share of every request in flight, so that a crowd
            # splits into batches that overlap (and stays split: a batch of 63 running
            # beside one of 1 would leave a lone request cycling on its own).
            share = -(-in_flight.value // BATCHES_IN_FLIGHT)
            lit_api.max_batch_size = max(1, min(max_batch_size, share))
        try:
            return super().get_batch_requests(lit_api, queue, transport)
        finally:
            lit_api.batch_timeout, lit_api.max_batch_size = batch_timeout, max_batch_size

    def run_batched_loop(self, lit_api, request_queue, transport, callback_runner, lit_spec=None):
        # The worker's main thread collects the batches. A batch that holds every request
        # in flight while no other runs (a lone client) runs right there, on the thread
        # that loaded and warmed up the model, with no hand-off (on another thread, one
        # short text took 24-31 ms instead of 16-18); any other goes to the first idle of
        # BATCHES_IN_FLIGHT threads, and the main thread collects the next one meanwhile.
        # The batch threads run torch on one intra-op thread (their forward passes still
        # spread over the engine's streams): a team of threads of their own would make
        # libgomp stop spinning in every team, the main thread's included, and a lone
        # client's batch would take 39.5-46 ms instead of 26-28 (run_torch_on_streams_only).
        import torch

        self._lock = threading.Lock()
        slots = threading.BoundedSemaphore(BATCHES_IN_FLIGHT)
        idle = list(range(BATCHES_IN_FLIGHT))
        in_flight = getattr(lit_api, "in_flight", None)
        with ExitStack() as running:
            runners = [
                running.enter_context(
                    ThreadPoolExecutor(
                        1,
                        thread_name_prefix=f"batch_{i}",
                        initializer=run_torch_on_streams_only,
                        initargs=(torch.get_num_threads(),),
                    )
                )
                for i in range(BATCHES_IN_FLIGHT)
            ]
            while True:
                slots.acquire()  # a batch is collected only when it can start at once
                try:
                    batch, timed_out = self.get_batch_requests(lit_api, request_queue, transport)
                except _StopLoopError:
                    slots.release()
                    return  # leaving the ``with`` waits for the running batches
                except BaseException:
                    slots.release()
                    raise
                for response_queue_id, uid in timed_out:
                    self.put_response(
                        transport,
                        response_queue_id,
                        uid,
                        HTTPException(504, "Request timed out"),
                        LitAPIStatus.ERROR,
                        LoopResponseType.REGULAR,
                    )
                if not batch:
                    slots.release()
                    continue
                alone = (
                    self._free == BATCHES_IN_FLIGHT
                    and in_flight is not None
                    and len(batch) >= in_flight.value
                )
                runner, free_slot, answered = self._start(batch, slots, idle, alone)
                if alone:
                    self._answer(lit_api, transport, batch, free_slot, answered)
                else:
                    runners[runner].submit(
                        self._answer, lit_api, transport, batch, free_slot, answered
                    )

    def _start(self, batch, slots, idle, inline):
        """Count ``batch`` as running; its runner (None inline) and its two callbacks."""
        size = len(batch)
        with self._lock:
            self._running += size
            self._free -= 1
            runner = None if inline else min(idle)
            if runner is not None:
                idle.remove(runner)
        freed = []

        def free_slot():  # the estimator is done: the next batch may start
            if not freed:
                freed.append(True)
                with self._lock:
                    self._free += 1
                    self._ended += 1
                    if runner is not None:
                        idle.append(runner)
                slots.release()

        def answered():  # the answers are sent
            free_slot()
            with self._lock:
                self._running -= size

        return runner, free_slot, answered

    def _answer(self, lit_api, transport, batch, free_slot, answered):
        """Run one batch through the estimator and send each request its answer.

        ``free_slot()`` runs once the estimator is done, before the answers go out (the
        clients' next requests then find the slot free); ``answered()`` once they are
        sent (the batch's requests stop counting as running only then: until the HTTP
        process has their answers, they still count as in flight there).
        """
        response_queue_ids, uids, inputs = zip(*batch)
        try:
            try:
                outputs = lit_api.predict([lit_api.decode_request(item) for item in inputs])
                answers = [lit_api.encode_response(output) for output in outputs]
            except Exception as error:
                free_slot()
                logger.exception("The estimator failed on a batch of %d request(s).", len(batch))
                for response_queue_id, uid in zip(response_queue_ids, uids):
                    self.put_error_response(
                        transport, response_queue_id, uid, error, LoopResponseType.REGULAR
                    )
                return
            free_slot()
            for response_queue_id, uid, answer in zip(response_queue_ids, uids, answers):
                self.put_response(
                    transport,
                    response_queue_id,
                    uid,
                    answer,
                    LitAPIStatus.OK,
                    LoopResponseType.REGULAR,
                )
        finally:
            answered()


def _batched_loop(max_batch_size):
    """The loop for an endpoint: :class:`_IdleBatchedLoop` where LitServe's fits it."""
    if max_batch_size <= 1:
        return "auto"  # LitServe's unbatched loop already blocks while idle
    version = getattr(ls, "__version__", "")
    if not version.startswith(_IDLE_LOOP_VERSIONS) or not all(
        callable(getattr(BatchedLoop, name, None))
        for name in ("get_batch_requests", "run_batched_loop", "put_response", "put_error_response")
    ):
        logger.warning(
            "LitServe %s is not a version the idle-friendly batched loop was written for "
            "(%s): using LitServe's own loop, which polls its queue every millisecond "
            "while idle and runs one batch at a time.",
            version or "(unknown version)",
            ", ".join(f"{prefix}x" for prefix in _IDLE_LOOP_VERSIONS),
        )
        return "auto"
    return _IdleBatchedLoop()


class EstimatorAPI(ls.LitAPI):
    """One endpoint: ``method`` of the estimator in ``model``, batched by LitServe.

    Each inference worker process loads the estimator once in :meth:`setup`, runs a
    warm-up call (so that ``/health`` answers 200 only when the first request will not
    pay for loading), and keeps it for every batch.

    Parameters
    ----------
    model : str
        What :func:`load_estimator` reads.
    method : {"predict", "predict_proba", "transform"}
    trusted : tuple of str, default=()
    device : str, default="auto"
    max_texts_per_request : int
    max_text_chars : int
    api_key : str or None, default=None
        Requests must send ``Authorization: Bearer <api_key>``; None lets any through.
    log_level : str, default="info"
        The workers' level for the library's log (one line per batch at "debug").
    max_batch_size, batch_timeout
        LitServe's: requests per batch, and seconds a worker waits to fill one.
    in_flight : multiprocessing.Value, default=None
        The count of this endpoint's requests in flight, kept by the HTTP processes: a
        worker does not wait ``batch_timeout`` for a batch when its request is the only
        one. Created by the ``spawn`` context, as LitServe starts its workers.
    """

    def __init__(
        self,
        model,
        method,
        *,
        trusted=(),
        device="auto",
        max_texts_per_request=DEFAULT_MAX_TEXTS_PER_REQUEST,
        max_text_chars=DEFAULT_MAX_TEXT_CHARS,
        api_key=None,
        log_level="info",
        max_batch_size=DEFAULT_MAX_BATCH_SIZE,
        batch_timeout=DEFAULT_BATCH_TIMEOUT,
        in_flight=None,
    ):
        super().__init__(
            max_batch_size=max_batch_size,
            batch_timeout=batch_timeout,
            api_path=f"/{method}",
            loop=_batched_loop(max_batch_size),
        )
        self.model = str(model)
        self.method = method
        self.trusted = tuple(trusted)
        self.device_name = device
        self.max_texts_per_request = max_texts_per_request
        self.max_text_chars = max_text_chars
        self.api_key = api_key
        self.log_level = log_level
        self.in_flight = in_flight
        self.estimator = None

    # -- in the HTTP processes: a FastAPI dependency of this endpoint's route

    async def authorize(self, request: Request):
        """Refuse a request without the API key (401) or with a bad body (4xx)."""
        if self.api_key is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.api_key.encode()
            ):
                raise HTTPException(
                    401,
                    "Missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/")):
            # LitServe would parse a form: say what works instead (curl -d sends a form).
            raise HTTPException(
                415,
                f"The body is sent as {content_type.split(';')[0]}; send the JSON body "
                "with the header 'Content-Type: application/json'.",
            )
        try:
            payload = await request.json()  # kept by the request: LitServe reads it again
        except (ValueError, UnicodeDecodeError) as error:
            raise HTTPException(
                400,
                f"The body is not JSON ({error}); send "
                '{"texts": ["first text", "second text"]} with Content-Type: application/json.',
            ) from None
        try:
            check_texts(
                payload, max_texts=self.max_texts_per_request, max_chars=self.max_text_chars
            )
        except RequestError as refused:
            raise HTTPException(refused.status_code, refused.message) from None

    # -- in the inference workers

    def setup(self, device):
        from ._hosts import reuse_freed_memory

        _log_to_stderr(self.log_level)
        reuse_freed_memory()
        self.estimator = load_estimator(self.model, trusted=self.trusted, device=self.device_name)
        started = time.perf_counter()
        getattr(self.estimator, self.method)(WARM_UP_TEXTS)
        logger.info(
            "Worker %d for /%s: loaded %s, warmed up in %.2f s",
            os.getpid(),
            self.method,
            self.model,
            time.perf_counter() - started,
        )

    def decode_request(self, request):
        return request["texts"]

    def predict(self, x):
        # LitServe hands a list of requests' texts when batching (max_batch_size > 1),
        # one request's texts otherwise.
        requests = x if self.max_batch_size > 1 else [x]
        texts = [text for request in requests for text in request]
        started = time.perf_counter()
        output = getattr(self.estimator, self.method)(texts)
        logger.debug(
            "/%s batch: %d request(s), %d text(s), %d characters, %.3f s on %s",
            self.method,
            len(requests),
            len(texts),
            sum(map(len, texts)),
            time.perf_counter() - started,
            threading.current_thread().name,
        )
        rows = _as_rows(output)
        answers, start = [], 0
        for request in requests:
            answers.append(rows[start : start + len(request)])
            start += len(request)
        return answers if self.max_batch_size > 1 else answers[0]

    def encode_response(self, output):
        response = {RESPONSE_KEYS[self.method]: output}
        if self.method == "predict_proba":
            classes = getattr(self.estimator, "classes_", None)
            response["classes"] = None if classes is None else _as_rows(classes)
        return response


def _as_rows(output):
    """A method's output as JSON-ready Python values, one item per text."""
    import numpy as np

    if hasattr(output, "toarray"):  # a sparse matrix (a pipeline ending in one)
        output = output.toarray()
    return np.asarray(output).tolist()


def _log_to_stderr(level):
    """The library's log on a worker's stderr (a spawned process starts without handlers)."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("sklearn-albert: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


# ---------------------------------------------------------------------- the server


def build_server(
    model,
    *,
    trusted=(),
    device="auto",
    workers=1,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    batch_timeout=DEFAULT_BATCH_TIMEOUT,
    max_texts_per_request=DEFAULT_MAX_TEXTS_PER_REQUEST,
    max_text_chars=DEFAULT_MAX_TEXT_CHARS,
    max_queue=DEFAULT_MAX_QUEUE,
    request_timeout=DEFAULT_REQUEST_TIMEOUT,
    methods=None,
    api_key=None,
    metrics=True,
    log_level="info",
):
    """A LitServer with one endpoint per method of the estimator in ``model``.

    The estimator is loaded here once, to learn its methods and to fail early on a bad
    file, then let go: each inference worker loads its own.

    Parameters
    ----------
    model : str or path-like
        What :func:`load_estimator` reads.
    trusted : iterable of str, default=()
        Extra type names trusted in a skops file.
    device : str, default="auto"
    workers : int, default=1
        Inference worker processes per endpoint, each with its own copy of the model.
    max_batch_size : int, default=64
        Requests per batch (a batch's texts are all its requests' texts).
    batch_timeout : float, default=0.01
        Seconds a worker waits, after a batch's first request, for the batch to fill.
    max_texts_per_request : int, default=256
    max_text_chars : int, default=20000
    max_queue : int, default=256
        Requests in flight (waiting or computed) beyond which the server answers 503.
        About the requests per second the server answers times ``request_timeout``.
    request_timeout : float, default=30
        Seconds a request may wait for a worker before it answers 504.
    methods : iterable of str, default=None
        The endpoints to serve, among "predict", "predict_proba", "transform"; None
        serves every one the estimator has. Each endpoint runs its own ``workers``
        processes, each holding a copy of the model.
    api_key : str, default=None
        The bearer token every request to an endpoint must send.
    metrics : bool, default=True
        Serve ``GET /metrics``: request counts by status class, a latency histogram per
        endpoint and the requests in flight, in Prometheus' text format (see
        ``_serving_metrics``). It needs no key, like ``/health``.
    log_level : str, default="info"

    Returns
    -------
    server : litserve.LitServer
    """
    for name, value in {
        "workers": workers,
        "max_batch_size": max_batch_size,
        "max_texts_per_request": max_texts_per_request,
        "max_text_chars": max_text_chars,
        "max_queue": max_queue,
    }.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Got {name}={value!r} but expected a positive integer.")
    if not batch_timeout >= 0:
        raise ValueError(f"Got batch_timeout={batch_timeout!r} but expected seconds >= 0.")
    if not request_timeout > batch_timeout:
        raise ValueError(
            f"Got request_timeout={request_timeout!r} but expected seconds greater than "
            f"batch_timeout={batch_timeout!r}."
        )
    if api_key is not None and not api_key.strip():
        raise ValueError("Got an empty api_key; give a secret string, or None for no key.")
    estimator = load_estimator(model, trusted=trusted, device="cpu")
    available = served_methods(estimator)
    description = type(estimator).__name__
    if methods is None:
        methods = available
    else:
        methods = list(dict.fromkeys(methods))
        for method in methods:
            if method not in available:
                raise ValueError(
                    f"Got methods={methods!r} but this model ({description}) has only "
                    f"{', '.join(available) or 'none of ' + ', '.join(METHODS.values())}."
                )
        methods = [method for method in available if method in methods]
    del estimator
    from . import clear_cache

    clear_cache()  # the checkpoint a folder held in this process: the workers load their own
    if not methods:
        raise ValueError(
            f"Cannot serve MODEL={str(model)!r}: its {description} has none of "
            f"{', '.join(METHODS.values())}."
        )
    # Each endpoint's own count, read by its workers, which LitServe starts with "spawn":
    # a Value from that context can travel to them.
    path_counters = {f"/{method}": _SPAWN.Value("i", 0) for method in methods}
    apis = [
        EstimatorAPI(
            model,
            method,
            trusted=trusted,
            device=device,
            max_texts_per_request=max_texts_per_request,
            max_text_chars=max_text_chars,
            api_key=api_key,
            log_level=log_level,
            max_batch_size=max_batch_size,
            batch_timeout=batch_timeout,
            in_flight=path_counters[f"/{method}"],
        )
        for method in methods
    ]
    in_flight = multiprocessing.Value("i", 0)
    middlewares = [
        (
            _InFlightLimit,
            {
                "limit": max_queue,
                "counter": in_flight,
                "paths": list(METHODS),
                "path_counters": path_counters,
            },
        )
    ]
    if metrics:
        # Added after the queue limit, so outside it: its 503s are counted too.
        table = RequestTable(METHODS, in_flight=in_flight)
        middlewares.append((RequestMetrics, {"table": table}))
    server = ls.LitServer(
        apis,
        accelerator="cpu",  # devices are this package's choice (load_estimator), per worker
        workers_per_device=workers,
        timeout=request_timeout,
        # Bytes of a body that could be valid (a character is at most 6 bytes of JSON,
        # "\\uXXXX"): a larger one answers 413 before it is read whole.
        max_payload_size=max_texts_per_request * (6 * max_text_chars + 16) + 4096,
        model_metadata={"model": str(model), "estimator": description, "methods": methods},
        middlewares=middlewares,
    )
    if metrics:
        server.app.add_api_route("/metrics", metrics_endpoint(table), methods=["GET"])
    for path, method in METHODS.items():
        if method not in methods:
            server.app.add_api_route(
                path, _missing_method(method, description, methods), methods=["POST"]
            )
    return server


def _missing_method(method, description, methods):
    served = ", ".join(f"POST /{name}" for name in methods)

    async def missing():
        raise HTTPException(
            404, f"This model ({description}) has no {method}(); this server answers {served}."
        )

    return missing


def _stop_on_sigterm(main_pid):
    """SIGTERM as Ctrl-C in the main process; a plain exit in the HTTP processes it forks.

    Uvicorn, in each HTTP process, shuts down gracefully on SIGTERM and then raises the
    signal again for the handler it inherited: there, this one exits with status 0.
    """

    def on_sigterm(signum, frame):
        if os.getpid() == main_pid:
            raise KeyboardInterrupt
        raise SystemExit(0)

    return on_sigterm


def serve(model, *, host="127.0.0.1", port=8000, log_level="info", **options):
    """Run the server until SIGINT or SIGTERM; in-flight requests finish first.

    Parameters
    ----------
    model : str or path-like
        What :func:`load_estimator` reads.
    host : {"127.0.0.1", "0.0.0.0", "::"}, default="127.0.0.1"
    port : int, default=8000
    log_level : str, default="info"
    **options
        Passed to :func:`build_server`.
    """
    server = build_server(model, log_level=log_level, **options)
    # LitServe shuts down gracefully on KeyboardInterrupt: its HTTP processes stop
    # accepting, answer the requests in flight, then the workers stop. SIGTERM (what
    # Docker and Kubernetes send to the main process only) takes the same path.
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm(os.getpid()))
    try:
        server.run(
            host=host,
            port=port,
            log_level=log_level,
            generate_client_file=False,
            num_api_servers=options.get("workers", 1),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
