#!/usr/bin/env bash
# Creates the Python venv for the side-by-side benchmarks (benches/faiss_python.py,
# benches/layout_python.py, and ../shared/peers/python_stack.py, which `cargo bench --bench
# build` runs): faiss-cpu and umap-learn (with numba, llvmlite, pynndescent), numpy,
# pyarrow, scikit-learn, onnxruntime, astropy, Pillow, Jinja2, all pinned with their
# dependencies, in
# $SIMSITE_BENCH_VENV (default ~/.cache/simsite/bench-venv). For benchmark comparisons
# only: neither the build nor the tests need it. Idempotent: a finished venv has a
# .complete marker listing its pins, and a second run with the same pins does nothing
# (changed pins are installed into it). Needs python3 (3.11) with venv.
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
  onnxruntime==1.31.1
  flatbuffers==25.12.19
  protobuf==7.36.2
  astropy==8.0.2
  astropy-iers-data==0.2026.11.2.0.34.55
  pyerfa==2.0.1.5
  PyYAML==6.0.3
  pillow==13.0.0
  Jinja2==3.1.6
  MarkupSafe==3.0.4
)

wanted=$(printf '%s\n' "${pins[@]}")
if [ -f "$VENV/.complete" ] && [ "$(cat "$VENV/.complete")" = "$wanted" ]; then
  exit 0
fi

command -v "$PY" >/dev/null || { echo "setup_python: $PY not found" >&2; exit 1; }
if [ -x "$VENV/bin/pip" ] && [ -f "$VENV/.complete" ]; then
  echo "setup_python: updating the benchmark venv in $VENV" >&2
else
  echo "setup_python: creating the benchmark venv in $VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "${pins[@]}"
# Import everything once: catches a broken wheel and warms the .pyc caches.
"$VENV/bin/python" -c "import numpy, scipy, pyarrow, sklearn, numba, pynndescent, umap, faiss, onnxruntime, astropy, PIL, jinja2"
printf '%s\n' "$wanted" > "$VENV/.complete"
echo "setup_python: done; run the benchmarks with $VENV/bin/python" >&2
