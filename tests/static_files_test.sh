#!/bin/sh
# The demo server's static files (examples/demo_server.c: serve_http, is_plain_path) against
# path traversal: build/demo_server serves a temporary web root with a secret file next to it
# (outside), and every request below must get its status without the secret ever appearing.
#
#   sh tests/static_files_test.sh [path/to/demo_server]
#
# Needs curl and python3 (for the raw requests curl cannot send). Prints "N passed, N failed"
# and exits non-zero on a failure.
set -u

SERVER=${1:-${DEMO_SERVER:-build/demo_server}}
PYTHON=${PYTHON:-python3}
SECRET="SECRET-$$-b7c1e0f4"

for tool in curl "$PYTHON"; do
    if ! command -v "$tool" >/dev/null 2>&1; then echo "static-files-test: $tool not found"; exit 1; fi
done
if [ ! -x "$SERVER" ]; then echo "static-files-test: $SERVER not found (make build/demo_server)"; exit 1; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vrs-static.XXXXXX") || exit 1
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# $TMP/secret.txt           outside the web root
# $TMP/web/index.html       the page
# $TMP/web/sub/page.html    a subfolder
# $TMP/web/.hidden          a dot file
# $TMP/web/link.txt         a symlink to the secret
# $TMP/web/up               a symlink to the folder above the web root
mkdir -p "$TMP/web/sub" || exit 1
echo "$SECRET" > "$TMP/secret.txt"
echo "$SECRET" > "$TMP/web/.hidden"
printf '<!doctype html><title>index</title>INDEX-PAGE\n' > "$TMP/web/index.html"
printf '<!doctype html><title>sub</title>SUB-PAGE\n' > "$TMP/web/sub/page.html"
ln -s ../secret.txt "$TMP/web/link.txt"
ln -s .. "$TMP/web/up"

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SERVER" --host 127.0.0.1 --port "$PORT" --web-root "$TMP/web" >"$TMP/server.log" 2>&1 &
PID=$!

# wait (bounded) until the server answers
tries=0
until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/" 2>/dev/null; do
    tries=$((tries + 1))
    if [ $tries -ge 50 ] || ! kill -0 "$PID" 2>/dev/null; then
        echo "static-files-test: the demo server did not start"; cat "$TMP/server.log"; exit 1
    fi
    sleep 0.1
done

passed=0
failed=0

# check NAME EXPECTED_STATUS BODY_MUST_CONTAIN(or "") RESPONSE_FILE
check() {
    name=$1 expected=$2 must=$3 file=$4
    status=$(head -n 1 "$file" | tr -d '\r' | cut -d ' ' -f 2)
    problem=
    [ "$status" = "$expected" ] || problem="status ${status:-none}, expected $expected"
    if grep -q "$SECRET" "$file"; then problem="${problem:+$problem; }THE SECRET LEAKED"; fi
    if [ -n "$must" ] && ! grep -q "$must" "$file"; then problem="${problem:+$problem; }body lacks $must"; fi
    if [ -z "$problem" ]; then
        passed=$((passed + 1))
        echo "ok    $name -> $status"
    else
        failed=$((failed + 1))
        echo "FAIL  $name: $problem"
    fi
}

# get PATH EXPECTED [MUST]: one GET with the path sent exactly as written
get() {
    curl -s -i --path-as-is --max-time 5 "http://127.0.0.1:$PORT$1" > "$TMP/response" 2>/dev/null
    check "GET $1" "$2" "${3:-}" "$TMP/response"
}

# raw NAME EXPECTED BYTES: BYTES (printf-style escapes, as Python bytes) sent as they are
raw() {
    "$PYTHON" - "$PORT" "$3" > "$TMP/response" <<'EOF'
import socket, sys
port, request = int(sys.argv[1]), sys.argv[2].encode("latin-1").decode("unicode_escape").encode("latin-1")
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(request)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
sys.stdout.buffer.write(data)
EOF
    check "$1" "$2" "" "$TMP/response"
}

get /                          200 INDEX-PAGE
get /index.html                200 INDEX-PAGE
get /sub/page.html             200 SUB-PAGE
get '/index.html?f=../../secret.txt' 200 INDEX-PAGE
get /secret.txt                404
get /../secret.txt             404
get /../../secret.txt          404
get /%2e%2e/secret.txt         404
get /%2E%2E/secret.txt         404
get /..%2fsecret.txt           404
get /%252e%252e/secret.txt     404
get /sub/../../secret.txt      404
get /sub/../index.html         404
get '/..\secret.txt'           404
get //etc/passwd               404
get //secret.txt               404
get /.hidden                   404
get /sub/                      404
get /sub                       404
get /sub/.                     404
get /index.html%00.txt         404
get /link.txt                  404
get /up/secret.txt             404
# names Windows reads as devices or alternate data streams, not files
get /nul.txt                   404
get /con.html                  404
get /sub/com1.js               404
get '/index.html::$DATA'       404
get '/index.html:secret.txt'   404
raw "absolute-form GET http://127.0.0.1:PORT/../secret.txt" 404 \
    "GET http://127.0.0.1:$PORT/../secret.txt HTTP/1.1\r\nHost: 127.0.0.1:$PORT\r\n\r\n"
raw "absolute-form GET http://127.0.0.1:PORT/index.html" 404 \
    "GET http://127.0.0.1:$PORT/index.html HTTP/1.1\r\nHost: 127.0.0.1:$PORT\r\n\r\n"
raw "NUL in the request line" 400 \
    "GET /index.html\0/../../secret.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
raw "NUL after the path" 400 \
    "GET /secret.txt\0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# the server is still there and still serves the page
get /                          200 INDEX-PAGE
if ! kill -0 "$PID" 2>/dev/null; then failed=$((failed + 1)); echo "FAIL  the demo server exited"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
