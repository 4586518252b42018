#!/bin/sh
# make demo-sfu: Janus with the configuration in examples/sfu/janus, then the SFU host in front
# of it (extra arguments go to the host). Janus runs in build/sfu, where its sockets and log go.
# Ctrl-C stops both.
set -u
JANUS=${JANUS:-janus}
if ! command -v "$JANUS" >/dev/null 2>&1; then
    echo "demo-sfu: Janus is not installed. On Debian or Ubuntu: sudo apt-get install janus" >&2
    exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
run="$repo/build/sfu"
mkdir -p "$run"
rm -f "$run/janus.sock" "$run/janus-admin.sock"
janus_pid=
host_pid=
stop() {
    [ -n "$host_pid" ] && kill "$host_pid" 2>/dev/null
    [ -n "$janus_pid" ] && kill "$janus_pid" 2>/dev/null
    wait
}
trap 'stop; exit 0' INT TERM

# Janus 1.1.2's Unix-socket transport can end its thread before it counts as started (a start-up
# race); Janus then exits at once ("No Janus API transport is available") and is started again.
attempt=1
while :; do
    (cd "$run" && exec "$JANUS" --configs-folder "$here/janus" --disable-colors >"$run/janus.log" 2>&1) &
    janus_pid=$!
    waited=0
    while [ ! -S "$run/janus.sock" ] && kill -0 "$janus_pid" 2>/dev/null && [ $waited -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    [ -S "$run/janus.sock" ] && kill -0 "$janus_pid" 2>/dev/null && break
    wait "$janus_pid" 2>/dev/null
    janus_pid=
    if [ $attempt -ge 5 ]; then
        echo "demo-sfu: Janus did not start; its log:" >&2
        cat "$run/janus.log" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
done
echo "demo-sfu: Janus is running (log: build/sfu/janus.log)"
"$repo/build/sfu_server" --janus "$run/janus.sock" "$@" &
host_pid=$!
wait "$host_pid"
host_pid=
stop
