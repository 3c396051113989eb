"""Fault injection for the embedding cache, through the public API only.

The promise (docs/caching.rst): each distinct text is encoded once and reused, and the cache
never returns a wrong vector; an I/O error or a damaged file costs an encode, never a wrong
row or a failed transform. Each test injects one fault (a write refused by RLIMIT_FSIZE, a
damaged file, a writer killed mid-write, a planted symlink, a read-only folder, concurrent
writers, a held lock, a crafted ``meta.json``, a deleted folder) and checks three things:

* every row returned equals the uncached result. ``batch_size=1`` makes each text's
  encoding independent of its batch, so rows compare exactly: to the row of a clean cached
  transform, or to the row of ``embedding_cache=None`` (the two differ, within the
  documented bound, when the cache keeps float16);
* no file outside the cache folder changed, and none appeared;
* no call failed (a transform that raises is a failed call), and the call after the fault
  cleared (or, for a damaged file that stays damaged, the next call) is right too.

Each case adds a row to a table printed when the module ends (``pytest -s``) and written
to ``$SKLEARN_ALBERT_FAULT_TABLE`` when set. The assertions, not the table, decide.
Child processes (``_fault_children.py``) run with ``OMP_NUM_THREADS=1``.
"""

import hashlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from _fault_children import attempt_transform, drop_file_capabilities, make_vectorizer
from _tiny_model import generated_sentences

import sklearn_albert
from sklearn_albert import cache_info

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fault injection is Linux-only")

CHILD = Path(__file__).with_name("_fault_children.py")
CACHE_ROOT = "sklearn_albert_cache"

_SENTENCES = list(dict.fromkeys(generated_sentences(800, seed=19)))
TEXTS = _SENTENCES[:40]
EXTRA = _SENTENCES[40:60]
BIG = _SENTENCES[60:260]  # float32 only
#: float32 storage, and float16 storage (what a reduced precision keeps; "bfloat16" rather
#: than "auto" so that machines without bfloat16 instructions test it too).
DTYPES = ("float32", "bfloat16")
HIDDEN_SIZE = 32  # of the tiny ALBERT; one stored vector is HIDDEN_SIZE values
N_LAYERS = 4  # hidden states: the embedding output and three layers

TABLE = []


# ---------------------------------------------------------------------- outcomes and cases


class Outcome(NamedTuple):
    rows: object  # ndarray, or None when the call raised
    error: object  # "Type: message", or None
    seconds: float
    warnings: list


def attempt(vectorizer, texts):
    """Transform in this process; a raising transform is an outcome, not an error."""
    return Outcome(*attempt_transform(vectorizer, texts))


@dataclass(repr=False)  # thousands of rows: a failure's traceback would print them all
class Reference:
    """Rows of every suite text: a clean cached transform's, and ``embedding_cache=None``'s."""

    cached: dict
    uncached: dict
    first: np.ndarray  # a clean folder's first transform of TEXTS
    again: np.ndarray  # then its cached transform of TEXTS
    namespace_dir: Path  # a clean namespace folder holding TEXTS, EXTRA and BIG
    meta_size: int  # sizes of meta.json and data.bin after writing TEXTS alone
    data_size: int
    index_size: int


def wrong_rows(rows, texts, reference, tolerance=None):
    """Rows that equal neither the clean cached row nor the uncached row, bit for bit.

    With ``tolerance`` (rtol, atol), rows within it of either are right.
    """
    if rows.shape != (len(texts), reference.first.shape[1]):
        return len(texts)
    wrong = 0
    for row, text in zip(rows, texts):
        expected = (reference.cached[text], reference.uncached[text])
        if tolerance is None:
            right = row.tobytes() in (expected[0].tobytes(), expected[1].tobytes())
        else:
            rtol, atol = tolerance
            right = any(np.allclose(row, e, rtol=rtol, atol=atol) for e in expected)
        wrong += not right
    return wrong


def snapshot(root, skip):
    """``{relative path: sha256, "dir" or "link:target"}`` of ``root`` without ``skip``."""
    state = {}
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        for name in list(dirnames) + filenames:
            path = here / name
            if path == skip:
                dirnames[:] = [d for d in dirnames if d != name]
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@dataclass
class Case:
    """One fault: the calls made under it and after it, and the tree around the cache."""

    fault: str
    operation: str
    root: Path
    reference: Reference = field(repr=False)
    before: dict = field(default_factory=dict, repr=False)
    rows: int = 0
    wrong: int = 0
    failed_during: int = 0
    failed_after: int = 0
    notes: list = field(default_factory=list)
    tolerance: tuple = None  # (rtol, atol) where rows cannot compare exactly

    @property
    def cache(self):
        return self.root / "cache"

    def start(self):
        self.before = snapshot(self.root, self.cache)
        return self

    def call(self, label, outcome, texts, *, after=False):
        """Count one call's rows; ``after``: the call after the fault cleared."""
        if outcome.error is not None:
            if after:
                self.failed_after += 1
            else:
                self.failed_during += 1
            self.notes.append(f"{label}: {outcome.error[:120]}")
        else:
            wrong = wrong_rows(outcome.rows, texts, self.reference, self.tolerance)
            self.rows += len(texts)
            self.wrong += wrong
            if wrong:
                self.notes.append(f"{label}: {wrong}/{len(texts)} rows wrong")
        kinds = [w.split(":")[0] for w in outcome.warnings]
        if kinds:
            counts = ", ".join(f"{kind} x{kinds.count(kind)}" for kind in sorted(set(kinds)))
            self.notes.append(f"{label} warned {counts}")
        return outcome

    def finish(self):
        """Record the table row, then assert: right rows, no failed call, nothing outside."""
        after = snapshot(self.root, self.cache)
        changed = sorted(
            path
            for path in set(self.before) | set(after)
            if self.before.get(path) != after.get(path)
        )
        TABLE.append(
            {
                "fault": self.fault,
                "operation": self.operation,
                "rows compared": self.rows,
                "wrong rows": self.wrong,
                "failed calls (during fault)": self.failed_during,
                "failed calls after fault cleared": self.failed_after,
                "files changed outside cache": ", ".join(changed) or "0",
                "notes": "; ".join(self.notes),
            }
        )
        details = "; ".join(self.notes)
        assert self.wrong == 0, f"{self.fault}: {self.wrong} wrong rows ({details})"
        assert self.failed_during == 0, f"{self.fault}: a transform failed ({details})"
        assert self.failed_after == 0, f"{self.fault}: a transform after the fault failed"
        assert not changed, f"{self.fault}: files outside the cache folder changed: {changed}"


def new_case(tmp_path, reference, fault, operation):
    root = tmp_path / "case"
    for name in ("cache", "outside", "tmp"):
        (root / name).mkdir(parents=True)
    (root / "outside" / "bystander.txt").write_text("a file beside the cache\n")
    return Case(fault, operation, root, reference)


@pytest.fixture(scope="module", autouse=True)
def fault_table():
    """Print the table of cases at the end of the module, and write it where asked."""
    yield
    if not TABLE:
        return
    columns = list(TABLE[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in TABLE:
        cells = [str(row[c]).replace("|", "/").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print("\n\nEmbedding cache fault injection\n\n" + text)
    if os.environ.get("SKLEARN_ALBERT_FAULT_TABLE"):
        Path(os.environ["SKLEARN_ALBERT_FAULT_TABLE"]).write_text(text)


# ---------------------------------------------------------------------- child processes


def child_env(**extra):
    env = dict(os.environ)
    repo = str(Path(sklearn_albert.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(extra)
    return env


def load_outcomes(out):
    path = Path(out) / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    outcomes = {}
    for name, result in results.items():
        if "error" not in result:
            outcomes[name] = result
            continue
        rows = np.load(Path(out) / f"{name}.npy") if result["error"] is None else None
        outcomes[name] = Outcome(rows, result["error"], result["seconds"], result["warnings"])
    return outcomes


def start_child(model, work, steps, *, env=None, preexec_fn=None):
    """Start a child running ``steps``; its results go to ``work/out``."""
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "spec.json"
    spec.write_text(json.dumps({"model": str(model), "out": str(work / "out"), "steps": steps}))
    return subprocess.Popen(
        [sys.executable, str(CHILD), "run", str(spec)],
        env=env or child_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(work / "stderr.txt", "w"),
        preexec_fn=preexec_fn,
    )


def finish_child(process, work, timeout=180):
    process.wait(timeout=timeout)
    stderr = (work / "stderr.txt").read_text()
    assert process.returncode == 0, f"child failed ({process.returncode}):\n{stderr[-3000:]}"
    return load_outcomes(work / "out")


def run_child(model, work, steps, **kwargs):
    return finish_child(start_child(model, work, steps, **kwargs), work)


class Reader:
    """A long-lived child process that transforms from folders it never opened before.

    What it reads is what a fresh process reads: its cache view of a folder starts when
    it first sees that folder, and no view is shared with this process.
    """

    def __init__(self, model, work):
        self.model, self.work, self.calls = model, work, 0
        work.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), "serve"],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(work / "stderr.txt", "w"),
            text=True,
        )

    def transform(self, folder, texts, dtype, timeout=120):
        self.calls += 1
        out = self.work / f"call-{self.calls}"
        step = {"op": "transform", "dtype": dtype, "cache": str(folder), "texts": texts}
        spec = {"model": str(self.model), "out": str(out), "steps": [{**step, "save": "r"}]}
        self.process.stdin.write(json.dumps(spec) + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        line = ""
        while line.strip() != "done":  # anything else the library printed is skipped
            left = deadline - time.monotonic()
            ready = left > 0 and select.select([self.process.stdout], [], [], left)[0]
            assert ready, f"the reader process did not answer within {timeout} s"
            line = self.process.stdout.readline()
            assert line, (self.work / "stderr.txt").read_text()[-3000:]
        return load_outcomes(out)["r"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def reader(tiny_albert_path, tmp_path_factory):
    process = Reader(tiny_albert_path, tmp_path_factory.mktemp("reader"))
    yield process
    process.close()


# ---------------------------------------------------------------------- references


@pytest.fixture(scope="module")
def references(tiny_albert_path, tmp_path_factory):
    """Per dtype, the rows of every suite text, cached and uncached, and a clean folder."""
    references = {}
    for dtype in DTYPES:
        texts = TEXTS + EXTRA + (BIG if dtype == "float32" else [])
        folder = tmp_path_factory.mktemp(f"reference-{dtype}")
        cached = make_vectorizer(tiny_albert_path, dtype, str(folder))
        first = cached.transform(TEXTS)
        again = cached.transform(TEXTS)
        namespace_dir = only(folder, "meta.json").parent
        sizes = {name: (namespace_dir / name).stat().st_size for name in ("meta.json", "data.bin")}
        index_size = (namespace_dir / "index.bin").stat().st_size
        rest = cached.transform(texts)
        uncached = make_vectorizer(tiny_albert_path, dtype, None).transform(texts)
        references[dtype] = Reference(
            cached=dict(zip(texts, rest)),
            uncached=dict(zip(texts, uncached)),
            first=first,
            again=again,
            namespace_dir=namespace_dir,
            meta_size=sizes["meta.json"],
            data_size=sizes["data.bin"],
            index_size=index_size,
        )
    return references


def only(folder, name):
    """The one file called ``name`` under ``folder`` (found by glob, not by hash)."""
    found = sorted(Path(folder).glob(f"**/{name}"))
    assert len(found) == 1, f"expected one {name} under {folder}, found {found}"
    return found[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_clean_cached_rows_are_bit_identical_to_the_first_transform(references, dtype):
    """What makes exact comparison possible: the cache returns what it was given."""
    reference = references[dtype]
    np.testing.assert_array_equal(reference.again, reference.first)
    np.testing.assert_array_equal(np.stack([reference.cached[t] for t in TEXTS]), reference.first)
    uncached = np.stack([reference.uncached[t] for t in TEXTS])
    if dtype == "float32":
        np.testing.assert_array_equal(reference.first, uncached)
    else:
        # float16 storage: within the documented relative 4.9e-4 per value (3e-8 absolute
        # below float16's normal range, times sqrt(n_tokens) <= 4 for mean_sqrt_len)
        assert not np.array_equal(reference.first, uncached)
        np.testing.assert_allclose(reference.first, uncached, rtol=4.9e-4 + 1e-6, atol=1.2e-7)


# ---------------------------------------------------------------------- short writes, full disk


FSIZE_FAULTS = ("meta.json", "first data column", "later data column")


def fsize_limit(reference, where, dtype):
    """A file-size limit that stops the folder cache's first write of TEXTS at ``where``."""
    if where == "meta.json":
        return reference.meta_size // 2
    if where == "first data column":
        first_column = len(TEXTS) * HIDDEN_SIZE * (4 if dtype == "float32" else 2)
        limit = (reference.meta_size + first_column) // 2
        assert reference.meta_size < limit < first_column
        return limit
    return reference.data_size // 2


@pytest.fixture(scope="module")
def fsize_runs(tiny_albert_path, references, tmp_path_factory):
    """One child writes a folder cache under each limit, then again once it is lifted."""
    base = tmp_path_factory.mktemp("fsize")
    steps, cases = [], {}
    for dtype in DTYPES:
        for where in FSIZE_FAULTS:
            name = f"{dtype}-{where.replace(' ', '-')}"
            case = new_case(base / name, references[dtype], f"RLIMIT_FSIZE at {where}", "")
            cases[dtype, where] = case.start()
            cache = str(case.cache)
            steps += [
                {"op": "load", "dtype": dtype, "cache": cache},
                {"op": "fsize", "limit": fsize_limit(references[dtype], where, dtype)},
                {"op": "transform", "dtype": dtype, "cache": cache, "texts": TEXTS},
                {"op": "fsize", "limit": None},
                {"op": "transform", "dtype": dtype, "cache": cache, "texts": TEXTS + EXTRA},
            ]
            steps[-3]["save"], steps[-1]["save"] = f"{name}-during", f"{name}-after"
    outcomes = run_child(tiny_albert_path, base / "child", steps)
    return cases, outcomes


@pytest.mark.parametrize("where", FSIZE_FAULTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_folder_cache_write_refused_by_file_size_limit(fsize_runs, reader, dtype, where):
    cases, outcomes = fsize_runs
    case = cases[dtype, where]
    name = f"{dtype}-{where.replace(' ', '-')}"
    case.operation = f"{dtype}: transform under the limit, again after, then another process"
    case.notes.append(f"limit {fsize_limit(case.reference, where, dtype)} B")
    case.call("under the limit", outcomes[f"{name}-during"], TEXTS)
    case.call("limit lifted", outcomes[f"{name}-after"], TEXTS + EXTRA, after=True)
    texts = EXTRA + TEXTS[::-1]
    case.call("fresh process", reader.transform(case.cache, texts, dtype), texts, after=True)
    case.finish()


@pytest.fixture(scope="module")
def spill_runs(tiny_albert_path, tmp_path_factory, references):
    """One child spills the memory cache to a TMPDIR whose files may not exceed 6000 bytes."""
    base = tmp_path_factory.mktemp("spill")
    case = new_case(base, references["float32"], "", "")
    before = snapshot(case.root, case.cache)
    steps = []
    for dtype in DTYPES:
        steps += [
            {"op": "clear"},
            # blocks of 2 (float32) or 4 (float16) texts, all but a few spilled
            {"op": "cache_limit", "max_bytes": 16384},
            {"op": "load", "dtype": dtype, "cache": "memory"},
            {"op": "fsize", "limit": 6000},
        ]
        for label, texts in (("during-1", TEXTS), ("during-2", TEXTS), ("after-1", TEXTS + EXTRA)):
            if label == "after-1":
                steps.append({"op": "fsize", "limit": None})
            step = {"op": "transform", "dtype": dtype, "cache": "memory", "texts": texts}
            steps.append({**step, "save": f"{dtype}-{label}"})
        steps.append({**step, "save": f"{dtype}-after-2"})
        steps.append({"op": "cache_info", "cache": "memory", "save": f"{dtype}-info"})
    env = child_env(TMPDIR=str(case.root / "tmp"))
    outcomes = run_child(tiny_albert_path, base / "child", steps, env=env)
    return case.root, before, outcomes


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_cache_spill_refused_by_file_size_limit(spill_runs, references, dtype):
    root, before, outcomes = spill_runs
    case = Case(
        "RLIMIT_FSIZE 6000 B on the spill file",
        f"{dtype}: set_cache_limit(16384), TMPDIR in the case folder, transform twice, "
        "lift the limit, transform twice",
        root,
        references[dtype],
        before,
    )
    case.call("under the limit", outcomes[f"{dtype}-during-1"], TEXTS)
    case.call("under the limit, again", outcomes[f"{dtype}-during-2"], TEXTS)
    case.call("limit lifted", outcomes[f"{dtype}-after-1"], TEXTS + EXTRA, after=True)
    case.call("limit lifted, again", outcomes[f"{dtype}-after-2"], TEXTS + EXTRA, after=True)
    info = outcomes[f"{dtype}-info"]["info"]
    case.notes.append(f"at the end {info['spilled_entries']} of {info['entries']} entries spilled")
    case.finish()


# ---------------------------------------------------------------------- damaged files


def stored_vector_offset(data, row, dtype):
    """Where ``data`` (data.bin's bytes) holds the last layer's mean vector of a feature row.

    With the suite's settings features are [cls, mean, max, mean_sqrt_len, pooler] x the
    four hidden states, so that vector is a slice of the row, stored as it is (float32) or
    as float16. Found by content, whatever the file's layout.
    """
    start = (1 * N_LAYERS + N_LAYERS - 1) * HIDDEN_SIZE
    vector = row[start : start + HIDDEN_SIZE].astype(
        np.float32 if dtype == "float32" else np.float16
    )
    offset = data.find(vector.tobytes())
    assert offset >= 0, "no stored vector found in data.bin: has the layout changed?"
    return offset, vector.itemsize


def flip_bit(path, offset, mask):
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ mask]))


def damage(namespace_dir, kind, reference, dtype):
    """Apply ``kind`` to the files of a namespace that holds TEXTS; returns a note."""
    data, index = namespace_dir / "data.bin", namespace_dir / "index.bin"
    record = index.stat().st_size // len(TEXTS)
    if kind == "data.bin truncated":
        size = data.stat().st_size
        os.truncate(data, size // 2)
        return f"data.bin {size} -> {size // 2} B"
    if kind == "data.bin bit flipped":
        offset, itemsize = stored_vector_offset(
            data.read_bytes(), reference.cached[TEXTS[7]], dtype
        )
        # the highest exponent bit of the vector's first value: a change no tolerance hides
        flip_bit(data, offset + itemsize - 1, 0x40)
        return f"bit 6 of byte {offset + itemsize - 1}"
    if kind == "index.bin truncated mid-record":
        size = index.stat().st_size
        # 5 bytes of the last record's key are left
        os.truncate(index, size - record + 5)
        return f"index.bin {size} -> {size - record + 5} B ({record} B records)"
    if kind == "index.bin bit flipped (key)":
        offset = (len(TEXTS) // 2) * record
    elif kind == "index.bin bit flipped (byte 16)":
        # byte 16 of a record: the low byte of n_tokens in format 1
        offset = (len(TEXTS) // 2) * record + 16
    elif kind == "index.bin emptied":
        os.truncate(index, 0)
        return "index.bin -> 0 B"
    else:
        raise ValueError(kind)
    flip_bit(index, offset, 0x40)
    return f"bit 6 of index.bin byte {offset}"


DAMAGE = (
    "data.bin truncated",
    "data.bin bit flipped",
    "index.bin truncated mid-record",
    "index.bin bit flipped (key)",
    "index.bin bit flipped (byte 16)",
    "index.bin emptied",
)


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_damaged_file_is_never_read_as_vectors(
    tiny_albert_path, references, reader, tmp_path, dtype, kind
):
    case = new_case(tmp_path, references[dtype], kind, "").start()
    case.operation = (
        f"{dtype}: this process fills TEXTS, damage, same view reads, another process "
        "reads (other order, new texts), this process again"
    )
    vectorizer = make_vectorizer(tiny_albert_path, dtype, str(case.cache))
    case.call("fill", attempt(vectorizer, TEXTS), TEXTS)
    case.notes.append(damage(only(case.cache, "meta.json").parent, kind, case.reference, dtype))
    case.call("same view", attempt(vectorizer, TEXTS), TEXTS)
    texts = EXTRA + TEXTS[::-1]
    case.call("fresh process", reader.transform(case.cache, texts, dtype), texts)
    case.call("next call", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()


# ---------------------------------------------------------------------- a writer killed


def test_writer_killed_mid_write(tiny_albert_path, references, reader, tmp_path):
    """The writer encodes batches of 64 texts, whose float32 vectors differ from those of
    ``batch_size=1`` in their last bits: rows compare within 1e-5 here (a torn or foreign
    vector is off by far more)."""
    case = new_case(tmp_path, references["float32"], "writer SIGKILLed mid-write", "").start()
    case.operation = (
        f"a child writes {len(BIG)} texts in batches of 64, killed as soon as data.bin "
        "grows; another process, then this one, transform them"
    )
    case.tolerance = (1e-5, 1e-5)
    work = tmp_path / "writer"
    cache = str(case.cache)
    step = {"dtype": "float32", "cache": cache, "batch_size": 64}
    steps = [
        {"op": "load", **step},
        {"op": "touch", "path": str(tmp_path / "loaded")},
        {"op": "transform", **step, "texts": BIG, "save": "big"},
    ]
    writer = start_child(tiny_albert_path, work, steps)
    deadline = time.monotonic() + 120
    while not (tmp_path / "loaded").exists() and writer.poll() is None:
        assert time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.005)
    # Busy-wait from here: the first write is milliseconds away and lasts microseconds.
    data = case.cache / CACHE_ROOT
    while writer.poll() is None and time.monotonic() < deadline:
        found = list(data.glob("*/data.bin")) if data.exists() else []
        if found and found[0].stat().st_size > 0:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    sizes = {path.name: path.stat().st_size for path in case.cache.glob(f"{CACHE_ROOT}/*/*")}
    case.notes.append(f"at the kill: {sizes}")
    texts = BIG[::-1]
    case.call("fresh process", reader.transform(case.cache, texts, "float32"), texts)
    vectorizer = make_vectorizer(tiny_albert_path, "float32", cache)
    case.call("this process", attempt(vectorizer, BIG), BIG, after=True)
    case.call("next call", attempt(vectorizer, BIG + EXTRA), BIG + EXTRA, after=True)
    case.finish()


# ---------------------------------------------------------------------- planted symlinks


SYMLINKS = (
    "data.bin",
    "index.bin",
    "lock",
    "meta.json",
    "writes.txt",
    "namespace folder",
    CACHE_ROOT,
)


@pytest.mark.parametrize("planted", SYMLINKS)
def test_planted_symlink_never_leads_outside(tiny_albert_path, references, tmp_path, planted):
    """A link planted before the first write: nothing behind it is written or created."""
    reference = references["float32"]
    case = new_case(tmp_path, reference, f"symlink: {planted}", "")
    victim = case.root / "outside" / "victim.bin"
    victim.write_bytes(b"known content of a file outside the cache\n" * 100)
    victim_dir = case.root / "outside" / "victim-folder"
    victim_dir.mkdir()
    (victim_dir / "keep.txt").write_text("known content\n")
    namespace = case.cache / CACHE_ROOT / reference.namespace_dir.name
    if planted == CACHE_ROOT:
        link, target = case.cache / CACHE_ROOT, victim_dir
    elif planted == "namespace folder":
        (case.cache / CACHE_ROOT).mkdir()
        link, target = namespace, victim_dir
    else:
        namespace.mkdir(parents=True)
        link, target = namespace / planted, victim
    link.symlink_to(target)
    case.start()
    case.operation = "float32: transform into a fresh folder twice, remove the link, transform"
    vectorizer = make_vectorizer(tiny_albert_path, "float32", str(case.cache))
    case.call("first", attempt(vectorizer, TEXTS), TEXTS)
    case.call("second", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA)
    link.unlink()
    case.call("link removed", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()


# ---------------------------------------------------------------------- a read-only folder


def make_read_only(folder, read_only=True):
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        if read_only:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        else:
            path.chmod(mode | stat.S_IWUSR)


def test_read_only_folder(tiny_albert_path, references, tmp_path):
    """A child that may not write the folder reads it, and encodes what it lacks.

    Root ignores file modes, and ``nobody`` cannot reach an interpreter installed under
    /root (mode 0700): run as root, the child drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    and CAP_FOWNER first, which binds it to file modes as any user. The child checks that a
    write into the folder is refused.
    """
    case = new_case(tmp_path, references["float32"], "read-only cache folder", "").start()
    case.operation = "child without write access: transform TEXTS (hits), TEXTS+EXTRA twice"
    cache = str(case.cache)
    make_vectorizer(tiny_albert_path, "float32", cache).transform(TEXTS)
    namespace_dir = only(case.cache, "meta.json").parent
    make_read_only(case.cache)
    steps = [{"op": "probe_read_only", "folder": str(namespace_dir)}]
    for label, texts in (("hits", TEXTS), ("mixed", TEXTS + EXTRA), ("again", TEXTS + EXTRA)):
        steps.append({"op": "transform", "dtype": "float32", "cache": cache, "texts": texts})
        steps[-1]["save"] = label
    try:
        preexec = drop_file_capabilities if os.geteuid() == 0 else None
        outcomes = run_child(tiny_albert_path, tmp_path / "child", steps, preexec_fn=preexec)
    finally:
        make_read_only(case.cache, read_only=False)
    assert outcomes["read_only"]["refused"], "the child could still write into the folder"
    case.call("pure hits", outcomes["hits"], TEXTS)
    case.call("hits and misses", outcomes["mixed"], TEXTS + EXTRA)
    case.call("again", outcomes["again"], TEXTS + EXTRA, after=True)
    case.finish()


# ---------------------------------------------------------------------- concurrent writers


def writes_and_entries(folder):
    info = cache_info(str(folder))
    return f"writes {info.get('writes')}, entries {info.get('entries')}"


def test_two_threads_one_folder(tiny_albert_path, references, tmp_path):
    case = new_case(tmp_path, references["float32"], "two threads, one folder", "").start()
    case.operation = "float32: two vectorizers in two threads transform overlapping texts at once"
    cache = str(case.cache)
    vectorizers = [make_vectorizer(tiny_albert_path, "float32", cache) for _ in range(2)]
    texts = [TEXTS + EXTRA, EXTRA[::-1] + TEXTS[::-1]]
    barrier, outcomes = threading.Barrier(2), [None, None]

    def work(i):
        barrier.wait()
        outcomes[i] = attempt(vectorizers[i], texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for i in range(2):
        case.call(f"thread {i}", outcomes[i], texts[i])
    case.notes.append(writes_and_entries(case.cache))
    case.call("next call", attempt(vectorizers[0], TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()


def test_two_processes_one_folder(tiny_albert_path, references, tmp_path):
    case = new_case(tmp_path, references["float32"], "two processes, one folder", "").start()
    case.operation = "float32: two children, released together, transform overlapping texts"
    cache = str(case.cache)
    go = tmp_path / "go"
    texts = [TEXTS + EXTRA, EXTRA[::-1] + TEXTS[::-1]]
    children = []
    for i in range(2):
        work = tmp_path / f"child-{i}"
        steps = [
            {"op": "load", "dtype": "float32", "cache": cache},
            {"op": "touch", "path": str(tmp_path / f"ready-{i}")},
            {"op": "wait_for", "path": str(go), "timeout": 120},
            {"op": "transform", "dtype": "float32", "cache": cache, "texts": texts[i], "save": "r"},
        ]
        children.append((start_child(tiny_albert_path, work, steps), work))
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.01)
    go.touch()
    for i, (child, work) in enumerate(children):
        case.call(f"process {i}", finish_child(child, work)["r"], texts[i])
    case.notes.append(writes_and_entries(case.cache))
    vectorizer = make_vectorizer(tiny_albert_path, "float32", cache)
    case.call("next call", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()


def test_cache_hit_while_another_process_holds_the_lock(
    tiny_albert_path, references, reader, tmp_path
):
    """docs/caching.rst: readers never wait. Only a generous bound is asserted."""
    case = new_case(tmp_path, references["float32"], "namespace lock held by a child", "").start()
    case.operation = "float32: pure hits in this process and in another, lock held; then after"
    cache = str(case.cache)
    vectorizer = make_vectorizer(tiny_albert_path, "float32", cache)
    case.call("fill", attempt(vectorizer, TEXTS), TEXTS)
    work = tmp_path / "holder"
    steps = [
        {"op": "flock", "path": str(only(case.cache, "lock"))},
        {"op": "touch", "path": str(tmp_path / "held")},
        {"op": "wait_for", "path": str(tmp_path / "release"), "timeout": 10},
    ]
    holder = start_child(tiny_albert_path, work, steps)
    deadline = time.monotonic() + 60
    while not (tmp_path / "held").exists():
        assert time.monotonic() < deadline and holder.poll() is None, "the holder did not lock"
        time.sleep(0.005)
    try:
        same = case.call("hit, this process", attempt(vectorizer, TEXTS), TEXTS)
        other = case.call("hit, another process", reader.transform(cache, TEXTS, "float32"), TEXTS)
    finally:
        (tmp_path / "release").touch()
        finish_child(holder, work)
    case.notes.append(f"hits took {same.seconds:.3f} s here, {other.seconds:.3f} s there")
    case.call("after release", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()
    assert same.seconds < 2 and other.seconds < 2, case.notes[-1]


# ---------------------------------------------------------------------- crafted meta.json


def crafted_meta(kind, clean):
    meta = json.loads(clean)
    if kind == "not JSON":
        return b"{this is not json"
    if kind == "a JSON list":
        return json.dumps([meta]).encode()
    if kind == "format version 1":
        meta["version"] = 1
    elif kind == "huge dim":
        meta["dim"] = 2**40
    elif kind == "unknown dtype":
        meta["storage_dtype"] = "bfloat8"
    return json.dumps(meta).encode()


@pytest.mark.parametrize(
    "kind", ("not JSON", "a JSON list", "format version 1", "huge dim", "unknown dtype")
)
def test_crafted_meta_json(tiny_albert_path, references, tmp_path, kind):
    reference = references["float32"]
    case = new_case(tmp_path, reference, f"meta.json: {kind}", "").start()
    case.operation = (
        "float32: a copy of a full folder with meta.json replaced: transform twice, restore "
        "meta.json, transform"
    )
    namespace = case.cache / CACHE_ROOT / reference.namespace_dir.name
    shutil.copytree(reference.namespace_dir, namespace)
    clean = (namespace / "meta.json").read_bytes()
    (namespace / "meta.json").write_bytes(crafted_meta(kind, clean))
    vectorizer = make_vectorizer(tiny_albert_path, "float32", str(case.cache))
    case.call("first", attempt(vectorizer, TEXTS), TEXTS)
    case.call("second", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA)
    (namespace / "meta.json").write_bytes(clean)
    case.call("restored", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()


# ---------------------------------------------------------------------- a deleted folder


def test_cache_folder_deleted_between_transforms(tiny_albert_path, references, reader, tmp_path):
    case = new_case(tmp_path, references["float32"], "cache folder deleted while in use", "")
    case.start()
    case.operation = (
        "float32: transform, delete the folder, transform, another process fills it, transform"
    )
    vectorizer = make_vectorizer(tiny_albert_path, "float32", str(case.cache))
    case.call("fill", attempt(vectorizer, TEXTS), TEXTS)
    shutil.rmtree(case.cache)
    case.call("after deletion", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA)
    texts = EXTRA + TEXTS[::-1]
    case.call("fresh process", reader.transform(case.cache, texts, "float32"), texts)
    case.call("next call", attempt(vectorizer, TEXTS + EXTRA), TEXTS + EXTRA, after=True)
    case.finish()
