#!/usr/bin/env bash
# Fuzzes the Salesforce JSON decoding and the OAuth callback's parameter handling, each target
# for SECONDS (default 60), starting from infra/fuzz/seeds. Fails on any crash.
# Needs cargo-fuzz (installed here on first use) and a toolchain that accepts -Z flags: nightly
# when rustup has or can fetch it, else the stable toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PER_TARGET=${1:-60}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (first run only)" >&2
  cargo install cargo-fuzz --locked --quiet
fi
TOOLCHAIN=()
if cargo +nightly --version >/dev/null 2>&1 \
  || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
else
  echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
fi

cd "$ROOT"
FUZZ_DIR=infra/fuzz
# The fuzz crate is its own workspace with its own lock file. Build against it as committed
# (--locked): a stale lock fails here, instead of being re-resolved and rewritten on every fresh
# run. After changing the core's dependencies: (cd infra/fuzz && cargo metadata >/dev/null).
if ! cargo metadata --locked --format-version 1 --manifest-path "$FUZZ_DIR/Cargo.toml" \
    >/dev/null; then
  echo "infra/fuzz/Cargo.lock is out of date with the core's dependencies: run" >&2
  echo "  (cd infra/fuzz && cargo metadata --format-version 1 >/dev/null)" >&2
  echo "and commit infra/fuzz/Cargo.lock" >&2
  exit 1
fi
for target in salesforce_json oauth_callback; do
  mkdir -p "$FUZZ_DIR/corpus/$target"
  echo "fuzzing $target for ${PER_TARGET}s" >&2
  log="$ROOT/target/fuzz-$target.log"
  mkdir -p "$ROOT/target"
  # cargo fuzz exits non-zero on a crash (the input is kept under infra/fuzz/artifacts).
  if ! cargo "${TOOLCHAIN[@]}" fuzz run --fuzz-dir "$FUZZ_DIR" "$target" \
      "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/seeds/$target" -- \
      -max_total_time="$PER_TARGET" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed: see $log and $FUZZ_DIR/artifacts/$target" >&2
    exit 1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  echo "fuzz $target: ${runs} inputs in ${PER_TARGET}s, no crash"
done
