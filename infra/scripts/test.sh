#!/usr/bin/env bash
# Runs every test of the workspace.
#
# First run: creates .venv with moto's server (the AWS protocols on loopback) and installs
# Chromium with its chromedriver if missing (the console's browser tests). Then it starts
# moto, and runs `cargo test` over the whole workspace: unit tests, the simulator-backed
# integration tests, the CLI end-to-end tests and the Lambda handler tests.
# Extra arguments go to cargo test (e.g. `bash infra/scripts/test.sh -p casesync-core`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. infra/scripts/lib.sh

ensure_venv "$ROOT/.venv" infra/requirements-test.txt
ensure_browser
export MOTO_SERVER_BIN="$ROOT/.venv/bin/moto_server"
mkdir -p target
start_moto

# The whole workspace, unless the arguments name packages (`-p`/`--package`).
scope=(--workspace)
for arg in "$@"; do
  case $arg in -p | --package | --package=* | -p?*) scope=() ;; esac
done
cargo test "${scope[@]}" --locked "$@"
