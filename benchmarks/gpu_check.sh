#!/usr/bin/env bash
# One command for a machine with one H100/H200 GPU; about 5-8 minutes. Prints:
#   1. the cuda-marked tests (pytest -m cuda);
#   2. texts/s of AlbertVectorizer float16/bfloat16 against sentence-transformers float16 on
#      the same GPU at batch sizes 32, 128 and 512, with the fraction of the bf16 tensor-core
#      peak (989 TFLOP/s dense; real tokens x 2 x parameters in matmuls);
#   3. float16/bfloat16 fidelity to float32 on the real MiniLM (cosine, STS-B Spearman);
#   4. a real out-of-memory backoff.
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=/path/to/python to choose the interpreter;
# it needs a CUDA build of torch and the package installed with .[test]).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
status=0

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || { echo "nvidia-smi failed: no NVIDIA GPU visible here"; exit 2; }
"$PYTHON" - <<'PY' || exit 2
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"CUDA is not available to torch {torch.__version__} (CUDA build: "
             f"{torch.version.cuda}); install a CUDA build of torch first.")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PY

echo; echo "== pytest -m cuda"
timeout 150 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "no test is marked cuda (pytest exit 5): nothing ran"
    status=1
elif [ "$rc" -ne 0 ]; then
    echo "cuda tests: exit status $rc"
    status=1
fi

echo; echo "== speed, fidelity, out-of-memory backoff"
timeout 330 "$PYTHON" benchmarks/gpu_check.py || status=1

echo; echo "gpu_check.sh finished with status $status"
exit "$status"
