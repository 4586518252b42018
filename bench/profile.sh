#!/usr/bin/env bash
# bench/profile.sh (`make bench-profile`): where the server's time goes, with perf.
#
#   1. system calls per delivery, server and bare relay, in fanout scenario A (50 x 4 x 200 B),
#      counted by the kernel's syscall tracepoints (perf stat), which barely slow the process,
#      unlike strace;
#   2. system calls per heartbeat with 10,000 idle connections;
#   3. a perf profile (cpu-clock, DWARF call graphs) of the server in scenario A: the functions
#      by their own time and by inclusive time.
# Writes bench/results/profile.md. Needs perf (linux-perf / linux-tools) with access to
# tracepoints (root, or kernel.perf_event_paranoid <= 1 and a readable tracefs).
set -u
cd "$(dirname "$0")/.."
OUT=bench/results
mkdir -p "$OUT/logs"
REPORT=$OUT/profile.md
command -v perf >/dev/null 2>&1 || { echo "bench-profile: perf not found" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIN_TARGET="taskset -c 0"; PIN_GEN="taskset -c 1"
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1 || { PIN_TARGET=""; PIN_GEN=""; }
SYSCALLS=poll,ppoll,epoll_wait,epoll_pwait,epoll_ctl,recvfrom,read,sendmsg,sendto,write,writev,accept,accept4,setsockopt,clock_gettime
EVENTS=$(echo "$SYSCALLS" | tr ',' '\n' | sed 's/^/syscalls:sys_enter_/' | tr '\n' ',' | sed 's/,$//')
perf stat -e syscalls:sys_enter_poll true >/dev/null 2>&1 || { echo "bench-profile: perf cannot read syscall tracepoints here" >&2; exit 1; }

PORT=$(awk '{ p = $1 - 200; if (p < 2000) p = 20000; print p }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 20000)
PID=
start_target() {
    PORT=$((PORT + 1))
    if [ "$1" = server ]; then
        $PIN_TARGET build/bench/demo_server --port "$PORT" --max-connections 12000 --max-rooms 12000 >"$OUT/logs/profile-server.log" 2>&1 &
    else
        $PIN_TARGET build/bench/tcp_relay --port "$PORT" >/dev/null 2>&1 &
    fi
    PID=$!
    for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
}
stop_target() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

# count_syscalls server|relay UNIT-FIELD LOADGEN-ARGS...: a table row of system calls per unit
count_syscalls() {
    local target=$1 unit=$2 raw="" line stat
    shift 2
    [ "$target" = relay ] && raw=--raw
    start_target "$target"
    perf stat -x, -e "$EVENTS" -p "$PID" -o "$OUT/logs/perf-stat-$target.txt" &
    stat=$!
    sleep 0.2
    line=$($PIN_GEN build/bench/loadgen --port "$PORT" --server-pid "$PID" $raw "$@" 2>/dev/null | grep '^RESULT')
    kill -INT $stat; wait $stat 2>/dev/null
    stop_target
    local units
    units=$(field "$unit" "$line")
    python3 - "$OUT/logs/perf-stat-$target.txt" "$units" "$target" <<'EOF'
import sys
counts = {}
for line in open(sys.argv[1]):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit():
        counts[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
units = float(sys.argv[2] or 0) or 1
total = sum(counts.values())
cells = ", ".join(f"{name} {n / units:.3f}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n)
print(f"| {sys.argv[3]} | {units:,.0f} | {total / units:.3f} | {cells} |")
EOF
}

{
    echo "# Where the server's time goes"
    echo
    echo "Written by \`make bench-profile\` (bench/profile.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)."
    echo "Machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores, $(uname -sr)."
    echo
    echo "## System calls per delivery: fanout 50 rooms x 4 peers, 200 B (whole run: setup, warm-up, 3 s, drain)"
    echo
    echo "| process | deliveries | system calls per delivery | by call (per delivery) |"
    echo "|---|---:|---:|---|"
    count_syscalls server total_deliveries --mode fanout --rooms 50 --peers 4 --size 200 --window 16 --seconds 3
    count_syscalls relay total_deliveries --mode fanout --rooms 50 --peers 4 --size 200 --window 16 --seconds 3
    echo
    echo "## System calls per heartbeat: 10,000 idle connections, a heartbeat each every 5 s"
    echo
    echo "(Per heartbeat of the 5 s window; the count covers the whole run: connecting, joining and the window.)"
    echo
    echo "| process | connections | system calls per connection | by call (per connection) |"
    echo "|---|---:|---:|---|"
    count_syscalls server connections --mode idle --idle 10000 --idle-window 5
    echo
} > "$REPORT"

# The profile: scenario A, perf attached for 2 s in the middle of the measured window.
start_target server
perf record --call-graph dwarf,16384 -F 1999 -e cpu-clock -p "$PID" -o "$OUT/logs/perf-server.data" -- sleep 2.5 \
    >/dev/null 2>&1 &
rec=$!
line=$($PIN_GEN build/bench/loadgen --port "$PORT" --server-pid "$PID" --mode fanout --rooms 50 --peers 4 --size 200 \
       --window 16 --seconds 3 --warmup 0.5 2>/dev/null | grep '^RESULT')
wait $rec
stop_target
{
    echo "## Profile of the server: fanout 50 x 4 x 200 B ($(field deliveries_per_s "$line") deliveries/s while profiled)"
    echo
    echo "perf record -e cpu-clock --call-graph dwarf; the server's own functions and the kernel's."
    echo
    echo "### By own time (self)"
    echo
    echo '```'
    perf report -i "$OUT/logs/perf-server.data" --no-children --stdio -g none --percent-limit 0.8 2>/dev/null | grep '%'
    echo '```'
    echo
    echo "### Inclusive (children), the server's functions"
    echo
    echo '```'
    perf report -i "$OUT/logs/perf-server.data" --children --stdio -g none --percent-limit 2 2>/dev/null | grep '%' \
        | grep -v '\[k\]' | grep -v '\[unknown\]'
    echo '```'
} >> "$REPORT"
cat "$REPORT"
echo "written: $REPORT" >&2
