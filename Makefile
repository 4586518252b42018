# videoroom_signal: `make` builds the examples and the test binary; `make test` runs every test.
CC      ?= cc
PYTHON  ?= /usr/bin/python3
WARN     = -Wall -Wextra -Wpedantic
CFLAGS  ?= -O2 -g
SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# Linux waits with epoll (a compile option of the header; poll() elsewhere).
ifeq ($(shell uname -s),Linux)
EVENTS   = -DVRS_USE_EPOLL
endif

HEADER   = videoroom_signal.h
EXAMPLES = build/echo_server build/demo_server
TESTS    = build/test_videoroom_signal build/test_videoroom_signal_epoll
TEST_SOURCES = $(wildcard tests/*.c tests/*.h)

.PHONY: all test unit-test compile-check interop-test e2e-test browser-test tls-test demo echo clean analyze

all: $(EXAMPLES) $(TESTS)

build:
	mkdir -p build

build/echo_server: examples/echo_server.c $(HEADER) | build
	$(CC) -std=c99 $(WARN) $(CFLAGS) $< -o $@

build/demo_server: examples/demo_server.c $(HEADER) | build
	$(CC) -std=c99 $(WARN) $(CFLAGS) $(EVENTS) $< -o $@

# The demo server under the sanitizers, for the end-to-end tests.
build/demo_server_sanitized: examples/demo_server.c $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) $< -o $@

# The test binary runs under AddressSanitizer and UndefinedBehaviorSanitizer, once with each
# way of waiting: poll() (the portable default) and, on Linux, epoll.
build/test_videoroom_signal: $(TEST_SOURCES) $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) tests/test_main.c -o $@

build/test_videoroom_signal_epoll: $(TEST_SOURCES) $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) tests/test_main.c -o $@

test: unit-test compile-check interop-test e2e-test tls-test browser-test analyze

unit-test: $(TESTS)
	./build/test_videoroom_signal
	@if [ -n "$(EVENTS)" ]; then echo "== again, waiting with epoll"; ./build/test_videoroom_signal_epoll; fi

# The header, its stub and the example at the top of its documentation compile warning-free as
# C99 and as C++ with gcc and clang.
compile-check: | build
	sh tests/compile_check.sh

# gcc -fanalyzer, clang-tidy (analyzer, CERT, bugprone) and cppcheck over the header.
analyze:
	sh tests/analyze.sh

interop-test: build/echo_server
	$(PYTHON) tests/interop/websockets_interop.py build/echo_server

# The official Phoenix client (npm `phoenix`, pinned in tests/e2e/package-lock.json) against the
# demo server.
e2e-test: build/demo_server_sanitized
	@if ! command -v node >/dev/null 2>&1; then echo "e2e-test: node not found"; exit 1; fi
	@if [ ! -d tests/e2e/node_modules ]; then cd tests/e2e && npm ci --no-audit --no-fund; fi
	cd tests/e2e && DEMO_SERVER=../../build/demo_server_sanitized node --test --test-concurrency=1

# Three Chromium pages in a call through the demo server. It runs in a network namespace that
# has only the loopback interface, so that WebRTC media, too, stays on loopback.
browser-test: build/demo_server_sanitized
	@if [ ! -x /usr/bin/chromium ]; then \
	    echo "browser-test: SKIPPED: Chromium is not installed (/usr/bin/chromium)"; exit 0; fi; \
	if ! unshare -n true 2>/dev/null; then \
	    echo "browser-test: SKIPPED: cannot make a loopback-only network namespace (unshare -n)"; exit 0; fi; \
	if [ ! -d tests/browser/node_modules ]; then (cd tests/browser && npm ci --no-audit --no-fund); fi; \
	cd tests/browser && unshare -n sh -c 'ip link set lo up && DEMO_SERVER=../../build/demo_server_sanitized node --test'

# The README's TLS reverse-proxy setup: nginx with examples/nginx/videoroom.conf and a
# self-signed certificate in front of the demo server.
tls-test: build/demo_server_sanitized
	DEMO_SERVER=build/demo_server_sanitized PYTHON=$(PYTHON) sh tests/tls/proxy_test.sh

# The README's run command: the demo server on 127.0.0.1:4000.
demo: build/demo_server
	./build/demo_server

echo: build/echo_server
	./build/echo_server --port 9001

clean:
	rm -rf build
