#!/usr/bin/env bash
# make demo, serving stage: start the KServe predictor on the demo home, wait until it is ready,
# call it over v2 REST and v2 gRPC with the real CLI client, then stop it with SIGTERM (it drains
# and flushes its prediction log). The demo bars are historical, so the feature-age check is off.
set -euo pipefail
home="$1"
http="${DEMO_HTTP_PORT:-18080}"
grpc="${DEMO_GRPC_PORT:-18081}"
tl=(.venv/bin/tradeloop --home "$home")
"${tl[@]}" serve --engine kserve --http-port "$http" --grpc-port "$grpc" --max-feature-age 0 &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; echo "server stopped"; }
trap stop EXIT INT TERM
ready=""
for _ in $(seq 1 240); do
  if .venv/bin/python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$http/v2/health/ready', timeout=1).status_code != 200)" 2>/dev/null; then
    ready=1; break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "the server exited before it was ready" >&2; exit 1; }
  sleep 0.5
done
[ -n "$ready" ] || { echo "the server was not ready within 120 s" >&2; exit 1; }
echo "== v2 REST =="
"${tl[@]}" predict EURUSD 1h --url "http://127.0.0.1:$http"
echo "== v2 gRPC =="
"${tl[@]}" predict EURUSD 1h --grpc --grpc-url "127.0.0.1:$grpc"
