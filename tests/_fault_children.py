"""Child processes for ``test_cache_faults.py``: a list of steps, run in a fresh interpreter.

``python _fault_children.py run SPEC.json`` runs the steps of one spec; ``python
_fault_children.py serve`` reads one spec per line on stdin and answers ``done`` on stdout
after each (a reader process that the tests reuse, so that reading a folder from another
process costs no interpreter start). A spec is ``{"model": path, "out": folder, "steps":
[...]}``; each transform step saves its rows to ``out/NAME.npy`` and its outcome (error,
seconds, warnings) to ``out/results.json`` once every step ran (a step may limit the
size of the files the child writes). The library is imported only by the first transform, so a
child that only holds a lock starts in milliseconds.

Steps (``op`` and its keys):

* ``load`` (dtype, cache, optional batch_size): build the vectorizer, loading the model
  (before any limit);
* ``transform`` (dtype, cache, optional batch_size, texts, save): transform with it;
* ``cache_info`` (cache, save): ``sklearn_albert.cache_info``;
* ``fsize`` (limit): set RLIMIT_FSIZE's soft limit; None restores it to the hard limit;
* ``cache_limit`` (max_bytes): ``sklearn_albert.set_cache_limit``;
* ``clear``: ``sklearn_albert.clear_cache(models=False)``;
* ``flock`` (path): hold an exclusive ``flock`` on a file until the child exits;
* ``touch`` (path), ``wait_for`` (path, timeout): a barrier through files;
* ``probe_read_only`` (folder): try to create a file there; saves whether it was refused.
"""

import json
import os
import resource
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

#: Every pooling over every hidden state, concatenated: a transform reads every column the
#: cache keeps. ``batch_size=1`` makes each text's encoding independent of its batch (and
#: of the thread count), so that rows compare exactly whichever texts were encoded together.
SETTINGS = {
    "pooling": ["cls", "mean", "max", "mean_sqrt_len", "pooler"],
    "layers": (0, 1, 2, 3),
    "layer_aggregation": "concat",
    "batch_size": 1,
}


def make_vectorizer(model, dtype, cache, **params):
    """A fitted vectorizer over ``model`` with the suite's settings (``params`` override)."""
    from sklearn_albert import AlbertVectorizer

    params = {**SETTINGS, **params}
    return AlbertVectorizer(str(model), dtype=dtype, embedding_cache=cache, **params).fit(
        ["warm up"]
    )


def attempt_transform(vectorizer, texts):
    """``(rows or None, error or None, seconds, warnings)``: a raising transform is an outcome."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            rows, error = vectorizer.transform(texts), None
        except Exception as exc:  # a failed call is what the suite counts
            rows, error = None, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
    return rows, error, seconds, [f"{w.category.__name__}: {w.message}" for w in caught]


def drop_file_capabilities():
    """For ``preexec_fn``: root without the capabilities that let it ignore file modes.

    Drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from the bounding set, so
    that the program exec'd next runs as root but is refused writes to a read-only folder,
    as any user would be.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


class _Runner:
    def __init__(self, model):
        self.model = model
        self.vectorizers = {}
        self.held = []

    def vectorizer(self, step):
        params = {"batch_size": step["batch_size"]} if "batch_size" in step else {}
        key = (step["dtype"], step["cache"], tuple(params.items()))
        if key not in self.vectorizers:
            self.vectorizers[key] = make_vectorizer(
                self.model, step["dtype"], step["cache"], **params
            )
        return self.vectorizers[key]

    def run(self, spec):
        out = Path(spec["out"])
        out.mkdir(parents=True, exist_ok=True)
        results, self.rows = {}, {}
        for step in spec["steps"]:
            results.update(self.step(step, out) or {})
        # Written at the end, not after each step: a step may have limited the file size.
        import numpy as np

        for name, rows in self.rows.items():
            np.save(out / f"{name}.npy", rows)
        (out / "results.json").write_text(json.dumps(results))

    def step(self, step, out):
        op = step["op"]
        if op == "load":
            self.vectorizer(step)
        elif op == "transform":
            vectorizer = self.vectorizer(step)
            rows, error, seconds, caught = attempt_transform(vectorizer, step["texts"])
            if rows is not None:
                self.rows[step["save"]] = rows
            return {step["save"]: {"error": error, "seconds": seconds, "warnings": caught}}
        elif op == "fsize":
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            limit = hard if step["limit"] is None else step["limit"]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        elif op == "cache_limit":
            from sklearn_albert import set_cache_limit

            set_cache_limit(step["max_bytes"])
        elif op == "cache_info":
            from sklearn_albert import cache_info

            return {step["save"]: {"info": cache_info(step["cache"])}}
        elif op == "clear":
            from sklearn_albert import clear_cache

            clear_cache(models=False)
        elif op == "flock":
            import fcntl

            fd = os.open(step["path"], os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.held.append(fd)
        elif op == "touch":
            Path(step["path"]).touch()
        elif op == "wait_for":
            deadline = time.monotonic() + step.get("timeout", 60)
            while not Path(step["path"]).exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        elif op == "probe_read_only":
            probe = Path(step["folder"]) / "probe-write"
            try:
                probe.write_text("x")
            except PermissionError:
                return {"read_only": {"refused": True}}
            probe.unlink()
            return {"read_only": {"refused": False}}
        else:
            raise ValueError(f"Unknown step {op!r}")


def main(argv):
    # A write past RLIMIT_FSIZE must fail with EFBIG (or be short), not kill the child.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    runner = None
    if argv[1] == "run":
        spec = json.loads(Path(argv[2]).read_text())
        _Runner(spec["model"]).run(spec)
        return
    for line in sys.stdin:
        spec = json.loads(line)
        runner = runner or _Runner(spec["model"])
        try:
            runner.run(spec)
        except Exception:  # the reader must keep serving
            traceback.print_exc()
        print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv)
