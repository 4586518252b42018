#!/bin/sh
# Runs the Windows build of an example server under Wine as the POSIX build runs, for the tests
# that start servers by path: installed as build/win/demo_server beside demo_server.exe (and
# the same for echo_server), it runs "$0.exe" with the same arguments. SIGTERM, which the tests
# stop servers with, is passed on as SIGINT: Wine delivers that to the program as Ctrl-C, the
# stop request a Windows console program gets (the demo server drains on it, as on SIGTERM
# elsewhere), so the server shuts down as it would there.
# Should this script be killed outright, a watcher ends the program within a second.
here=$(cd "$(dirname "$0")" && pwd)
: "${WINEPREFIX:=$here/../wineprefix}"
: "${WINEDEBUG:=-all}"
export WINEPREFIX WINEDEBUG
"${WINE:-wine}" "$0.exe" "$@" &
child=$!
wrapper=$$
(while kill -0 "$wrapper" 2>/dev/null; do sleep 1; done; kill -KILL "$child" 2>/dev/null) </dev/null >/dev/null 2>&1 &
watcher=$!
trap 'kill -INT "$child" 2>/dev/null' TERM INT
status=0
while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
done
kill "$watcher" 2>/dev/null
exit "$status"
