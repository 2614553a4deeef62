#!/usr/bin/env bash
# Runs the benchmark and prints its table. Full sizes take several minutes on 2 cores.
#   bash infra/scripts/bench.sh            # full run, release build
#   bash infra/scripts/bench.sh --smoke    # small sizes, debug build, no thresholds (CI)
#   bash infra/scripts/bench.sh --only calls rss   # some figures
# The DynamoDB figure needs moto (set up by infra/scripts/test.sh in .venv).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. infra/scripts/lib.sh
ensure_venv "$ROOT/.venv" infra/requirements-test.txt
export MOTO_SERVER_BIN="$ROOT/.venv/bin/moto_server"

profile=(--release)
dir=release
for arg in "$@"; do
  if [ "$arg" = "--smoke" ]; then
    profile=()
    dir=debug
  fi
done
cargo build --locked "${profile[@]}" -p sf-simulator -p casesync-bench \
  -p casesync-scheduler -p casesync-worker -p casesync-oauth-callback -p casesync-api \
  -p casesync-publisher -p casesync-console-fn -p casesync-change-router
exec "$ROOT/target/$dir/casesync-bench" "$@"
