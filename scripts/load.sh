#!/usr/bin/env bash
# Load test with a real HTTP load generator (wrk), loopback only (issues 12 and 13).
#
# 1. Axum hello-worlds with one Tokio worker thread each (examples/load-servers): `plain`
#    (no contextvars) and `contextvars` (ContextLayer, a `set` in the middleware, 5 reads and a
#    `task::spawn` in the handler; the layer and the middleware in one `Router::layer` call, as
#    `plain`'s middleware), then `plain` against `contextvars-two-layers` (the same with
#    ContextLayer added by a second `Router::layer` call, which axum boxes per request).
# 2. Calibration (`busy`): `plain` against `plain-busy`, the same server spinning ~0.1 µs more
#    per request (about what the crate adds in process): what that much CPU costs here.
# 3. Control (`control`): two identical `plain` servers, measured as the others: the noise.
# 4. Tokio's primitive (`task-local`): `plain` against `task-local`, the `contextvars`
#    server's work done with `tokio::task_local!` (the request id as an `Arc<String>`, cloned
#    for each of the 5 reads and for the child, which gets a scope of its own).
#    `over-task-local`: `task-local` against `contextvars`, both loaded at once: what the crate
#    costs over Tokio's primitive doing the same work.
# 5. The two-service example (examples/two-services), edge -> billing over loopback, with the
#    propagation layers (PropagateLayer on edge's client, ContextLayer::extract on billing) and
#    without them (`--no-propagation`). wrk sends `x-tenant: acme1`: its baggage header,
#    `tenant=acme1`, has the same length mod 3 as no header at all, so billing's simulated
#    work sleeps the same 1 ms in both.
#
# METHOD=together (the default): in each of ROUNDS rounds, the two servers of a comparison are
# loaded at the same time, each by its own wrk, so that whatever else the machine does in a
# round slows both alike. Each has about half the CPU, so its requests/s are about half, and
# their ratio is the inverse of the ratio of CPU time per request. METHOD=abba: one after the
# other (in odd rounds the baseline first, in even rounds the other; an even ROUNDS balances
# the order). On this 2-core machine two identical servers' ratio spread with a standard
# deviation of 1.3-2.7 % per round together, 11 % one after the other (BENCHMARKS.md).
# RESTART=round (the default): every round loads servers started for it; RESTART=never: the
# same two servers for all the rounds of a comparison (see `compare`).
#
# Per round it prints each server's requests/s and its CPU time per request (user + system
# time of the server process during the run, divided by the requests wrk counted), user and
# system together and user alone, and at the end the medians, with a 95 % interval for the
# median ratio of requests/s (`median_interval`). The extra user CPU time per
# request is the closest figure to the crate's own cost (it makes no system calls), with one
# caveat: unless the kernel accounts CPU time precisely, it splits user from system time by
# sampling at each timer tick, so the user share alone can be noisier than the total.
# scripts/instructions.sh counts the same servers' instructions per request instead, which the
# machine's noise does not move.
# Needs bash >= 4.4. A full run with the defaults takes about 15 minutes.
# Usage: bash scripts/load.sh
#   (env: ROUNDS=20 DURATION=5s CONNECTIONS=32 TS_CONNECTIONS=128 PIN=0|1 METHOD=together|abba
#    RESTART=round|never BASE_PORT=18080 (and the three ports after it)
#    SUITES="control busy hello task-local over-task-local two-layers two-services": the
#    comparisons to run, in order)
set -euo pipefail
shopt -s inherit_errexit

ROUNDS=${ROUNDS:-20}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
TS_CONNECTIONS=${TS_CONNECTIONS:-128}
BASE_PORT=${BASE_PORT:-18080}
HOST=127.0.0.1
HZ=$(getconf CLK_TCK)
# With PIN=1 the servers run on core 0 and wrk on core 1 (taskset). Off by default: it did not
# steady the hello-world figures here, and it puts both of two-services' servers on one core.
PIN=${PIN:-0}
METHOD=${METHOD:-together}
RESTART=${RESTART:-round}
case $RESTART in
round | never) ;;
*)
    echo "unknown RESTART '$RESTART' (round, never)" >&2
    exit 1
    ;;
esac
case $METHOD in
together | abba) ;;
*)
    echo "unknown METHOD '$METHOD' (together, abba)" >&2
    exit 1
    ;;
esac
SUITES=${SUITES:-control busy hello task-local over-task-local two-layers two-services}
for suite in $SUITES; do
    case $suite in
    control | busy | hello | task-local | over-task-local | two-layers | two-services) ;;
    *)
        echo "unknown suite '$suite' in SUITES (control, busy, hello, task-local, over-task-local, two-layers, two-services)" >&2
        exit 1
        ;;
    esac
done
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

# One build per package, each with only the features it asks for, as a service is built: built
# together, feature unification gives load-servers the crate's `tracing` and `opentelemetry`
# code and Tokio's timers, and the compiler inlines the request path differently (~190 more
# instructions per request in the `contextvars` server, BENCHMARKS.md).
cargo build --release -p load-servers
cargo build --release -p two-services
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET_DIR/release"

# The servers running, for `cleanup`.
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

# start SERVER PORT: starts SERVER (a load-servers mode, `propagation` or `no-propagation` for
# the two-service example, which also takes PORT + 1) listening on PORT, waits until it
# accepts connections, and sets STARTED to "PID URL".
STARTED=""
start() {
    local server=$1 port=$2
    case $server in
    propagation)
        $SERVER "$BIN/two-services" "$port" $((port + 1)) >/dev/null 2>&1 &
        ;;
    no-propagation)
        $SERVER "$BIN/two-services" --no-propagation "$port" $((port + 1)) >/dev/null 2>&1 &
        ;;
    *)
        $SERVER "$BIN/load-servers" "$server" "$port" >/dev/null &
        ;;
    esac
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    if [ "$server" = propagation ] || [ "$server" = no-propagation ]; then
        wait_port $((port + 1))
    fi
    STARTED="$pid http://$HOST:$port/"
}

# stop PID: ends a server started by `start` (and forgets it: its PID may be reused).
stop() {
    kill "$1"
    wait "$1" 2>/dev/null || true
    local running=() pid
    for pid in "${PIDS[@]}"; do
        if [ "$pid" != "$1" ]; then running+=("$pid"); fi
    done
    PIDS=("${running[@]}")
}

# cpu_ticks PID...: "USER SYSTEM" CPU time of the processes (all their threads), in clock ticks.
cpu_ticks() {
    local user=0 system=0 pid u s
    for pid in "$@"; do
        if [ ! -r "/proc/$pid/stat" ]; then
            echo "server process $pid has exited" >&2
            exit 1
        fi
        # Past the command name (which may hold spaces), utime and stime are the 12th and 13th.
        read -r u s < <(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12, $13 }')
        user=$((user + u))
        system=$((system + s))
    done
    echo "$user $system"
}

# summarize URL WRK_OUTPUT USER_TICKS SYSTEM_TICKS: "REQUESTS/S CPU-µs USER-CPU-µs" of one wrk
# run, the CPU times per request being the server's during the run: user + system, and user
# alone. Fails on any non-2xx response or socket error.
summarize() {
    local url=$1 out=$2 user=$3 sys=$4
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk reported errors against $url:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk -v user="$user" -v sys="$sys" -v hz="$HZ" '
        / requests in / { requests = $1 }
        /^Requests\/sec:/ { rps = $2 }
        END {
            if (!requests) {
                print "wrk counted no requests" > "/dev/stderr"
                exit 1
            }
            us = 1e6 / hz / requests
            printf "%s %.3f %.3f\n", rps, (user + sys) * us, user * us
        }' <<<"$out"
}

# measure URL PID CONNECTIONS DURATION [HEADER]: `summarize` of one wrk run against URL, with
# the CPU time of the server process PID.
measure() {
    local url=$1 pid=$2 conns=$3 duration=$4 out ticks user0 system0 user1 system1
    local wrk_args=(-t1 -c"$conns" -d"$duration")
    if [ $# -ge 5 ]; then wrk_args+=(-H "$5"); fi
    ticks=$(cpu_ticks "$pid")
    read -r user0 system0 <<<"$ticks"
    out=$($WRK wrk "${wrk_args[@]}" "$url")
    ticks=$(cpu_ticks "$pid")
    read -r user1 system1 <<<"$ticks"
    summarize "$url" "$out" $((user1 - user0)) $((system1 - system0))
}

# measure_together URL_A PID_A URL_B PID_B CONNECTIONS DURATION [HEADER]: two lines, the
# `summarize` of A and of B, loaded at the same time by two wrk processes (METHOD=together):
# whatever else the machine does then slows both alike. A's wrk starts first.
measure_together() {
    local url_a=$1 pid_a=$2 url_b=$3 pid_b=$4 conns=$5 duration=$6
    local wrk_args=(-t1 -c"$conns" -d"$duration")
    if [ $# -ge 7 ]; then wrk_args+=(-H "$7"); fi
    local out_a out_b file_a wrk_a ticks ua0 sa0 ub0 sb0 ua1 sa1 ub1 sb1
    file_a=$(mktemp)
    ticks=$(cpu_ticks "$pid_a")
    read -r ua0 sa0 <<<"$ticks"
    ticks=$(cpu_ticks "$pid_b")
    read -r ub0 sb0 <<<"$ticks"
    $WRK wrk "${wrk_args[@]}" "$url_a" >"$file_a" &
    wrk_a=$!
    out_b=$($WRK wrk "${wrk_args[@]}" "$url_b")
    wait "$wrk_a"
    ticks=$(cpu_ticks "$pid_a")
    read -r ua1 sa1 <<<"$ticks"
    ticks=$(cpu_ticks "$pid_b")
    read -r ub1 sb1 <<<"$ticks"
    out_a=$(<"$file_a")
    rm -f "$file_a"
    summarize "$url_a" "$out_a" $((ua1 - ua0)) $((sa1 - sa0))
    summarize "$url_b" "$out_b" $((ub1 - ub0)) $((sb1 - sb0))
}

# The middle value, or the mean of the two middle values of an even count.
median() {
    sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'
}

# "LOW HIGH": a 95 % interval of the median of the values, from their order statistics: the
# k-th smallest and the k-th largest, k the largest for which at most 2.5 % of a Binomial(n, 1/2)
# lies below k (the 6th of 20). It holds for independent rounds of any distribution; with fewer
# than 6 values it is the smallest and the largest.
median_interval() {
    sort -g | awk '{ v[NR] = $1 }
        END {
            n = NR; k = 0; term = 2 ^ -n; below = term
            while (below <= 0.025) { term = term * (n - k) / (k + 1); k++; below += term }
            if (k < 1) k = 1
            print v[k], v[n + 1 - k]
        }'
}

# compare TITLE BASELINE_NAME BASELINE_SERVER NAME SERVER CONNECTIONS [HEADER]: loads the two
# servers (see `start`) for ROUNDS rounds of DURATION each.
#
# Per round: requests/s of each and their ratio; CPU time per request (user + system) of each;
# and the extra user CPU time per request of NAME (the crate runs in user space; the kernel's
# share per request moves with how wrk's connections happen to batch), also as a percentage of
# the baseline's whole CPU time per request. At the end the medians, and an interval for the
# median ratio of requests/s.
#
# RESTART=round (the default): each round has two servers of its own, started for it (which of
# the two starts first alternates by round) and warmed up for 1 s, so that the rounds are
# independent and the interval holds: whatever might make one process a little faster than an
# identical one for its whole life (where its memory and threads landed) is drawn afresh each
# round instead of weighing on all of them. RESTART=never starts the two once, for all the
# rounds of the comparison (as the runs before the eighth session did, when two identical
# servers measured from 0.76 % slower to 2.12 % faster over ten runs, BENCHMARKS.md).
compare() {
    local title=$1 base_name=$2 base_server=$3 name=$4 server=$5 conns=$6
    local header=()
    if [ $# -ge 7 ]; then header=("$7"); fi
    # two-services listens on two ports
    local base_port=$BASE_PORT port=$((BASE_PORT + 2))
    echo
    echo "== $title (wrk -t1 -c$conns -d$DURATION${header:+ -H '${header[0]}'}, loopback, $METHOD, RESTART=$RESTART)"
    printf '| round | %s req/s | %s req/s | ratio | %s CPU/req | %s CPU/req | %s user CPU/req | %s user CPU/req | extra user CPU/req |\n' \
        "$base_name" "$name" "$base_name" "$name" "$base_name" "$name"
    printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    local rps_ratios=() cpu_ratios=() extras=() shares=()
    local base_pid="" base_url="" pid="" url=""
    for round in $(seq "$ROUNDS"); do
        if [ -z "$base_pid" ] || [ "$RESTART" = round ]; then
            if [ -n "$base_pid" ]; then
                stop "$base_pid"
                stop "$pid"
            fi
            if ((round % 2)); then
                start "$base_server" "$base_port"
                read -r base_pid base_url <<<"$STARTED"
                start "$server" "$port"
                read -r pid url <<<"$STARTED"
            else
                start "$server" "$port"
                read -r pid url <<<"$STARTED"
                start "$base_server" "$base_port"
                read -r base_pid base_url <<<"$STARTED"
            fi
            # warm-up: connections, allocator, page cache
            if [ "$METHOD" = together ]; then
                measure_together "$base_url" "$base_pid" "$url" "$pid" "$conns" 1s "${header[@]}" >/dev/null
            else
                measure "$base_url" "$base_pid" "$conns" 1s "${header[@]}" >/dev/null
                measure "$url" "$pid" "$conns" 1s "${header[@]}" >/dev/null
            fi
        fi
        local a b a_rps a_cpu a_user b_rps b_cpu b_user
        if [ "$METHOD" = together ]; then
            # Both at once; which wrk starts first alternates by round.
            local pair
            if ((round % 2)); then
                pair=$(measure_together "$base_url" "$base_pid" "$url" "$pid" "$conns" "$DURATION" "${header[@]}")
                a=${pair%%$'\n'*}
                b=${pair#*$'\n'}
            else
                pair=$(measure_together "$url" "$pid" "$base_url" "$base_pid" "$conns" "$DURATION" "${header[@]}")
                b=${pair%%$'\n'*}
                a=${pair#*$'\n'}
            fi
        # ABBA: which server goes first alternates by round, so that neither always runs
        # second (a control of two identical servers measured the second ~1 % slower).
        elif ((round % 2)); then
            a=$(measure "$base_url" "$base_pid" "$conns" "$DURATION" "${header[@]}")
            b=$(measure "$url" "$pid" "$conns" "$DURATION" "${header[@]}")
        else
            b=$(measure "$url" "$pid" "$conns" "$DURATION" "${header[@]}")
            a=$(measure "$base_url" "$base_pid" "$conns" "$DURATION" "${header[@]}")
        fi
        read -r a_rps a_cpu a_user <<<"$a"
        read -r b_rps b_cpu b_user <<<"$b"
        rps_ratios+=("$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.4f", b / a }')")
        cpu_ratios+=("$(awk -v a="$a_cpu" -v b="$b_cpu" 'BEGIN { printf "%.4f", b / a }')")
        extras+=("$(awk -v a="$a_user" -v b="$b_user" 'BEGIN { printf "%.3f", b - a }')")
        shares+=("$(awk -v a="$a_user" -v b="$b_user" -v c="$a_cpu" 'BEGIN { printf "%.2f", (b - a) / c * 100 }')")
        printf '| %d | %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s µs (%s %%) |\n' \
            "$round" "$a_rps" "$b_rps" "${rps_ratios[-1]}" "$a_cpu" "$b_cpu" "$a_user" "$b_user" \
            "${extras[-1]}" "${shares[-1]}"
    done
    stop "$base_pid"
    stop "$pid"
    local mr mc me ms low high
    mr=$(printf '%s\n' "${rps_ratios[@]}" | median)
    read -r low high < <(printf '%s\n' "${rps_ratios[@]}" | median_interval)
    mc=$(printf '%s\n' "${cpu_ratios[@]}" | median)
    me=$(printf '%s\n' "${extras[@]}" | median)
    ms=$(printf '%s\n' "${shares[@]}" | median)
    awk -v r="$mr" -v lo="$low" -v hi="$high" -v c="$mc" -v e="$me" -v s="$ms" '
        function change(x, up, down) { return x >= 0 ? sprintf("%.2f%% %s", x, up) : sprintf("%.2f%% %s", -x, down) }
        BEGIN {
            printf "medians: requests/s ratio %.4f (%s; 95%% interval of the median %.4f to %.4f); CPU per request ratio %.4f (%s); extra user CPU %.3f µs per request (%.2f%% of the baseline'"'"'s CPU per request)\n",
                r, change((1 - r) * 100, "fewer", "more"), lo, hi, c, change((c - 1) * 100, "more", "less"), e, s }'
}

echo "machine: $(nproc) cores; $(uname -sr)"
for suite in $SUITES; do
    case $suite in
    hello)
        compare "hello-world, one worker thread" \
            plain plain contextvars contextvars "$CONNECTIONS"
        ;;
    two-layers)
        compare "hello-world, one worker thread, ContextLayer in a Router::layer call of its own" \
            plain plain contextvars-two-layers contextvars-two-layers "$CONNECTIONS"
        ;;
    control)
        compare "control: two plain hello-worlds, one worker thread each" \
            plain plain "plain again" plain "$CONNECTIONS"
        ;;
    busy)
        compare "calibration: plain against plain with ~0.1 µs of extra CPU per request" \
            plain plain plain-busy plain-busy "$CONNECTIONS"
        ;;
    task-local)
        compare "tokio::task_local: plain against the same work done with Tokio's primitive" \
            plain plain task-local task-local "$CONNECTIONS"
        ;;
    over-task-local)
        compare "contextvars over tokio::task_local: the same work, with each" \
            task-local task-local contextvars contextvars "$CONNECTIONS"
        ;;
    two-services)
        compare "two services, edge -> billing" \
            "no propagation" no-propagation propagation propagation "$TS_CONNECTIONS" "x-tenant: acme1"
        ;;
    esac
done
