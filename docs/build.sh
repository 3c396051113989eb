#!/usr/bin/env bash
# Build the documentation site into docs/_build/html; any warning fails the build.
#
#   docs/build.sh                               # run every example of the gallery
#   SKLEARN_ALBERT_GALLERY=none docs/build.sh   # render examples without running them
#   SKLEARN_ALBERT_GALLERY=save docs/build.sh   # run only examples whose path matches
#
# Needs the docs extra: pip install -e '.[docs]'. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m sphinx -W --keep-going -n -b html . _build/html "$@"
