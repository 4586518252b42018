#!/usr/bin/env bash
# bench/run.sh: the benchmark, as `make bench` runs it (bench/README.md says what and why).
#
# Builds the demo server (-O2, waiting the way the Makefile builds it), the load generator and
# the bare TCP relay; runs every scenario with the server (or relay) pinned to core 0 and the
# generator to core 1; prints a markdown table and writes bench/results/latest.md,
# bench/results/fanout.svg and the raw figures (bench/results/raw.txt). About 3 minutes.
#
# Environment: BENCH_SECONDS (measured seconds per fanout run, default 3), BENCH_REPEATS (3),
# BENCH_QUICK=1 (a fast smoke run: 1 repeat, short windows, 2,000 idle connections),
# PYTHON (python3).
set -u
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SECONDS_PER_RUN=${BENCH_SECONDS:-3}
REPEATS=${BENCH_REPEATS:-3}
QUICK=${BENCH_QUICK:-0}
IDLE_BIG=10000
IDLE_WINDOW=5
RETRY_BUDGET=75   # seconds of re-runs allowed for runs the machine's other load disturbed
WAIT_LIMIT=0.10   # a run is disturbed when server or generator waited this share of it for a CPU
if [ "$QUICK" = 1 ]; then
    SECONDS_PER_RUN=1; REPEATS=1; IDLE_BIG=2000; IDLE_WINDOW=2; RETRY_BUDGET=0
fi

OUT=bench/results
LOGS=$OUT/logs
RAW=$OUT/raw.txt
mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*.log
: > "$RAW"
started=$(date +%s)

die() { echo "bench: $*" >&2; exit 1; }
command -v "$PYTHON" >/dev/null 2>&1 || die "python3 is needed for the report (set PYTHON)"

# --- build --------------------------------------------------------------------------------
make -s build/bench/demo_server build/bench/loadgen build/bench/tcp_relay || die "build failed"
# what was built: the commit, and whether the header or the demo server differ from it
BUILT_FROM="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- videoroom_signal.h \
    examples/demo_server.c 2>/dev/null || echo ' + uncommitted changes') (header sha1 $(sha1sum videoroom_signal.h | cut -c1-12))"

# --- limits and cores ---------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
if [ "$FD_LIMIT" -lt $((IDLE_BIG + 600)) ]; then
    IDLE_BIG=$((FD_LIMIT - 600))
    echo "bench: the descriptor limit ($FD_LIMIT) allows $IDLE_BIG idle connections, not 10,000" >&2
fi
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    PIN_TARGET="taskset -c 0"; PIN_GEN="taskset -c 1"; PINNED=yes
else
    PIN_TARGET=""; PIN_GEN=""; PINNED=no
    echo "bench: fewer than 2 cores (or no taskset): server and generator share the CPU" >&2
fi

# Background load: the share of the CPUs busy over one second before anything starts.
background_load() {
    "$PYTHON" - <<'EOF'
import time
def busy():
    f = [int(x) for x in open('/proc/stat').readline().split()[1:9]]
    return sum(f) - f[3] - f[4], sum(f)
b0, t0 = busy(); time.sleep(1); b1, t1 = busy()
print(f"{(b1 - b0) / max(1, t1 - t0):.3f}")
EOF
}
BACKGROUND=$(background_load)

# --- one run ------------------------------------------------------------------------------
# Listening ports below the ephemeral range, so that no client socket of an earlier run (or of
# this one: 10,000 of them) holds the port a new server wants.
PORT=$(awk '{ p = $1 - 400; if (p < 2000) p = ($2 < 64000 ? $2 + 100 : 20000); print p }' \
       /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 20000)
PID=
WAITS_WITH=unknown
start_target() { # server|relay: starts it on a fresh port, waits until it listens
    local attempt i
    for attempt in 1 2 3 4 5; do
        PORT=$((PORT + 1))
        if [ "$1" = server ]; then
            $PIN_TARGET build/bench/demo_server --port "$PORT" --max-connections 12000 --max-rooms 12000 \
                --max-peers 32 >"$LOGS/server-$PORT.log" 2>&1 &
        else
            $PIN_TARGET build/bench/tcp_relay --port "$PORT" >"$LOGS/relay-$PORT.log" 2>&1 &
        fi
        PID=$!
        for i in $(seq 1 100); do
            kill -0 "$PID" 2>/dev/null || break # it exited: the port was taken
            if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
            sleep 0.05
        done
        kill -0 "$PID" 2>/dev/null && break
        wait "$PID" 2>/dev/null
        echo "bench: $1 could not listen on port $PORT; trying the next one" >&2
    done
    if [ "$1" = server ]; then # how the server waits: an epoll instance among its descriptors?
        if ls -l "/proc/$PID/fd" 2>/dev/null | grep -q eventpoll; then WAITS_WITH=epoll; else WAITS_WITH="poll()"; fi
    fi
}
stop_target() {
    kill "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    PID=
}
field() { # field NAME LINE
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1
}
disturbed() { # LINE: 1 when the server or the generator waited more than WAIT_LIMIT for a CPU
    "$PYTHON" -c "import sys; w=[float(x) for x in sys.argv[1:] if x not in ('', '-1.000')]; print(1 if any(x > $WAIT_LIMIT for x in w) else 0)" \
        "$(field server_wait "$1")" "$(field loadgen_wait "$1")"
}
retry_spent=0
# run LABEL server|relay LOADGEN-ARGS...: one measurement (re-run when visibly disturbed)
run() {
    local label=$1 target=$2 raw="" line best="" try t0
    shift 2
    [ "$target" = relay ] && raw=--raw
    for try in 1 2 3; do
        t0=$(date +%s)
        start_target "$target"
        line=$($PIN_GEN build/bench/loadgen --port "$PORT" --server-pid "$PID" $raw "$@" 2>>"$LOGS/loadgen.log" | grep '^RESULT' | tail -1)
        stop_target
        [ $try -gt 1 ] && retry_spent=$((retry_spent + $(date +%s) - t0))
        if [ -z "$line" ]; then
            line="RESULT failed=1 errors=1"
            echo "bench: $label ($target) failed; see $LOGS/loadgen.log" >&2
        fi
        line="label=$label try=$try ${line#RESULT }"
        if [ -z "$best" ] || [ "$(disturbed "$best")" = 1 ]; then best=$line; fi
        if [ "$(disturbed "$line")" = 0 ] || [ "$(field failed "$line")" = 1 ] || [ $retry_spent -ge $RETRY_BUDGET ]; then break; fi
        echo "bench: $label ($target): the machine was busy with something else; measuring again" >&2
    done
    echo "$best" >> "$RAW"
    printf '  %-34s %s\n' "$label ($target)" "$(summary "$best")" >&2
}
summary() {
    local d
    d=$(field deliveries_per_s "$1")
    if [ "$(field mode "$1")" = idle ]; then
        echo "RSS +$(field rss_per_conn_bytes "$1") B per connection, CPU $(field cpu_ms_per_s "$1") ms/s, $(field heartbeats_per_s "$1") heartbeats/s"
    elif [ "$(field mode "$1")" = storm ]; then
        echo "$(field joins_per_s "$1") joins/s, p99 $(field p99_ms "$1") ms"
    elif [ -n "$(field p99_us "$1")" ] && [ "$(field mode "$1")" = latency ]; then
        echo "p50 $(field p50_us "$1") us, p99 $(field p99_us "$1") us, p99.9 $(field p999_us "$1") us"
    elif [ -n "$d" ]; then
        echo "$d deliveries/s (server waited $(field server_wait "$1"), generator $(field loadgen_wait "$1"))"
    else
        echo "$1" | cut -c1-160
    fi
}

# --- scenarios ----------------------------------------------------------------------------
A="--rooms 50 --peers 4 --size 200 --window 16"
B="--rooms 10 --peers 16 --size 2000 --window 4"
# B with 32 events in flight per peer: each receiver can be owed 15 x 32 events (about 1 MB,
# four times send_queue_size), so the server's flow control, not its queue, carries the burst
B32="--rooms 10 --peers 16 --size 2000 --window 32"
FAN="--mode fanout --seconds $SECONDS_PER_RUN --warmup 0.5"

echo "bench: fanout, $REPEATS runs each, server and bare TCP relay alternating" >&2
for rep in $(seq 1 "$REPEATS"); do
    run fanout-A server $FAN $A
    run fanout-A relay $FAN $A
    run fanout-B server $FAN $B
    run fanout-B relay $FAN $B
    run fanout-B32 server $FAN $B32
    run fanout-B32 relay $FAN $B32
done

echo "bench: fanout beside $IDLE_BIG idle connections" >&2
for rep in $(seq 1 "$REPEATS"); do
    run fanout-A-idle server $FAN $A --idle "$IDLE_BIG"
done

echo "bench: latency at half (and a tenth of) the server's peak; server and relay at the same offered rate" >&2
for s in A B; do
    peak=$("$PYTHON" bench/report.py --median "$RAW" "fanout-$s" server deliveries_per_s)
    args=$A; [ $s = B ] && args=$B
    for share in 0.5 0.1; do
        rate=$("$PYTHON" -c "print(int(max(1000.0, float('${peak:-0}') * $share)))")
        label="latency-$s"; [ "$share" = 0.1 ] && label="latency-$s-light"
        # the fanout windows: at these rates they never bind unless the target falls behind, and
        # then sends are skipped (and counted) instead of piling up without bound
        run "$label" server --mode latency --seconds "$SECONDS_PER_RUN" --warmup 0.5 $args --rate "$rate"
        run "$label" relay --mode latency --seconds "$SECONDS_PER_RUN" --warmup 0.5 $args --rate "$rate"
    done
done

echo "bench: idle connections" >&2
run idle-1000 server --mode idle --idle 1000 --heartbeat 5 --idle-window "$IDLE_WINDOW"
run "idle-$IDLE_BIG" server --mode idle --idle "$IDLE_BIG" --heartbeat 5 --idle-window "$IDLE_WINDOW"

echo "bench: join storm" >&2
for rep in $(seq 1 "$REPEATS"); do
    run storm server --mode storm --storm 2000 --concurrency 200
done

# --- report -------------------------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
{
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "kernel=$(uname -sr)"
    echo "memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "congestion_control=$(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)"
    echo "compiler=$(${CC:-cc} --version 2>/dev/null | head -1)"
    echo "commit=$BUILT_FROM"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "pinned=$PINNED"
    echo "waits_with=$WAITS_WITH"
    echo "fd_limit=$FD_LIMIT"
    echo "background_load=$BACKGROUND"
    echo "elapsed_s=$elapsed"
    echo "seconds_per_run=$SECONDS_PER_RUN"
    echo "repeats=$REPEATS"
    echo "idle_big=$IDLE_BIG"
} > "$OUT/machine.txt"
"$PYTHON" bench/report.py --report "$RAW" "$OUT/machine.txt" "$OUT/latest.md" "$OUT/fanout.svg"
