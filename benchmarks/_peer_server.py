"""The CPU peers in a second interpreter: ``bench_encode.py --peers-python PYTHON`` drives this.

optimum-intel pins transformers 4.57, while a user who installs sklearn-albert today gets
transformers 5. With ``--peers-python``, AlbertVectorizer runs in the benchmark's own
interpreter and the peers run here, in the interpreter of the peers' environment, round by
round in the same interleaved order: each side is what its users install.

Protocol: JSON lines. The first line read is ``{"model_name", "folder", "threads"}``; the
reply lists the systems (``name``, ``label``, ``compute_dtype``, ``batch_size``) and the
calibration seconds. Then each ``{"op": "run", "name", "texts", "out"}`` runs one system,
timed here around its call only (``perf_counter``, after a ``gc.collect``), saves its
embeddings to the ``.npy`` path ``out`` and replies ``{"seconds", "peak_rss",
"rss_before"}``; ``{"op": "stop"}`` ends. Everything else this process or its libraries
print goes to standard error: standard output carries the protocol alone.
"""

import gc
import json
import os
import sys
import time
from pathlib import Path

import _common as common
import _peers as peers
import numpy as np


def main():
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries' prints (C level too) go to stderr
    sys.stdout = sys.stderr

    def reply(message):
        protocol.write(json.dumps(message) + "\n")

    spec = json.loads(sys.stdin.readline())
    import torch

    torch.set_num_threads(int(spec["threads"]))
    common.quiet_transformers()
    systems, calibration_seconds = peers.build_peer_systems(
        spec["model_name"], Path(spec["folder"]), threads=int(spec["threads"])
    )
    by_name = {system["name"]: system for system in systems}
    reply(
        {
            "systems": [
                {key: system.get(key) for key in ("name", "label", "compute_dtype", "batch_size")}
                for system in systems
            ],
            "calibration_seconds": calibration_seconds,
            "versions": {
                name: _installed_version(name)
                for name in (
                    "transformers",
                    "torch",
                    "sentence-transformers",
                    "openvino",
                    "optimum-intel",
                    "onnxruntime",
                    "fastembed",
                    "nncf",
                )
            },
        }
    )
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "stop":
            break
        system = by_name[request["name"]]
        gc.collect()
        with common.PeakRSS() as memory:
            start = time.perf_counter()
            output = system["run"](request["texts"])
            seconds = time.perf_counter() - start
        np.save(request["out"], np.asarray(output, dtype=np.float32))
        reply({"seconds": seconds, "peak_rss": memory.peak, "rss_before": memory.before})


def _installed_version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
