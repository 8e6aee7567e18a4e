#!/usr/bin/env bash
# Starts a throw-away etcd cluster on loopback for trying the etcd backend by hand:
#   hack/etcd-up.sh [MEMBERS]        # default 1; prints the --etcd-servers value, Ctrl-C stops it
# Data and logs go to a temporary directory, removed on exit. Needs `etcd` (hack/install-tools.sh --etcd).
#   ferrokube server --data-dir /tmp/fk --etcd-servers="$(cat /tmp/etcd-up.endpoints)"
set -euo pipefail
MEMBERS="${1:-1}"
command -v etcd >/dev/null || { echo "etcd-up: no etcd (hack/install-tools.sh --etcd)" >&2; exit 1; }
DIR="$(mktemp -d /tmp/etcd-up.XXXXXX)"
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
BASE=$((23790 + RANDOM % 1000 * 4))
CLUSTER=""
for i in $(seq 0 $((MEMBERS - 1))); do
    CLUSTER+="${CLUSTER:+,}m$i=http://127.0.0.1:$((BASE + 2 * i + 1))"
done
ENDPOINTS=""
for i in $(seq 0 $((MEMBERS - 1))); do
    client="http://127.0.0.1:$((BASE + 2 * i))"
    ENDPOINTS+="${ENDPOINTS:+,}$client"
    etcd --name "m$i" --data-dir "$DIR/m$i" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "http://127.0.0.1:$((BASE + 2 * i + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 2 * i + 1))" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new >"$DIR/m$i.log" 2>&1 &
    PIDS+=($!)
done
echo "$ENDPOINTS" >/tmp/etcd-up.endpoints
echo "etcd ($MEMBERS member(s)) at --etcd-servers=$ENDPOINTS (logs in $DIR; Ctrl-C stops)"
wait
