#!/usr/bin/env bash
# The deployment checks CI runs: the SAM template lints and validates, and `sam build` produces
# the four arm64 Lambda bootstraps. Offline, without AWS credentials.
#
# First run: creates .venv-deploy from infra/requirements-deploy.txt (aws-sam-cli, cfn-lint,
# cargo-lambda and zig from PyPI) and adds the aarch64-unknown-linux-gnu Rust target.
# Then: cfn-lint, `sam validate --lint` (cfn-lint rules; it skips the SAM transform), plain
# `sam validate` (runs the transform: catches what the lint cannot, e.g. an IAM-authorized
# HTTP API without EnableIamAuthorizer), and `sam build`, timed, with each bootstrap's size.
#
# `sam build` runs `cargo lambda build --release --arm64 --bin <function>` at the repository
# root for each function, one after the other, in the workspace's one target directory
# (target/, or $CARGO_TARGET_DIR): the first build compiles the dependencies, the other three
# reuse them. Set CARGO_TARGET_DIR to share a warm target between runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. infra/scripts/lib.sh

step() { printf '\n-- %s\n' "$1"; }
started=$SECONDS

step "tools"
VENV="$ROOT/.venv-deploy"
ensure_venv "$VENV" infra/requirements-deploy.txt
# Keep the venv out of git even where .gitignore does not list it.
[ -f "$VENV/.gitignore" ] || echo '*' >"$VENV/.gitignore"
ZIG_DIR=$("$VENV/bin/python" -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))')
export PATH="$VENV/bin:$ZIG_DIR:$PATH"
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
echo "$(sam --version); $(cfn-lint --version); $(cargo lambda --version); zig $(zig version)"

# No credentials, a dummy region, no telemetry, no instance-metadata lookups.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true

step "cfn-lint template.yaml"
cfn-lint template.yaml
echo "no findings"

step "sam validate --lint"
sam validate --lint --template-file template.yaml

step "sam validate"
sam validate --template-file template.yaml

step "sam build"
build_started=$SECONDS
sam build --config-file infra/samconfig.toml
build_seconds=$((SECONDS - build_started))

step "bootstraps"
status=0
for fn in SchedulerFunction WorkerFunction OAuthCallbackFunction ApiFunction; do
  bootstrap=".aws-sam/build/$fn/bootstrap"
  if [ ! -x "$bootstrap" ]; then
    echo "$fn: no bootstrap at $bootstrap" >&2
    status=1
    continue
  fi
  arch=$(od -An -tx1 -j18 -N2 "$bootstrap" | tr -d ' ')
  if [ "$arch" != "b700" ]; then
    echo "$fn: $bootstrap is not an aarch64 ELF (e_machine $arch)" >&2
    status=1
  fi
  awk -v fn="$fn" -v b="$(stat -c %s "$bootstrap")" \
    'BEGIN { printf "%-22s %6.1f MiB (%d bytes, aarch64)\n", fn, b / 1048576, b }'
done
echo "sam build: ${build_seconds} s; deployment checks: $((SECONDS - started)) s in all"
exit $status
