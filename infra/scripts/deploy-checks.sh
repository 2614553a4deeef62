#!/usr/bin/env bash
# The deployment checks CI runs: the SAM template lints and validates, and `sam build` produces
# the seven arm64 Lambda bootstraps. Offline, without AWS credentials.
#
# First run: creates .venv-deploy from infra/requirements-deploy.txt (aws-sam-cli, cfn-lint,
# cargo-lambda and zig from PyPI) and adds the aarch64-unknown-linux-gnu Rust target.
# Then: cfn-lint, `sam validate --lint` (cfn-lint rules; it skips the SAM transform), plain
# `sam validate` (runs the transform: catches what the lint cannot, e.g. an IAM-authorized
# HTTP API without EnableIamAuthorizer), a check of the template against the code (key
# schemas, queue settings, environment variables, binaries, routes), and `sam build`, timed,
# with each bootstrap's size.
#
# `sam build` runs `cargo lambda build --release --arm64 --bin <function>` at the repository
# root for each function, one after the other, in the workspace's one target directory
# (target/, or $CARGO_TARGET_DIR): the first build compiles the dependencies, the others
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

step "template against the code"
# What no linter knows: the key schemas the adapters use (casesync_aws::create_tables), the
# queue settings the worker relies on, every environment variable each function reads (its
# `env.required(...)` calls) being set for it, and the binaries SAM builds existing.
python - <<'PY'
import pathlib, re, sys
from samtranslator.yaml_helper import yaml_parse

root = pathlib.Path(".")
t = yaml_parse((root / "template.yaml").read_text())
res, env_global = t["Resources"], t["Globals"]["Function"]["Environment"]["Variables"]
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)

def keys(name):
    return [(k["AttributeName"], k["KeyType"]) for k in res[name]["Properties"]["KeySchema"]]
check(keys("ConnectionsTable") == [("connection_id", "HASH")], "connections key schema")
check(keys("DataPointsTable") == [("connection_id", "HASH"), ("case_id", "RANGE")], "data points key schema")
check(keys("AuthStatesTable") == [("state", "HASH")], "auth states key schema")
ttl = res["AuthStatesTable"]["Properties"].get("TimeToLiveSpecification", {})
check(ttl.get("AttributeName") == "expires_at" and ttl.get("Enabled") is True, "auth states TTL on expires_at")
for name in ("ConnectionsTable", "DataPointsTable", "AuthStatesTable"):
    p = res[name]["Properties"]
    check(p.get("BillingMode") == "PAY_PER_REQUEST", f"{name}: on-demand")
    check(p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True, f"{name}: PITR")
    check(p.get("SSESpecification", {}).get("SSEEnabled") is True, f"{name}: SSE")

queue, dlq = res["WorkQueue"]["Properties"], res["WorkDeadLetterQueue"]["Properties"]
worker = res["WorkerFunction"]["Properties"]
check(queue.get("FifoQueue") is True and dlq.get("FifoQueue") is True, "FIFO work queue and DLQ")
check(queue.get("ContentBasedDeduplication") is False, "explicit deduplication ids")
check(queue["VisibilityTimeout"] >= 6 * worker["Timeout"], "visibility timeout >= 6 x worker timeout")
check(queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}, "redrive to the DLQ")
sqs_events = [e["Properties"] for e in worker["Events"].values() if e["Type"] == "SQS"]
check(len(sqs_events) == 1 and "ReportBatchItemFailures" in sqs_events[0].get("FunctionResponseTypes", []),
      "worker's SQS event reports batch item failures")

# The environment contract: constant name -> variable name, from the code.
consts = {}
for src in [root / "shared/aws/src/config.rs", *root.glob("functions/*/src/**/*.rs")]:
    consts.update(re.findall(r'pub const ([A-Z_]+): &str = "([A-Z_]+)";', src.read_text()))
# What each `Wiring` method reads (casesync_aws::Wiring asks the environment for its adapters).
wiring_src = (root / "shared/aws/src/wiring.rs").read_text()
wiring = {m.group(1): set(re.findall(r"env\.required\(([A-Z_]+)\)", m.group(2)))
          for m in re.finditer(r"pub (?:async )?fn (\w+)\(\s*(?:&mut self|mut self)[^)]*\)[^{]*\{(.*?)\n    \}",
                               wiring_src, re.S)}
check(wiring.get("connections") == {"CONNECTIONS_TABLE"}, f"could not read Wiring's methods: {wiring}")
functions = {"SchedulerFunction": "scheduler", "WorkerFunction": "worker",
             "OAuthCallbackFunction": "oauth-callback", "ApiFunction": "api",
             "PublisherFunction": "publisher", "ConsoleFunction": "console",
             "ChangeRouterFunction": "change-router"}
for resource, crate in functions.items():
    props = res[resource]["Properties"]
    env = {**env_global, **props.get("Environment", {}).get("Variables", {})}
    for name in env:
        check(name in consts.values(), f"{resource}: {name} is not a variable any code reads")
    code = "\n".join(p.read_text() for p in (root / "functions" / crate / "src").glob("**/*.rs"))
    read = set(re.findall(r"env(?:\(\))?\.(?:required|parsed)\(\s*([A-Z_]+)", code))
    for method, reads in wiring.items():
        if re.search(rf"wiring\s*\.\s*{method}\(", code):
            read |= reads
    read |= set(re.findall(r"wiring\s*\.\s*secret\(\s*([A-Z_]+)", code))
    for const in read:
        var = consts.get(const)
        check(var is not None and var in env, f"{resource}: {var or const} is read by {crate} but not set")
    binary = res[resource]["Metadata"]["BuildProperties"]["Binary"]
    manifest = (root / "functions" / crate / "Cargo.toml").read_text()
    check(f'name = "{binary}"' in manifest, f"{resource}: no binary {binary} in functions/{crate}")

routes = sorted((e["Properties"]["Method"], e["Properties"]["Path"])
                for r in ("ApiFunction", "OAuthCallbackFunction")
                for e in res[r]["Properties"]["Events"].values() if e["Type"] == "HttpApi")
check(routes == sorted([("GET", "/oauth/callback"), ("POST", "/connections"), ("GET", "/connections"),
    ("GET", "/connections/{id}"), ("GET", "/connections/{id}/queues"), ("PUT", "/connections/{id}"),
    ("POST", "/connections/{id}/disconnect"), ("POST", "/connections/{id}/reauthorize"),
    ("DELETE", "/connections/{id}"), ("GET", "/connections/{id}/diagnostics"),
    ("GET", "/channels"), ("GET", "/channels/{channel}/data-points"), ("GET", "/data-points/{id}")]),
    f"routes: {routes}")

# The data points table's indexes and stream, as casesync_aws::create_tables makes them.
dp = res["DataPointsTable"]["Properties"]
points_src = (root / "shared/aws/src/data_points.rs").read_text()
index_names = dict(re.findall(r'pub const (CHANGE_INDEX|ID_INDEX): &str = "([a-z_]+)";', points_src))
gsis = {g["IndexName"]: g for g in dp.get("GlobalSecondaryIndexes", [])}
check(set(gsis) == set(index_names.values()), f"data point indexes: {sorted(gsis)} vs {index_names}")
by_change = gsis.get(index_names.get("CHANGE_INDEX"), {})
check([(k["AttributeName"], k["KeyType"]) for k in by_change.get("KeySchema", [])]
      == [("channel", "HASH"), ("changed", "RANGE")], "change index keys")
check(set(by_change.get("Projection", {}).get("NonKeyAttributes", []))
      == {"body", "parts", "part_set", "escaped_len"}, "change index projects the bodies")
check(dp.get("StreamSpecification", {}).get("StreamViewType") == "NEW_AND_OLD_IMAGES",
      "data points stream of new and old images")
publisher = res["PublisherFunction"]["Properties"]
streams = [e["Properties"] for e in publisher["Events"].values() if e["Type"] == "DynamoDB"]
check(len(streams) == 1 and "ReportBatchItemFailures" in streams[0].get("FunctionResponseTypes", [])
      and streams[0].get("DestinationConfig", {}).get("OnFailure", {}).get("Type") == "SQS",
      "publisher: stream source with batch item failures and a dead-letter destination")
console_routes = res["ConsoleFunction"]["Properties"]["Events"]
check(sorted(e["Properties"]["Path"] for e in console_routes.values()) == ["/console", "/console/{proxy+}"]
      and all(e["Properties"].get("Auth", {}).get("Authorizer") == "NONE" for e in console_routes.values()),
      "the console's routes: /console and below, signed in by the function itself")
console_src = (root / "functions/console/src/lib.rs").read_text()
check('pub const BASE: &str = "/console";' in console_src, "the console function is mounted at /console")
pool_client = res["ConsoleUserPoolClient"]["Properties"]
session_src = (root / "functions/console/src/session.rs").read_text()
renew = re.search(r"pub const RENEW_MAX_AGE: i64 = (\d+) \* 3600;", session_src)
check(renew is not None and pool_client.get("RefreshTokenValidity") == int(renew.group(1))
      and pool_client.get("TokenValidityUnits", {}).get("RefreshToken") == "hours",
      "the renew cookie lives as long as the refresh token")
check(set(pool_client.get("ExplicitAuthFlows", [])) == {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"},
      "the console's auth flows")
check(res["ConsoleUserPool"]["Properties"]["AdminCreateUserConfig"].get("AllowAdminCreateUserOnly") is True,
      "no self sign-up")
# Change events: optional, all of it behind one condition; the router's queue dead-letters.
change_resources = ["ChangeEventsRule", "ChangeEventsQueue", "ChangeEventsDeadLetterQueue",
                    "ChangeEventsQueuePolicy", "ChangeRouterFunction", "ChangeRouterLogGroup",
                    "ChangeRouterRole", "ChangeEventsDeadLetterAlarm"]
check(all(res[r].get("Condition") == "HasChangeEvents" for r in change_resources),
      "every change-event resource depends on SalesforceEventBusName")
router_events = [e["Properties"] for e in res["ChangeRouterFunction"]["Properties"]["Events"].values()]
check(len(router_events) == 1 and "ReportBatchItemFailures" in router_events[0].get("FunctionResponseTypes", []),
      "the change router reports batch item failures")
check(res["ChangeEventsQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
      == {"Fn::GetAtt": ["ChangeEventsDeadLetterQueue", "Arn"]}, "change events dead-letter")
callback = res["OAuthCallbackFunction"]["Properties"]["Events"]["Callback"]["Properties"]
check(callback.get("Auth", {}).get("Authorizer") == "NONE", "the OAuth callback has no authorizer")
auth = res["HttpApi"]["Properties"]["Auth"]
check(auth.get("EnableIamAuthorizer") is True and auth.get("DefaultAuthorizer") == "AWS_IAM", "IAM auth by default")

if problems:
    print("template.yaml disagrees with the code:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("key schemas, queue settings, environment contract, binaries and routes agree")
PY

step "sam build"
build_started=$SECONDS
sam build --config-file infra/samconfig.toml
build_seconds=$((SECONDS - build_started))

step "bootstraps"
status=0
for fn in SchedulerFunction WorkerFunction OAuthCallbackFunction ApiFunction PublisherFunction ConsoleFunction ChangeRouterFunction; do
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
