#!/usr/bin/env bash
# Starts N demo servers (default 3) and HAProxy in front of them, on this machine's loopback,
# with examples/cluster/haproxy.cfg. Ctrl-C stops everything it started.
#
#   examples/cluster/run.sh [N]
#   env: CLUSTER_PORT (HAProxy, default 8000), CLUSTER_BASE_PORT (servers on BASE+1..BASE+N,
#        default 4000) or CLUSTER_SERVER_PORTS (the servers' ports, N of them, e.g. "4101 4207
#        4333"), DEMO_SERVER (default build/demo_server), HAPROXY (default haproxy on PATH,
#        else /usr/sbin/haproxy)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
count="${1:-3}"
listen_port="${CLUSTER_PORT:-8000}"
base_port="${CLUSTER_BASE_PORT:-4000}"
read -r -a server_ports <<< "${CLUSTER_SERVER_PORTS:-}"
demo_server="${DEMO_SERVER:-$repo/build/demo_server}"
haproxy="${HAPROXY:-haproxy}"
# Debian puts haproxy in /usr/sbin, which is not on a user's PATH.
if ! command -v "$haproxy" >/dev/null 2>&1 && [ -z "${HAPROXY:-}" ]; then
    for dir in /usr/sbin /usr/local/sbin; do [ -x "$dir/haproxy" ] && haproxy="$dir/haproxy" && break; done
fi

case "$count" in ''|*[!0-9]*) echo "usage: $0 [N]   (N servers, 1 to 64)" >&2; exit 2 ;; esac
if [ "$count" -lt 1 ] || [ "$count" -gt 64 ]; then echo "usage: $0 [N]   (N servers, 1 to 64)" >&2; exit 2; fi
if [ ${#server_ports[@]} -eq 0 ]; then
    for i in $(seq 1 "$count"); do server_ports+=($((base_port + i))); done
elif [ ${#server_ports[@]} -ne "$count" ]; then
    echo "CLUSTER_SERVER_PORTS names ${#server_ports[@]} port(s) for $count server(s)" >&2; exit 2
fi
command -v "$haproxy" >/dev/null 2>&1 || { echo "HAProxy is not installed (Debian: apt-get install haproxy)" >&2; exit 1; }
[ -x "$demo_server" ] || { echo "$demo_server not found: run make first" >&2; exit 1; }

pids=()
work="$(mktemp -d)"
stop_all() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# The configuration names three servers, VRS_1 to VRS_3; for another count its server line is
# repeated, once for each.
config="$here/haproxy.cfg"
if [ "$count" -ne 3 ]; then
    config="$work/haproxy.cfg"
    awk -v n="$count" '
        /^    server vrs[0-9]+ / { if (!done) { for (i = 1; i <= n; i++) { line = $0; gsub(/vrs1/, "vrs" i, line); gsub(/VRS_1/, "VRS_" i, line); print line } done = 1 } next }
        { print }' "$here/haproxy.cfg" > "$config"
fi

export VRS_LISTEN="127.0.0.1:$listen_port"
for i in $(seq 1 "$count"); do
    port="${server_ports[$((i - 1))]}"
    export "VRS_$i=127.0.0.1:$port"
    "$demo_server" --host 127.0.0.1 --port "$port" > >(sed -u "s/^/[server $i] /") 2>&1 &
    pids+=("$!")
    echo "server $i: 127.0.0.1:$port"
done
"$haproxy" -db -f "$config" > >(sed -u 's/^/[haproxy] /') 2>&1 &
pids+=("$!")
echo "HAProxy: http://127.0.0.1:$listen_port/ (each room on one server; /health and /metrics per server)"
echo "Ctrl-C stops everything."
wait -n || true
echo "a process ended: stopping the others"
