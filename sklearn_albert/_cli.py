"""The ``sklearn-albert`` command line: ``embed`` files of texts, ``serve`` a model, ``info``.

Every command reports a failure as one line on stderr and a non-zero exit status, never
a traceback (``--traceback`` shows one, for bug reports). Exit statuses: 0 success,
1 failure, 2 wrong usage, 130 interrupted.
"""

import argparse
import json
import logging
import sys
import time
import warnings
from contextlib import contextmanager

PROG = "sklearn-albert"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")
#: Output dtypes the command line offers: those that need no texts to fit.
CLI_OUTPUT_DTYPES = ("float32", "binary", "ubinary")

#: Advice in the library's warnings, as a command-line user acts on it.
API_ADVICE_AS_FLAGS = {
    "find_truncated(X) tells which; long_text='chunk' encodes them whole.": (
        "--long-text chunk encodes them whole."
    ),
    "long_text='chunk'": "--long-text chunk",
}

logger = logging.getLogger("sklearn_albert")


class UsageError(Exception):
    """Wrong command-line usage (exit status 2)."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and returns instead of exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def main(argv=None):
    """Run the command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments after the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 on failure, 2 on wrong usage, 130 when interrupted.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, demo_args = _split_demo_arguments(argv)
    try:
        args = parser.parse_args(argv)
        if args.command == "demo":
            args.demo_args = demo_args
    except UsageError as error:
        _print_error(error)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help and --version print, then exit 0
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    with _logging_to_stderr(args.verbose), _warnings_as_lines():
        try:
            return args.run(args) or 0
        except KeyboardInterrupt:
            _print_error("interrupted", hint=_resume_hint(args))
            return EXIT_INTERRUPTED
        except UsageError as error:
            _print_error(error)
            return EXIT_USAGE
        except Exception as error:  # noqa: BLE001 - the command line's one-line report
            if args.traceback:
                raise
            _print_error(_describe(error), hint=_resume_hint(args))
            return EXIT_FAILURE


def build_parser():
    """The argument parser of all commands."""
    from . import __version__

    parser = _ArgumentParser(
        prog=PROG,
        description="Embed texts with ALBERT or any Hugging Face encoder (sklearn_albert).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (stderr)")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    embed = commands.add_parser(
        "embed",
        help="embed a file of texts into .npy or .parquet",
        description="Embed a file of texts, in resumable chunks. Inputs: .txt (one text "
        "per line), .csv/.tsv (header row), .jsonl, .parquet. Outputs: .npy (float32 "
        "array, or uint8/int8 with --output-dtype) or .parquet (one column per feature).",
    )
    embed.add_argument("input", metavar="INPUT", help="file of texts")
    embed.add_argument("-o", "--output", required=True, metavar="OUTPUT", help=".npy or .parquet")
    embed.add_argument(
        "--column", help="column of texts in a table (default: 'text', or the only column)"
    )
    _add_model_options(embed)
    embed.add_argument(
        "--pooling", default="mean", help="pooling name, or names joined by commas (default: mean)"
    )
    embed.add_argument(
        "--batch-size", type=_positive_int, default=32, help="texts per forward pass (default: 32)"
    )
    embed.add_argument(
        "--max-length",
        type=_positive_int,
        default=None,
        help="tokens per text (default: the model's limit)",
    )
    _add_long_text_options(embed)
    embed.add_argument("--normalize", action="store_true", help="scale each vector to unit length")
    _add_output_options(embed)
    embed.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=1000,
        help=(
            "texts per saved chunk; an interrupted run resumes from the last chunk (default: 1000)"
        ),
    )
    embed.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    embed.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_cluster_options(embed)
    _add_verbose_option(embed)
    embed.set_defaults(run=run_embed)

    demo = commands.add_parser(
        "demo",
        help="run the README's demo (grid search over pooling, save, reload, predict)",
        description="Run the README's main job. Arguments after 'demo' go to the demo.",
        add_help=False,
    )
    demo.set_defaults(run=run_demo, demo_args=[])

    info = commands.add_parser(
        "info",
        help="describe a model: device, dtype, dimensions, speed",
        description=(
            "Load a model and print what AlbertVectorizer sees, with a quick speed estimate."
        ),
    )
    _add_model_options(info)
    info.add_argument("--pooling", default="mean", help="pooling name(s), for the feature count")
    info.add_argument(
        "--batch-size", type=_positive_int, default=32, help="for the speed estimate (default: 32)"
    )
    info.add_argument(
        "--speed-texts",
        type=_non_negative_int,
        default=64,
        help="texts for the speed estimate; 0 skips it (default: 64)",
    )
    _add_long_text_options(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    _add_verbose_option(info)
    info.set_defaults(run=run_info)
    _add_serve_command(commands)
    return parser


def _add_serve_command(commands):
    serve = commands.add_parser(
        "serve",
        help="serve a fitted model over HTTP (POST /predict, /predict_proba, /transform)",
        description="Serve a fitted estimator or pipeline over HTTP with LitServe, which "
        'batches concurrent requests: POST {"texts": [...]} to /predict, /predict_proba '
        "or /transform; GET /health answers 200 once the model is loaded and warmed up; "
        "/docs is the OpenAPI page. SIGTERM or Ctrl-C stops accepting, answers the "
        "requests in flight, then exits 0 (needs sklearn-albert[serve]).",
    )
    serve.add_argument(
        "model",
        metavar="MODEL",
        help="joblib or pickle file (runs code: only trusted files), .skops file, or a "
        "folder written by save()",
    )
    serve.add_argument(
        "--trusted",
        action="append",
        default=[],
        metavar="TYPE",
        help="for a .skops file: trust this type too (repeatable); sklearn_albert's own "
        "types are trusted already",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        choices=("127.0.0.1", "0.0.0.0", "::"),
        help="interface to listen on (default: 127.0.0.1, this machine only)",
    )
    serve.add_argument("--port", type=_port, default=8000, help="1024 to 65535 (default: 8000)")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="inference processes per endpoint, each with its own model (default: 1)",
    )
    serve.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=64,
        help="requests batched together; their texts go through the model at once (default: 64)",
    )
    serve.add_argument(
        "--batch-timeout",
        type=_non_negative_float,
        default=0.01,
        help="seconds a worker waits, after a batch's first request, for it to fill "
        "(default: 0.01)",
    )
    serve.add_argument(
        "--max-texts-per-request",
        type=_positive_int,
        default=256,
        help="more answers 413 (default: 256)",
    )
    serve.add_argument(
        "--max-text-chars",
        type=_positive_int,
        default=20000,
        help="characters per text; more answers 413 (default: 20000)",
    )
    serve.add_argument(
        "--max-queue",
        type=_positive_int,
        default=256,
        help="requests in flight beyond which the server answers 503 with Retry-After; "
        "about requests/s answered x --request-timeout (default: 256)",
    )
    serve.add_argument(
        "--request-timeout",
        type=_non_negative_float,
        default=30.0,
        help="seconds a request may wait for a worker before it answers 504 (default: 30)",
    )
    serve.add_argument(
        "--methods",
        type=_method_list,
        default=None,
        metavar="NAMES",
        help="comma-separated endpoints to serve, e.g. predict,transform; each holds its "
        "own copy of the model per worker (default: every one the model has)",
    )
    serve.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)"
    )
    serve.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="requests must send 'Authorization: Bearer KEY' (default: the environment "
        "variable SKLEARN_ALBERT_API_KEY, else no key); /health needs none",
    )
    serve.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="do not serve GET /metrics (request counts and latency in Prometheus' text "
        "format; like /health it needs no key)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="server and workers' log level; debug logs one line per batch (default: info)",
    )
    _add_verbose_option(serve)
    serve.set_defaults(run=run_serve)


def _add_verbose_option(parser):
    # SUPPRESS keeps a -v given before the command from being reset by this default.
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log what happens (stderr)",
    )


def _add_long_text_options(parser):
    from ._long_texts import CHUNK_AGGREGATIONS

    parser.add_argument(
        "--long-text",
        choices=("truncate", "chunk"),
        default="truncate",
        help="texts longer than the model's limit: truncate keeps their first tokens (and "
        "warns how many were cut); chunk encodes them whole, as overlapping windows merged "
        "into one vector (default: truncate)",
    )
    parser.add_argument(
        "--stride",
        type=_non_negative_int,
        default=None,
        help="with --long-text chunk: tokens shared by consecutive windows (default: 32)",
    )
    parser.add_argument(
        "--chunk-aggregation",
        choices=CHUNK_AGGREGATIONS,
        default=None,
        help="with --long-text chunk: how the windows' vectors merge: their mean, "
        "element-wise max, or mean weighted by window length (default: mean)",
    )


def _long_text_params(args):
    """The vectorizer parameters for long texts; --stride and co. only with chunk."""
    chunk_options = {"stride": args.stride, "chunk_aggregation": args.chunk_aggregation}
    given = {name: value for name, value in chunk_options.items() if value is not None}
    if args.long_text != "chunk" and given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{flags} applies only with --long-text chunk")
    return {"long_text": args.long_text, **given}


def _add_output_options(parser):
    parser.add_argument(
        "--prompt",
        default=None,
        help="instruction put before every text, e.g. 'query: ' or 'passage: ' for e5 models",
    )
    parser.add_argument(
        "--truncate-dim",
        type=_positive_int,
        default=None,
        metavar="N",
        help="keep the first N dimensions (Matryoshka models); renormalised with --normalize",
    )
    parser.add_argument(
        "--output-dtype",
        choices=CLI_OUTPUT_DTYPES,
        default="float32",
        help="float32, or sign bits packed eight to a byte: ubinary as uint8, binary as int8 "
        "(int8 and uint8 levels are fitted on texts: use AlbertVectorizer in Python) "
        "(default: float32)",
    )


def _output_params(args):
    return {
        "prompt": args.prompt,
        "truncate_dim": args.truncate_dim,
        "output_dtype": args.output_dtype,
    }


def _add_cluster_options(parser):
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on this Dask scheduler (tcp://host:8786): INPUT may be a glob of .parquet, "
        ".csv, .tsv or .jsonl files, OUTPUT is a folder of Parquet parts, one per input "
        "partition, and a rerun resumes (needs sklearn-albert[dask])",
    )
    parser.add_argument(
        "--id-column",
        help="with --scheduler: column written beside each embedding (default: 'id', the "
        "row's position)",
    )


def _add_model_options(parser):
    parser.add_argument(
        "--model",
        default="albert-base-v2",
        help="hub id or local folder of the checkpoint (default: albert-base-v2)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)"
    )
    parser.add_argument(
        "--dtype", default="auto", choices=DTYPES, help="compute precision (default: auto)"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never use the network (local folder or Hugging Face cache only)",
    )


# ---------------------------------------------------------------------- commands


def run_embed(args):
    from pathlib import Path

    if args.scheduler:
        return run_embed_on_cluster(args)

    from ._files import check_output_path, embed_file, read_texts
    from ._validation import validate_texts

    output = check_output_path(args.output, overwrite=args.overwrite)
    texts = read_texts(args.input, column=args.column)
    texts = validate_texts(texts, parameter=_input_name(args))
    vectorizer = _vectorizer(
        args,
        batch_size=args.batch_size,
        max_length=args.max_length,
        normalize=args.normalize,
        **_output_params(args),
    )
    started = time.perf_counter()
    summary = embed_file(
        vectorizer, texts, output, chunk_size=args.chunk_size, progress=not args.quiet
    )
    seconds = time.perf_counter() - started
    reused = f", {summary['reused_chunks']} chunk(s) reused" if summary["reused_chunks"] else ""
    print(
        f"Wrote {Path(output)} {summary['shape'][0]} x {summary['shape'][1]} "
        f"{vectorizer.output_dtype} "
        f"({vectorizer.model_name_or_path}, pooling={args.pooling}, device "
        f"{vectorizer.device_}, {vectorizer.dtype_}) in {seconds:.1f} s{reused}.",
        file=sys.stderr,
    )
    return 0


def run_embed_on_cluster(args):
    """``embed --scheduler``: one Parquet part per input partition, on the cluster's workers."""
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(
            "--scheduler needs dask and distributed: pip install 'sklearn-albert[dask]'."
        ) from None
    from .distributed import embed_to_parquet

    vectorizer = _vectorizer(
        args,
        batch_size=args.batch_size,
        max_length=args.max_length,
        normalize=args.normalize,
        **_output_params(args),
    )
    with Client(args.scheduler) as client:
        n_workers = len(client.nthreads())
        summary = embed_to_parquet(
            args.input,
            args.output,
            vectorizer,
            text_column=args.column or "text",
            id_column=args.id_column,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    skipped = f", {summary.skipped} part(s) already done" if summary.skipped else ""
    print(
        f"Wrote {summary.files} part(s), {summary.rows} texts, to {summary.output_dir} "
        f"({vectorizer.model_name_or_path}, pooling={args.pooling}) in "
        f"{summary.seconds:.1f} s on {n_workers} worker(s){skipped}.",
        file=sys.stderr,
    )
    return 0


def run_demo(args):
    from . import _demo  # lazily: the demo pulls in its own dependencies

    status = _demo.main(args.demo_args)
    return status if isinstance(status, int) else 0


def run_info(args):
    vectorizer = _vectorizer(args, batch_size=args.batch_size)
    report = describe_model(vectorizer)
    if args.speed_texts:
        report["speed"] = estimate_speed(vectorizer, args.speed_texts)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_format_report(report))
    return 0


def run_serve(args):
    import os

    try:
        from . import serving
    except ImportError as error:
        raise ImportError(f"{error} (serve needs sklearn-albert[serve])") from None

    serving.serve(
        args.model,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        trusted=args.trusted,
        device=args.device,
        workers=args.workers,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        max_texts_per_request=args.max_texts_per_request,
        max_text_chars=args.max_text_chars,
        max_queue=args.max_queue,
        request_timeout=args.request_timeout,
        methods=args.methods,
        api_key=args.api_key or os.environ.get(serving.API_KEY_ENV) or None,
        metrics=args.metrics,
    )
    return 0


# ---------------------------------------------------------------------- info


def describe_model(vectorizer):
    """What a fitted vectorizer runs: model, device, dtype, dimensions."""
    report = vectorizer.describe()
    report["pooling"] = vectorizer.pooling
    return report


SPEED_SENTENCE = (
    "Sentence {i} of the speed estimate: a short review says the film was clever, warm "
    "and well acted, though its ending felt rushed."
)


def estimate_speed(vectorizer, n_texts):
    """Texts per second on short sentences, after a warm-up, without the cache."""
    from sklearn.base import clone

    timed = clone(vectorizer).set_params(embedding_cache=None, verbose=False)
    timed.fit(["warm up"])
    texts = [SPEED_SENTENCE.format(i=i) for i in range(n_texts)]
    with warnings.catch_warnings():
        # A small model may truncate the sentence: irrelevant to a speed estimate.
        warnings.simplefilter("ignore", UserWarning)
        timed.transform([SPEED_SENTENCE.format(i=-i) for i in range(1, min(n_texts, 8) + 1)])
        started = time.perf_counter()
        timed.transform(texts)
        seconds = time.perf_counter() - started
    tokens = min(int(timed.count_tokens(texts[:1])[0]), timed.max_length_)
    return {
        "texts_per_second": round(n_texts / seconds, 1),
        "texts": n_texts,
        "tokens_per_text": tokens,
        "batch_size": timed.batch_size,
        "seconds": round(seconds, 3),
    }


def _format_report(report):
    n_parameters = report["parameters"]
    size = f"{n_parameters / 1e6:.1f} M" if n_parameters >= 1e6 else f"{n_parameters:,}"
    lines = [
        f"model        {report['model']}",
        f"architecture {report['architecture']} ({report['model_type']}), "
        f"{size} parameters, tokenizer {report['tokenizer']}",
        f"device       {report['device']}",
        f"dtype        {report['dtype']}",
        f"dimensions   hidden size {report['hidden_size']}, {report['hidden_states']} hidden "
        f"states (embeddings + {report['hidden_states'] - 1} layers), max length "
        f"{report['max_length']} tokens, pooler {'yes' if report['has_pooler'] else 'no'}",
        f"features     {report['n_features_out']} (pooling={report['pooling']}"
        + "".join(
            f", {name}={report[name]!r}"
            for name, default in (
                ("prompt", None),
                ("truncate_dim", None),
                ("output_dtype", "float32"),
            )
            if report.get(name, default) != default
        )
        + ")",
        f"fingerprint  {report['fingerprint']}"
        + (" (weights adapted by fit)" if report.get("adapted") else ""),
    ]
    speed = report.get("speed")
    if speed:
        lines.append(
            f"speed        about {speed['texts_per_second']:g} texts/s ({speed['texts']} texts "
            f"of {speed['tokens_per_text']} tokens, batch size {speed['batch_size']}, "
            f"{speed['seconds']:.2f} s)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- helpers


def _vectorizer(args, **params):
    from . import AlbertVectorizer

    pooling = [name.strip() for name in args.pooling.split(",") if name.strip()]
    vectorizer = AlbertVectorizer(
        args.model,
        pooling=pooling[0] if len(pooling) == 1 else pooling,
        device=args.device,
        dtype=args.dtype,
        local_files_only=args.offline,
        embedding_cache=None,
        **_long_text_params(args),
        **params,
    )
    return vectorizer.fit([])


def _split_demo_arguments(argv):
    """Everything after ``demo`` belongs to the demo, options included (``demo --help``)."""
    for position, token in enumerate(argv):
        if not token.startswith("-"):
            if token == "demo":
                return argv[: position + 1], argv[position + 1 :]
            break
    return argv, []


def _input_name(args):
    from pathlib import Path

    name = Path(args.input).name
    return f"{name} column {args.column!r}" if args.column else name


def _resume_hint(args):
    if getattr(args, "command", None) != "embed":
        return None
    if getattr(args, "scheduler", None):
        return "finished parts are kept; run the same command again to resume"
    from ._files import resume_hint

    try:
        return resume_hint(args.output)
    except OSError:
        return None


def _describe(error):
    """The error's message on one line; its type when the message alone is unclear."""
    message = " ".join(str(error).split())
    if isinstance(error, (ValueError, TypeError, OSError, ImportError, LookupError)) and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _print_error(message, hint=None):
    line = f"{PROG}: error: {message}"
    if hint:
        line += f" ({hint})"
    print(" ".join(line.split()), file=sys.stderr)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a positive integer")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number >= 0")
    return value


def _method_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = ("predict", "predict_proba", "transform")
    if not names or any(name not in known for name in names):
        raise argparse.ArgumentTypeError(
            f"got {text!r}, expected comma-separated names among {', '.join(known)}"
        )
    return names


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a port from 1024 to 65535")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected an integer >= 0")
    return value


@contextmanager
def _logging_to_stderr(verbose):
    """The library's log records on stderr: warnings always, everything with -v."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


@contextmanager
def _warnings_as_lines():
    """Python warnings (truncation, device fallback) as one line each, without a path."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        for api, flag in API_ADVICE_AS_FLAGS.items():
            text = text.replace(api, flag)
        print(f"{PROG}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
