#!/usr/bin/env bash
# Installs what building and testing simsite needs on Debian 12, idempotently: it only
# calls apt-get when a package is missing, so a second run costs a few milliseconds.
#   Debian: pkg-config, libcfitsio-dev (CFITSIO, for FITS), gcc/g++ (C parts of crates)
# Rust (cargo) itself must already be installed (rustup).
set -euo pipefail

packages=(pkg-config libcfitsio-dev gcc g++ make)

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

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi
