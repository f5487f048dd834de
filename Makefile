# graft's two commands: `make demo` and `make test`. Both run setup first (fast when done) and
# print the wall time of every stage. Doc tests run before the unit tests so the runner's
# closing summary is the full test count.
STAGE := bash scripts/stage.sh

.PHONY: setup demo test check-libtorch build fmt clippy unit doc ndarray-cli examples downstream package benches bench bench-compare bench-peers sweep

setup:
	@$(STAGE) setup bash scripts/setup.sh

check-libtorch: setup
	@bash scripts/check-libtorch.sh

build: check-libtorch
	@$(STAGE) "build (release)" cargo build --release --examples

# The short digits transfer study (docs/results.md is the full one): pretrain, transfer with
# k = 10 by the three routes, print the table, write the plots.
demo: build
	@$(STAGE) "demo (digits study, short)" ./target/release/examples/digits_study --quick

fmt:
	@$(STAGE) "fmt --check" cargo fmt --all -- --check

clippy: check-libtorch
	@$(STAGE) "clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings

# Test processes run side by side, each with libtorch's OpenMP threads: spinning idle threads
# (libgomp's default) then starve the other process — measured 10-25x slower training tests on 2
# cores. PASSIVE idle threads sleep instead; numerics do not change.
#
# The tests' scratch files (weights, checkpoints, run directories: ~1.5 GB a run) go to a TMPDIR
# under target/ that each run empties first, so repeated runs cannot fill the disk's /tmp.
TEST_TMP := $(CURDIR)/target/test-tmp
unit: check-libtorch
	@rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	@if cargo nextest --version >/dev/null 2>&1; then \
		TMPDIR=$(TEST_TMP) OMP_WAIT_POLICY=PASSIVE $(STAGE) "tests (nextest)" cargo nextest run --workspace --no-fail-fast; \
	else \
		TMPDIR=$(TEST_TMP) OMP_WAIT_POLICY=PASSIVE $(STAGE) "tests (cargo test)" cargo test --workspace --no-fail-fast; \
	fi

doc: check-libtorch
	@$(STAGE) "doc tests" cargo test --workspace --doc

# graft-cli built without libtorch (--no-default-features) runs a torchvision-written model.
ndarray-cli: check-libtorch
	@$(STAGE) "no-libtorch graft (ndarray)" bash scripts/check-ndarray-cli.sh

# The route examples, on data the repo ships or makes (each well under a minute here).
EXAMPLES := extract_features direct_reuse finetune_imagefolder
examples: check-libtorch
	@for e in $(EXAMPLES); do $(STAGE) "example $$e" cargo run -q --example $$e || exit 1; done

# A crate outside the repository that depends on graft (examples/downstream: README's program),
# built and run with no LD_LIBRARY_PATH on what the finetune_imagefolder example wrote.
downstream: check-libtorch
	@$(STAGE) "downstream crate" bash scripts/check-downstream.sh

# cargo package for every crate (metadata, shipped files, size).
package:
	@$(STAGE) "cargo package" bash scripts/check-package.sh

# The criterion benches, each run once (criterion's test mode), so they cannot rot.
benches: check-libtorch
	@$(STAGE) "benches (criterion, once each)" cargo test -q --bench bench_main

test: setup fmt clippy doc ndarray-cli examples downstream package benches unit
	@echo "==> make test: all stages passed"

# graft against PyTorch side by side in one run (alternating, best and median of N, peak RSS):
# writes docs/benchmarks.md (~15 min here; `cargo bench --bench compare -- --quick` for a short
# look, `-- --only TEXT` for one case).
bench-compare: check-libtorch
	@$(STAGE) "bench: graft vs PyTorch" cargo bench --bench compare

# The pure-Rust peers of graft-ndarray (tract, candle) as bench workers: benches/peers is its own
# workspace, built only here (its dependencies never weigh on `make test`); bench-compare adds
# them to the graft-ndarray case when target/peers/release/graft-bench-peers exists.
bench-peers:
	@$(STAGE) "bench: build the tract / candle workers" cargo build --release --manifest-path benches/peers/Cargo.toml --target-dir target/peers

# Every built-in architecture timm also builds, random weights, timm vs graft (both backends) at a
# small input: writes the table into docs/zoo.md. Not in `make test` (it builds every
# architecture); SWEEP_ARGS="--filter 'vit_*' --max-params 100000000" narrows it.
sweep: check-libtorch
	@$(STAGE) "zoo sweep" cargo run -q --release --example zoo_sweep -- $(SWEEP_ARGS)

# criterion micro-benchmarks (ops and zoo forwards on both backends, a train step, the loader).
bench: check-libtorch
	@$(STAGE) "bench: criterion" cargo bench --bench bench_main
