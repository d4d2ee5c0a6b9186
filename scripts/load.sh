#!/usr/bin/env bash
# Load test with a real HTTP load generator (wrk), loopback only (issues 12 and 13).
#
# 1. Two axum hello-worlds with one Tokio worker thread each (examples/load-servers): `plain`
#    (no contextvars) and `contextvars` (ContextLayer, a `set` in the middleware, 5 reads and a
#    `task::spawn` in the handler).
# 2. The two-service example (examples/two-services), edge -> billing over loopback, with the
#    propagation layers (PropagateLayer on edge's client, ContextLayer::extract on billing) and
#    without them (`--no-propagation`). wrk sends `x-tenant: acme1`: its baggage header,
#    `tenant=acme1`, has the same length mod 3 as no header at all, so billing's simulated
#    work sleeps the same 1 ms in both.
#
# Servers alternate, ROUNDS rounds each; prints requests/s per round and the median ratio.
# Usage: bash scripts/load.sh   (env: ROUNDS=3 DURATION=5s CONNECTIONS=32 TS_CONNECTIONS=128)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
TS_CONNECTIONS=${TS_CONNECTIONS:-128}
BASE_PORT=${BASE_PORT:-18080}
HOST=127.0.0.1

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update
    $SUDO apt-get install -y wrk
fi

cargo build --release -p load-servers -p two-services
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET_DIR/release"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listening on $HOST:$1" >&2
    exit 1
}

PLAIN_PORT=$BASE_PORT
CV_PORT=$((BASE_PORT + 1))
TS_ON_EDGE=$((BASE_PORT + 2))
TS_ON_BILLING=$((BASE_PORT + 3))
TS_OFF_EDGE=$((BASE_PORT + 4))
TS_OFF_BILLING=$((BASE_PORT + 5))

"$BIN/load-servers" plain "$PLAIN_PORT" >/dev/null &
PIDS+=($!)
"$BIN/load-servers" contextvars "$CV_PORT" >/dev/null &
PIDS+=($!)
"$BIN/two-services" "$TS_ON_EDGE" "$TS_ON_BILLING" >/dev/null 2>&1 &
PIDS+=($!)
"$BIN/two-services" --no-propagation "$TS_OFF_EDGE" "$TS_OFF_BILLING" >/dev/null 2>&1 &
PIDS+=($!)
for port in "$PLAIN_PORT" "$CV_PORT" "$TS_ON_EDGE" "$TS_ON_BILLING" "$TS_OFF_EDGE" "$TS_OFF_BILLING"; do
    wait_port "$port"
done

# rps URL CONNECTIONS DURATION [HEADER]: wrk's requests/s (fails on any non-2xx or socket error).
rps() {
    local out
    if [ $# -ge 4 ]; then
        out=$(wrk -t1 -c"$2" -d"$3" -H "$4" "$1")
    else
        out=$(wrk -t1 -c"$2" -d"$3" "$1")
    fi
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk reported errors against $1:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# compare TITLE BASELINE_NAME BASELINE_URL NAME URL CONNECTIONS [HEADER]
compare() {
    local title=$1 base_name=$2 base_url=$3 name=$4 url=$5 conns=$6
    local header=()
    if [ $# -ge 7 ]; then header=("$7"); fi
    echo
    echo "== $title (wrk -t1 -c$conns -d$DURATION${header:+ -H '${header[0]}'}, loopback)"
    # warm-up: connections, allocator, page cache
    rps "$base_url" "$conns" 1s "${header[@]}" >/dev/null
    rps "$url" "$conns" 1s "${header[@]}" >/dev/null
    printf '| round | %s req/s | %s req/s | ratio | overhead per request |\n' "$base_name" "$name"
    printf '|---:|---:|---:|---:|---:|\n'
    local ratios=() overheads=()
    for round in $(seq "$ROUNDS"); do
        local a b
        a=$(rps "$base_url" "$conns" "$DURATION" "${header[@]}")
        b=$(rps "$url" "$conns" "$DURATION" "${header[@]}")
        local ratio overhead
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')
        overhead=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", 1e6 / b - 1e6 / a }')
        ratios+=("$ratio")
        overheads+=("$overhead")
        printf '| %d | %s | %s | %s | %s µs |\n' "$round" "$a" "$b" "$ratio" "$overhead"
    done
    local mr mo
    mr=$(printf '%s\n' "${ratios[@]}" | median)
    mo=$(printf '%s\n' "${overheads[@]}" | median)
    awk -v r="$mr" -v o="$mo" 'BEGIN {
        printf "median ratio %.4f: %.2f%% fewer requests/s, %.3f µs more per request\n", r, (1 - r) * 100, o }'
}

echo "machine: $(nproc) cores; $(uname -sr)"
compare "hello-world, one worker thread" plain "http://$HOST:$PLAIN_PORT/" \
    contextvars "http://$HOST:$CV_PORT/" "$CONNECTIONS"
compare "two services, edge -> billing" "no propagation" "http://$HOST:$TS_OFF_EDGE/" \
    propagation "http://$HOST:$TS_ON_EDGE/" "$TS_CONNECTIONS" "x-tenant: acme1"
