#!/usr/bin/env bash
# The production-topology test (tests/topology/topology.test.mjs): a 3-node NATS cluster,
# PostgreSQL over TLS, two of each hexflow service and nginx (deploy/nginx/hexflow.conf) in
# front, with faults injected mid-import. Needs the hexflow binary built, nginx, openssl,
# PostgreSQL's server binaries, the current nats-server (scripts/setup.sh --browser installs it)
# and the npm packages (socket.io-client).
#
#   tests/topology/run.sh [extra node --test arguments]
#
# HEXFLOW_BIN: the hexflow binary (default: ${CARGO_TARGET_DIR:-target}/debug/hexflow, else
# /var/cache/hexflow/ci-target/debug/hexflow). HEXFLOW_NATS_SERVER: the nats-server (default:
# the path in ${HEXFLOW_TOOLS_DIR:-~/.cache/hexflow/tools}/nats-server-current).
# HEXFLOW_TOPOLOGY_ROWS: rows of the generated scan. TEST_KEEP=1 keeps the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${HEXFLOW_BIN:-}" ]; then
  for candidate in "${CARGO_TARGET_DIR:-target}/debug/hexflow" /var/cache/hexflow/ci-target/debug/hexflow; do
    if [ -x "$candidate" ]; then HEXFLOW_BIN=$candidate; break; fi
  done
fi
if [ -z "${HEXFLOW_BIN:-}" ] || [ ! -x "$HEXFLOW_BIN" ]; then
  echo "topology: no hexflow binary (build it with cargo build -p hexflow, or set HEXFLOW_BIN)" >&2
  exit 1
fi
HEXFLOW_BIN=$(realpath "$HEXFLOW_BIN")

if [ -z "${HEXFLOW_NATS_SERVER:-}" ]; then
  pointer="${HEXFLOW_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hexflow/tools}/nats-server-current"
  if [ ! -f "$pointer" ]; then
    echo "topology: $pointer is missing: run scripts/setup.sh --browser (or set HEXFLOW_NATS_SERVER)" >&2
    exit 1
  fi
  HEXFLOW_NATS_SERVER=$(cat "$pointer")
fi
if [ ! -x "$HEXFLOW_NATS_SERVER" ]; then
  echo "topology: $HEXFLOW_NATS_SERVER is not an executable nats-server" >&2
  exit 1
fi

for tool in nginx openssl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "topology: $tool is missing" >&2; exit 1; }
done
[ -d node_modules/socket.io-client ] || { echo "topology: node_modules is missing (npm ci)" >&2; exit 1; }

export HEXFLOW_BIN HEXFLOW_NATS_SERVER
echo "topology: $HEXFLOW_BIN ($("$HEXFLOW_BIN" --version 2>/dev/null || echo '?')), $HEXFLOW_NATS_SERVER ($("$HEXFLOW_NATS_SERVER" --version))"
exec node --test --test-concurrency=1 "$@" tests/topology/
