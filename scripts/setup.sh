#!/usr/bin/env bash
# Installs what building and testing simsite needs on Debian 12, idempotently: each step
# runs only when its result is missing, so a second run costs a few milliseconds.
#   Debian: pkg-config, libcfitsio-dev (CFITSIO, for FITS), gcc/g++/make, unzip, and for
#     FAISS (built from the source vendored in faiss-sys): cmake, libopenblas-dev (BLAS and
#     LAPACK); OpenMP comes with gcc; chromium and chromium-driver for the browser test
#   ONNX Runtime: libonnxruntime.so from the onnxruntime==1.31.1 wheel on PyPI (pip
#     download, no install), unpacked to $SIMSITE_ORT_DIR
#     (default ~/.cache/simsite/onnxruntime-1.31.1), where simsite looks for it.
#   Python for the preprocessing parity test (tests/parity.rs runs training/simsite_prep.py)
#     and the browser test (tests/browser.rs runs tests/browser/site_test.py): a venv with
#     numpy, Pillow, astropy and selenium at $SIMSITE_PY_VENV (default
#     ~/.cache/simsite/py-venv). Training itself needs more (see training/README.md).
# Rust (cargo) itself must already be installed (rustup).
set -euo pipefail

packages=(pkg-config libcfitsio-dev gcc g++ make cmake libopenblas-dev unzip python3-pip python3-venv chromium chromium-driver)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

ORT_VERSION=1.31.1
ORT_DIR="${SIMSITE_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/simsite/onnxruntime-$ORT_VERSION}"
if [ ! -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "setup: fetching the onnxruntime==$ORT_VERSION wheel from PyPI into $ORT_DIR" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  PY=python3
  command -v "$PY" >/dev/null || { echo "setup: python3 (for pip download) not found" >&2; exit 1; }
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$tmp"
  mkdir -p "$ORT_DIR"
  unzip -q -o -j "$tmp"/onnxruntime-*.whl \
    "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" \
    "onnxruntime/capi/libonnxruntime_providers_shared.so" -d "$tmp/lib"
  mv "$tmp/lib/libonnxruntime_providers_shared.so" "$ORT_DIR/"
  # Renamed last: its presence means the folder is complete.
  mv "$tmp/lib/libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"
fi

PY_VENV="${SIMSITE_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/simsite/py-venv}"
# numpy, Pillow and astropy for the preprocessing parity test; selenium drives Debian's
# chromium for the browser test. The marker records what was installed, so a changed list
# rebuilds the venv.
PY_REQS="numpy==2.4.6 pillow==13.0.0 astropy==8.0.2 selenium==4.51.0"
if [ "$(cat "$PY_VENV/.complete" 2>/dev/null)" != "$PY_REQS" ]; then
  echo "setup: creating a Python venv with $PY_REQS in $PY_VENV" >&2
  rm -rf "$PY_VENV"
  python3 -m venv "$PY_VENV"
  # shellcheck disable=SC2086
  "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check $PY_REQS
  echo "$PY_REQS" > "$PY_VENV/.complete"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi
