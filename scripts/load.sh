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
# Servers alternate, ROUNDS rounds each. Per round it prints each server's requests/s and its
# CPU time per request (user + system time of the server process during the run, divided by the
# requests wrk counted), and at the end the median ratio of each. Requests/s moves with whatever
# else the machine does; CPU time per request is the steadier figure of a server's own cost.
# Usage: bash scripts/load.sh
#   (env: ROUNDS=3 DURATION=5s CONNECTIONS=32 TS_CONNECTIONS=128 PIN=0|1)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
TS_CONNECTIONS=${TS_CONNECTIONS:-128}
BASE_PORT=${BASE_PORT:-18080}
HOST=127.0.0.1
HZ=$(getconf CLK_TCK)
# With PIN=1 the servers run on core 0 and wrk on core 1 (taskset). Off by default: it did not
# steady the hello-world figures here, and it puts both of two-services' servers on one core.
PIN=${PIN:-0}
SERVER=""
WRK=""
if [ "$PIN" = 1 ]; then
    SERVER="taskset -c 0"
    WRK="taskset -c 1"
fi

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

$SERVER "$BIN/load-servers" plain "$PLAIN_PORT" >/dev/null &
PLAIN_PID=$!
$SERVER "$BIN/load-servers" contextvars "$CV_PORT" >/dev/null &
CV_PID=$!
$SERVER "$BIN/two-services" "$TS_ON_EDGE" "$TS_ON_BILLING" >/dev/null 2>&1 &
TS_ON_PID=$!
$SERVER "$BIN/two-services" --no-propagation "$TS_OFF_EDGE" "$TS_OFF_BILLING" >/dev/null 2>&1 &
TS_OFF_PID=$!
PIDS+=("$PLAIN_PID" "$CV_PID" "$TS_ON_PID" "$TS_OFF_PID")
for port in "$PLAIN_PORT" "$CV_PORT" "$TS_ON_EDGE" "$TS_ON_BILLING" "$TS_OFF_EDGE" "$TS_OFF_BILLING"; do
    wait_port "$port"
done

# cpu_ticks PID...: user + system CPU time of the processes (all their threads), in clock ticks.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        # Past the command name (which may hold spaces), utime and stime are the 12th and 13th.
        total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

# measure URL CONNECTIONS DURATION PIDS [HEADER]: "REQUESTS/S CPU-µs-PER-REQUEST" of one wrk run,
# the CPU time being that of the server processes PIDS (comma-separated) during the run. Fails on
# any non-2xx response or socket error.
measure() {
    local url=$1 conns=$2 duration=$3 pids=${4//,/ } out before after
    local wrk_args=(-t1 -c"$conns" -d"$duration")
    if [ $# -ge 5 ]; then wrk_args+=(-H "$5"); fi
    # shellcheck disable=SC2086 # PIDS is a list
    before=$(cpu_ticks $pids)
    out=$($WRK wrk "${wrk_args[@]}" "$url")
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk reported errors against $url:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk -v ticks=$((after - before)) -v hz="$HZ" '
        / requests in / { requests = $1 }
        /^Requests\/sec:/ { rps = $2 }
        END { printf "%s %.3f\n", rps, ticks / hz * 1e6 / requests }' <<<"$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# compare TITLE BASELINE_NAME BASELINE_URL BASELINE_PIDS NAME URL PIDS CONNECTIONS [HEADER]
compare() {
    local title=$1 base_name=$2 base_url=$3 base_pids=$4 name=$5 url=$6 pids=$7 conns=$8
    local header=()
    if [ $# -ge 9 ]; then header=("$9"); fi
    echo
    echo "== $title (wrk -t1 -c$conns -d$DURATION${header:+ -H '${header[0]}'}, loopback)"
    # warm-up: connections, allocator, page cache
    measure "$base_url" "$conns" 1s "$base_pids" "${header[@]}" >/dev/null
    measure "$url" "$conns" 1s "$pids" "${header[@]}" >/dev/null
    printf '| round | %s req/s | %s req/s | ratio | %s CPU/request | %s CPU/request | ratio |\n' \
        "$base_name" "$name" "$base_name" "$name"
    printf '|---:|---:|---:|---:|---:|---:|---:|\n'
    local rps_ratios=() cpu_ratios=()
    for round in $(seq "$ROUNDS"); do
        local a b a_rps a_cpu b_rps b_cpu rps_ratio cpu_ratio
        a=$(measure "$base_url" "$conns" "$DURATION" "$base_pids" "${header[@]}")
        b=$(measure "$url" "$conns" "$DURATION" "$pids" "${header[@]}")
        read -r a_rps a_cpu <<<"$a"
        read -r b_rps b_cpu <<<"$b"
        rps_ratio=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.4f", b / a }')
        cpu_ratio=$(awk -v a="$a_cpu" -v b="$b_cpu" 'BEGIN { printf "%.4f", b / a }')
        rps_ratios+=("$rps_ratio")
        cpu_ratios+=("$cpu_ratio")
        printf '| %d | %s | %s | %s | %s µs | %s µs | %s |\n' \
            "$round" "$a_rps" "$b_rps" "$rps_ratio" "$a_cpu" "$b_cpu" "$cpu_ratio"
    done
    local mr mc
    mr=$(printf '%s\n' "${rps_ratios[@]}" | median)
    mc=$(printf '%s\n' "${cpu_ratios[@]}" | median)
    awk -v r="$mr" -v c="$mc" 'BEGIN {
        printf "median requests/s ratio %.4f (%.2f%% fewer); median CPU-per-request ratio %.4f (%.2f%% more)\n",
            r, (1 - r) * 100, c, (c - 1) * 100 }'
}

echo "machine: $(nproc) cores; $(uname -sr)"
compare "hello-world, one worker thread" \
    plain "http://$HOST:$PLAIN_PORT/" "$PLAIN_PID" \
    contextvars "http://$HOST:$CV_PORT/" "$CV_PID" "$CONNECTIONS"
compare "two services, edge -> billing" \
    "no propagation" "http://$HOST:$TS_OFF_EDGE/" "$TS_OFF_PID" \
    propagation "http://$HOST:$TS_ON_EDGE/" "$TS_ON_PID" "$TS_CONNECTIONS" "x-tenant: acme1"
