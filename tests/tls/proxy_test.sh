#!/bin/sh
# The TLS reverse-proxy setup of the README, for real: nginx with examples/nginx/videoroom.conf
# (ports and a self-signed certificate substituted) in front of the demo server. Checks that the
# page loads over https and that a Phoenix join over wss gets its reply.
set -eu
cd "$(dirname "$0")/../.."
server=${DEMO_SERVER:-build/demo_server}
python=${PYTHON:-/usr/bin/python3}
for tool in nginx openssl curl; do
    if ! command -v $tool >/dev/null 2>&1 && [ ! -x /usr/sbin/$tool ]; then
        echo "tls proxy test: skipped: $tool is not installed"
        exit 0
    fi
done
nginx_binary=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
demo_pid=""
nginx_pid=""
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
demo_port=$(free_port)
tls_port=$(free_port)

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

mkdir -p "$work/logs" "$work/temp"
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$tls_port ssl;|" \
    -e "s|server_name video.example.org;|server_name localhost;|" \
    -e "s|/etc/letsencrypt/live/video.example.org/fullchain.pem|$work/cert.pem|" \
    -e "s|/etc/letsencrypt/live/video.example.org/privkey.pem|$work/key.pem|" \
    -e "s|http://127.0.0.1:4000|http://127.0.0.1:$demo_port|" \
    examples/nginx/videoroom.conf > "$work/videoroom.conf"
cat > "$work/nginx.conf" <<CONF
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/temp;
    proxy_temp_path $work/temp;
    fastcgi_temp_path $work/temp;
    uwsgi_temp_path $work/temp;
    scgi_temp_path $work/temp;
    include $work/videoroom.conf;
}
CONF

"$server" --port "$demo_port" --origin "https://localhost:$tls_port" > "$work/demo.log" 2>&1 &
demo_pid=$!
"$nginx_binary" -p "$work" -c "$work/nginx.conf" > "$work/nginx.out" 2>&1 &
nginx_pid=$!

passed=0
failed=0
check() { # name, then a command that must succeed
    name=$1
    shift
    if "$@"; then echo "ok: $name"; passed=$((passed + 1)); else echo "FAILED: $name"; failed=$((failed + 1)); fi
}

ready=0
for attempt in $(seq 1 50); do
    if curl -sk -o /dev/null "https://127.0.0.1:$tls_port/config.json"; then ready=1; break; fi
    sleep 0.1
done
if [ $ready -ne 1 ]; then
    echo "tls proxy test: nginx or the demo server did not start"
    cat "$work/nginx.out" "$work/logs/error.log" "$work/demo.log" 2>/dev/null || true
    echo "0 passed, 1 failed"
    exit 1
fi

page_loads() { curl -sk "https://127.0.0.1:$tls_port/" | grep -qi "<html"; }
check "the page loads over https" page_loads

wss_join() {
    "$python" - "$tls_port" <<'PY'
import asyncio, json, ssl, sys
import websockets
port = sys.argv[1]
async def main():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"wss://127.0.0.1:{port}/socket/websocket?vsn=2.0.0"
    async with websockets.connect(url, ssl=context, origin=f"https://localhost:{port}",
                                  subprotocols=["phoenix"]) as ws:
        await ws.send(json.dumps(["1", "1", "room:tls", "phx_join", {}]))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == ["1", "1", "room:tls", "phx_reply", {"status": "ok", "response": {}}], reply
asyncio.run(main())
PY
}
check "a Phoenix join over wss through the proxy" wss_join

wrong_origin_refused() {
    code=$(curl -sk -o /dev/null -w "%{http_code}" -H "Origin: https://evil.example" \
        -H "Upgrade: websocket" -H "Connection: Upgrade" -H "Sec-WebSocket-Version: 13" \
        -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
        "https://127.0.0.1:$tls_port/socket/websocket?vsn=2.0.0")
    [ "$code" = "403" ]
}
check "another origin is refused with 403" wrong_origin_refused

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
