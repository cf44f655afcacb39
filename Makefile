# The two commands of the README. Both run scripts/setup.sh first (idempotent).
# Cargo's target folder lives outside the clone so repeated builds and CI reuse it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/simsite/target
export CARGO_TARGET_DIR
SIMSITE := $(CARGO_TARGET_DIR)/release/simsite

.PHONY: demo test setup build fuzz

demo: build
	$(SIMSITE) build --config site-config.toml
	@echo "demo site: $(CURDIR)/site"

test: setup
	cargo test --release --locked
	# the benchmarks are not run here, only compiled, so they cannot fall behind the library
	cargo build --release --locked --benches

build: setup
	cargo build --release --locked

setup:
	@bash scripts/setup.sh

# Not part of `test`: every fuzz target for 10 minutes (fuzz/run.sh; needs nightly).
fuzz: setup
	bash fuzz/run.sh 600
