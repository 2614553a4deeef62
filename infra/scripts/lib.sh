# Shared helpers for the scripts in infra/scripts. Source it; do not run it.

# ensure_venv DIR REQUIREMENTS: a Python virtualenv at DIR with REQUIREMENTS installed,
# reinstalled only when the requirements file changed.
ensure_venv() {
  local dir=$1 requirements=$2 stamp
  stamp="$dir/.installed-$(sha256sum "$requirements" | cut -c1-16)"
  if [ -f "$stamp" ]; then
    return 0
  fi
  echo "setting up $dir from $requirements (first run only)" >&2
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  rm -f "$dir"/.installed-*
  touch "$stamp"
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
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
