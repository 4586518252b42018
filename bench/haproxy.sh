#!/usr/bin/env bash
# bench/haproxy.sh: what HAProxy (examples/cluster/haproxy.cfg) costs per delivery. Fan-out A
# (50 rooms x 4 peers, 200-byte events, 16 in flight per peer: bench/README.md) against one
# demo server directly, and through HAProxy in front of that same server, alternating, REPEATS
# times each. The server runs on core 0; the generator, and HAProxy (one thread), on core 1.
# Reported per run: deliveries/s, and the CPU time per delivery of the server and of HAProxy
# (from /proc/PID/stat over the whole generator run). Then the medians and their ratios.
#
#   bash bench/haproxy.sh          (env: BENCH_SECONDS, default 3; BENCH_REPEATS, default 3)
set -u
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${BENCH_SECONDS:-3}
REPEATS=${BENCH_REPEATS:-3}
FANOUT="--mode fanout --seconds $SECONDS_PER_RUN --warmup 0.5 --rooms 50 --peers 4 --size 200 --window 16"
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || { echo "bench/haproxy.sh: HAProxy is not installed" >&2; exit 1; }
make -s build/bench/demo_server build/bench/loadgen || exit 1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then PIN0="taskset -c 0"; PIN1="taskset -c 1"; else PIN0=""; PIN1=""; fi

# listening ports below the ephemeral range, as bench/run.sh picks them
PORT=$(awk '{ p = $1 - 900; if (p < 2000) p = 20500; print p }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 20500)
SERVER= PROXY=
# (a background job of a script ignores SIGINT: HAProxy is stopped with SIGTERM; the demo
# server, which SIGTERM would drain, with SIGINT, which it catches itself)
cleanup() {
    [ -n "$PROXY" ] && { kill -TERM "$PROXY" 2>/dev/null; wait "$PROXY" 2>/dev/null; }
    [ -n "$SERVER" ] && { kill -INT "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
    SERVER= PROXY=
}
trap cleanup EXIT
wait_port() { # PORT: until something accepts there (5 s at most)
    local i
    for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
TICK=$(getconf CLK_TCK)

# run direct|haproxy PORT: prints "deliveries_per_s server_ns_per_delivery haproxy_ns_per_delivery"
run() {
    local target_port line s0 s1 h0=0 h1=0 total PORT=$2
    $PIN0 build/bench/demo_server --port "$PORT" --max-connections 12000 --max-rooms 12000 >/dev/null 2>&1 &
    SERVER=$!
    wait_port "$PORT" || { echo "bench/haproxy.sh: the server did not start on $PORT" >&2; exit 1; }
    target_port=$PORT
    if [ "$1" = haproxy ]; then
        # the configuration as written; all three server lines name the one server
        VRS_LISTEN="127.0.0.1:$((PORT + 1))" VRS_1="127.0.0.1:$PORT" VRS_2="127.0.0.1:$PORT" VRS_3="127.0.0.1:$PORT" \
            $PIN1 "$HAPROXY" -db -f examples/cluster/haproxy.cfg >/dev/null 2>&1 &
        PROXY=$!
        target_port=$((PORT + 1))
        wait_port "$target_port" || { echo "bench/haproxy.sh: HAProxy did not start" >&2; exit 1; }
        sleep 0.5 # its first health checks
        h0=$(cpu_ticks "$PROXY")
    fi
    s0=$(cpu_ticks "$SERVER")
    line=$($PIN1 build/bench/loadgen --port "$target_port" --server-pid "$SERVER" $FANOUT 2>/dev/null | grep '^RESULT' | tail -1)
    s1=$(cpu_ticks "$SERVER")
    [ -n "$PROXY" ] && h1=$(cpu_ticks "$PROXY")
    cleanup
    total=$(field total_deliveries "$line")
    if [ -z "$line" ] || [ "$(field verified "$line")" != 1 ] || [ -z "$total" ] || [ "$total" = 0 ]; then
        echo "bench/haproxy.sh: the $1 run failed: $line" >&2
        exit 1
    fi
    awk -v d="$(field deliveries_per_s "$line")" -v s="$((s1 - s0))" -v h="$((h1 - h0))" -v n="$total" -v t="$TICK" \
        'BEGIN { printf "%d %.0f %.0f\n", d, s * 1e9 / t / n, h * 1e9 / t / n }'
}

echo "fan-out A, $REPEATS x $SECONDS_PER_RUN s each, direct and through HAProxy alternating (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
direct=() proxied=()
for i in $(seq 1 "$REPEATS"); do
    r=$(run direct $((PORT + 4 * i))) || exit 1
    direct+=("$r"); echo "  direct   deliveries/s, server ns/delivery, haproxy ns/delivery: $r"
    r=$(run haproxy $((PORT + 4 * i + 2))) || exit 1
    proxied+=("$r"); echo "  haproxy  deliveries/s, server ns/delivery, haproxy ns/delivery: $r"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
column() { for r in "${@:2}"; do echo "$r" | cut -d' ' -f"$1"; done | median; }
d_rate=$(column 1 "${direct[@]}"); p_rate=$(column 1 "${proxied[@]}")
d_server=$(column 2 "${direct[@]}"); p_server=$(column 2 "${proxied[@]}"); p_haproxy=$(column 3 "${proxied[@]}")
echo "medians: direct $d_rate deliveries/s (server $d_server ns/delivery); through HAProxy $p_rate deliveries/s" \
     "(server $p_server ns/delivery, HAProxy $p_haproxy ns/delivery)"
awk -v a="$p_rate" -v b="$d_rate" -v h="$p_haproxy" -v s="$d_server" \
    'BEGIN { printf "ratio through HAProxy / direct: %.2f; HAProxy CPU per delivery / server CPU per delivery (direct): %.2f\n", a / b, h / s }'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
