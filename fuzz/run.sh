#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 600), FUZZ_AT_ONCE (2) at a time, then minimises the
# corpora in corpus/<target>/ (kept in git). Crashes land in artifacts/<target>/.
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz (installed
# from crates.io here when missing). Usage: bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fits raster config catalogue)
cargo +nightly --version >/dev/null 2>&1 || { echo "fuzz: needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The `fits` target hands tile-compressed images to a child `simsite`, as builds do.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/simsite/target}
(cd .. && cargo build --release --locked --bin simsite)
export SIMSITE_BIN=$CARGO_TARGET_DIR/release/simsite
unset CARGO_TARGET_DIR   # cargo fuzz keeps its own (fuzz/target)
cargo +nightly fuzz build -O
# CFITSIO checks what calloc returns; under AddressSanitizer an absurd request (a header
# claiming petabytes) aborts instead of returning NULL as glibc does in a real build, which
# would report a "crash" no user can meet (checked: such a file is skipped at 38 MB RSS).
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1}
run() {
    local t=$1
    mkdir -p "logs" "corpus/$t"
    # 2 GB per run: the decoders must refuse what would need more (max-pixels is 4 M here).
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -max_len=262144 -timeout=20 -print_final_stats=1 > "logs/$t.log" 2>&1 \
        && echo "$t: no crash in $seconds s ($(grep -o 'stat::number_of_executed_units: [0-9]*' "logs/$t.log" | grep -o '[0-9]*$') runs)" \
        || { echo "$t: CRASH, see fuzz/logs/$t.log and fuzz/artifacts/$t/"; return 1; }
}
status=0
at_once=${FUZZ_AT_ONCE:-2}
for ((i = 0; i < ${#targets[@]}; i += at_once)); do
    pids=()
    for t in "${targets[@]:i:at_once}"; do run "$t" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
done
for t in "${targets[@]}"; do
    cargo +nightly fuzz cmin -O "$t" "corpus/$t" > "logs/$t.cmin.log" 2>&1 || true
done
exit $status
