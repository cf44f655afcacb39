#!/usr/bin/env bash
# Creates the Python venv for the side-by-side benchmarks (benches/faiss_python.py and
# benches/layout_python.py): faiss-cpu and umap-learn (with numba, llvmlite, pynndescent),
# numpy, pyarrow, scikit-learn, all pinned with their dependencies, in
# $SIMSITE_BENCH_VENV (default ~/.cache/simsite/bench-venv). For benchmark comparisons
# only: neither the build nor the tests need it. Idempotent: a finished venv has a
# .complete marker and a second run does nothing. Needs python3 (3.11) with venv.
set -euo pipefail

VENV="${SIMSITE_BENCH_VENV:-$HOME/.cache/simsite/bench-venv}"
PY="${PYTHON:-python3}"

# The whole resolved set, so a later run gets the same stack (Python 3.11, x86_64 wheels).
pins=(
  numpy==2.4.6
  scipy==1.17.1
  pyarrow==26.0.1
  scikit-learn==1.9.1
  joblib==1.6.0
  threadpoolctl==3.8.0
  umap-learn==0.5.12
  numba==0.68.1
  llvmlite==0.50.0
  pynndescent==0.7.0
  tqdm==4.70.1
  narwhals==2.29.0
  packaging==26.3
  cloudpickle==3.1.2
  faiss-cpu==1.15.1
)

if [ -f "$VENV/.complete" ]; then
  exit 0
fi

command -v "$PY" >/dev/null || { echo "setup_python: $PY not found" >&2; exit 1; }
echo "setup_python: creating the benchmark venv in $VENV" >&2
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "${pins[@]}"
# Import everything once: catches a broken wheel and warms the .pyc caches.
"$VENV/bin/python" -c "import numpy, scipy, pyarrow, sklearn, numba, pynndescent, umap, faiss"
touch "$VENV/.complete"
echo "setup_python: done; run the benchmarks with $VENV/bin/python" >&2
