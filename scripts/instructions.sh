#!/usr/bin/env bash
# Instructions per request of the load test's servers (examples/load-servers) while they serve
# real HTTP requests: each server runs under valgrind's callgrind, wrk loads it over loopback,
# and the process's instructions (all threads, user space) are divided by the requests wrk
# counted. Unlike requests/s (scripts/load.sh) the count does not move with whatever else the
# machine does: `plain` and `contextvars` repeat to within ~30 instructions from run to run, so
# it shows what a change to the request path does without the noise. (glibc's `malloc` can
# add a level: `task-local` counts either ~440 or ~630 over `plain`, BENCHMARKS.md.) The
# server's start-up is amortised over the requests. About 45 s for the three default servers.
#
# Prints one line per server: its requests, its instructions per request, and the difference
# from the first server named.
# Needs bash >= 4.4, valgrind and wrk (installed from the distribution's packages if missing).
# Usage: bash scripts/instructions.sh [MODE...]   (default: plain task-local contextvars)
#   (env: DURATION=15s CONNECTIONS=32 PORT=18090)
set -euo pipefail
shopt -s inherit_errexit

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18090}
HOST=127.0.0.1
MODES=("$@")
if [ ${#MODES[@]} -eq 0 ]; then MODES=(plain task-local contextvars); fi

cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v valgrind >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update
    $SUDO apt-get install -y "${missing[@]}"
fi

# Built alone, with its own features, as scripts/load.sh builds it.
cargo build --release -p load-servers
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET_DIR/release/load-servers"

OUT=$(mktemp -d)
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

first=""
for mode in "${MODES[@]}"; do
    # `exec` so that PID is valgrind's own process, which writes its profile on SIGTERM.
    bash -c 'exec valgrind --tool=callgrind --callgrind-out-file="$1" "$2" "$3" "$4"' \
        _ "$OUT/$mode.callgrind" "$BIN" "$mode" "$PORT" >/dev/null 2>"$OUT/$mode.err" &
    PID=$!
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then break; fi
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "load-servers $mode exited:" >&2
            grep -v '^==[0-9]*==' "$OUT/$mode.err" >&2 # valgrind's own lines
            exit 1
        fi
        sleep 0.1
    done
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://$HOST:$PORT/")
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk reported errors against load-servers $mode:" >&2
        echo "$out" >&2
        exit 1
    fi
    requests=$(awk '/ requests in / { print $1 }' <<<"$out")
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    total=$(awk '/^summary:/ { print $2 }' "$OUT/$mode.callgrind")
    per=$((total / requests))
    if [ -z "$first" ]; then first=$per; fi
    printf '%-24s %8d requests %8d instructions per request (%+d)\n' \
        "$mode" "$requests" "$per" $((per - first))
done
