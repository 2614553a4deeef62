# Shared helpers for the scripts in infra/scripts. Source it; do not run it.

# find_python: the first Python 3.9+ interpreter found, printed as a command.
find_python() {
  local candidate
  for candidate in "${CASESYNC_PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10 \
    /usr/bin/python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[0-9]*/bin/python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# ensure_venv DIR REQUIREMENTS: a Python virtualenv at DIR with REQUIREMENTS installed,
# reinstalled only when the requirements file changed. `python -m venv` needs ensurepip, which
# Debian ships apart (python3-venv) and which fails on a full disk; when it fails, the reason is
# printed and virtualenv (which brings its own pip) is tried instead.
ensure_venv() {
  local dir=$1 requirements=$2 stamp python bootstrap
  stamp="$dir/.installed-$(sha256sum "$requirements" | cut -c1-16)"
  if [ -f "$stamp" ]; then
    return 0
  fi
  if ! python=$(find_python); then
    echo "no Python 3.9 or newer found: install python3 (with its venv module) or set CASESYNC_PYTHON" >&2
    return 1
  fi
  echo "setting up $dir from $requirements with $python ($("$python" --version 2>&1)), first run only" >&2
  rm -rf "$dir"
  if ! "$python" -m venv "$dir"; then
    echo "'$python -m venv' failed; free disk space: $(df -Ph "$dir/.." | awk 'NR==2 {print $4}')" >&2
    if [ -x "$dir/bin/python" ]; then
      "$dir/bin/python" -m ensurepip --upgrade --default-pip >&2 || true
    fi
    echo "trying virtualenv instead" >&2
    rm -rf "$dir"
    bootstrap="$(dirname "$dir")/.virtualenv-bootstrap"
    "$python" -m pip install --quiet --disable-pip-version-check --target "$bootstrap" virtualenv
    PYTHONPATH="$bootstrap" "$python" -m virtualenv --quiet "$dir"
    rm -rf "$bootstrap"
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  rm -f "$dir"/.installed-*
  touch "$stamp"
}

# ensure_browser: Chromium and its chromedriver, which the console's browser tests drive.
# Installed from Debian's packages on first use when missing (as root, or with sudo); else the
# reason is printed.
ensure_browser() {
  if command -v chromedriver >/dev/null 2>&1 && [ -x "${CASESYNC_CHROMIUM:-/usr/bin/chromium}" ]; then
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "the console's tests need Chromium: install Debian's chromium and chromium-driver (as root)" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "the console's tests need Chromium and chromedriver on PATH (set CASESYNC_CHROMIUM to the browser)" >&2
    return 1
  fi
  echo "installing chromium and chromium-driver (first run only)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
  "$(find_python)" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_moto: starts moto's server on loopback for this shell, exports CASESYNC_TEST_MOTO_URL,
# and stops it when the shell exits.
start_moto() {
  local port
  port=$(free_port)
  "$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$ROOT/target/moto.log" 2>&1 &
  MOTO_PID=$!
  trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
  export CASESYNC_TEST_MOTO_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if curl -fsS "$CASESYNC_TEST_MOTO_URL/moto-api/" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "moto_server did not start; see target/moto.log" >&2
  return 1
}
