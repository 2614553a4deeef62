#!/usr/bin/env bash
# The reliability suite: the crash-safety property over 1,000 generated cases (or $1), the
# fault matrices (Salesforce through the simulator; AWS through moto) and the secrets tests,
# then a table of what was tried and what was lost. Every row must say "lost 0".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. infra/scripts/lib.sh
ensure_venv "$ROOT/.venv" infra/requirements-test.txt
export MOTO_SERVER_BIN="$ROOT/.venv/bin/moto_server"
mkdir -p target
start_moto

export PROPTEST_CASES=${1:-1000}
log=target/reliability.log
# Every test that prints a RELIABILITY row; each also fails on any loss.
cargo test --locked -p casesync-tests --test crash_safety --test reliability_salesforce \
  --test secrets -- --nocapture --test-threads 2 >"$log" 2>&1 || { tail -n 60 "$log"; exit 1; }
cargo test --locked -p casesync-worker --test reliability -- --nocapture >>"$log" 2>&1 \
  || { tail -n 60 "$log"; exit 1; }

echo "| what was tried | trials | lost | duplicated | stale |"
echo "|---|---:|---:|---:|---:|"
grep -E '^RELIABILITY \|' "$log" | sed -E 's/^RELIABILITY \| //' | awk -F' \\| ' '{
  gsub(/ trials/, "", $2); gsub(/lost /, "", $3); gsub(/duplicated /, "", $4); gsub(/stale /, "", $5);
  printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
