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
EXAMPLES = build/echo_server build/demo_server build/sfu_server build/ticker
TESTS    = build/test_videoroom_signal build/test_videoroom_signal_epoll
THREAD_TESTS = build/test_threads_tsan build/test_threads_tsan_epoll
TEST_SOURCES = $(wildcard tests/*.c tests/*.h)

.PHONY: all test unit-test compile-check interop-test e2e-test browser-test tls-test demo echo clean analyze

all: $(EXAMPLES) $(TESTS) $(THREAD_TESTS)

build:
	mkdir -p build

build/echo_server: examples/echo_server.c $(HEADER) | build
	$(CC) -std=c99 $(WARN) $(CFLAGS) $< -o $@

build/demo_server: examples/demo_server.c examples/web_files.h $(HEADER) | build
	$(CC) -std=c99 $(WARN) $(CFLAGS) $(EVENTS) $< -o $@

# A producer thread feeding a room through vrs_wake.
build/ticker: examples/ticker.c $(HEADER) | build
	$(CC) -std=c99 $(WARN) $(CFLAGS) $(EVENTS) $< -o $@ -pthread

# The demo server under the sanitizers, for the end-to-end tests.
build/demo_server_sanitized: examples/demo_server.c examples/web_files.h $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) $< -o $@

# The test binary runs under AddressSanitizer and UndefinedBehaviorSanitizer, built twice: the
# portable way (poll(), a pipe for wake-ups, bytes scanned in plain C) and, on Linux, as the
# demo server runs (epoll, an eventfd, and SSE2 where the compiler targets it).
build/test_videoroom_signal: $(TEST_SOURCES) $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) -DVRS_NO_SIMD -DVRS_NO_EVENTFD tests/test_main.c -o $@

build/test_videoroom_signal_epoll: $(TEST_SOURCES) $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) tests/test_main.c -o $@

test: unit-test threads-test compile-check interop-test e2e-test tls-test browser-test analyze fuzz-smoke \
      static-files-test demo-hardening-test sfu-test browser-sfu-test cluster-test windows-test \
      cross-compile-check cross-test cmake-test

unit-test: $(TESTS)
	./build/test_videoroom_signal
	@if [ -n "$(EVENTS)" ]; then echo "== again, waiting with epoll"; ./build/test_videoroom_signal_epoll; fi

# The header, its stub, the example at the top of its documentation and every C example of the
# README compile warning-free as C99 and as C++11 with gcc and clang.
compile-check: | build
	sh tests/compile_check.sh

# gcc -fanalyzer, clang-tidy (analyzer, CERT, bugprone) and cppcheck over the header.
analyze:
	sh tests/analyze.sh

interop-test: build/echo_server
	$(PYTHON) tests/interop/websockets_interop.py build/echo_server

# The official Phoenix client (npm `phoenix`, pinned in tests/e2e/package-lock.json) against the
# demo server and the ticker example.
e2e-test: build/demo_server_sanitized build/ticker
	@if ! command -v node >/dev/null 2>&1; then echo "e2e-test: node not found"; exit 1; fi
	@if [ ! -d tests/e2e/node_modules ]; then cd tests/e2e && npm ci --no-audit --no-fund; fi
	cd tests/e2e && DEMO_SERVER=../../build/demo_server_sanitized TICKER=../../build/ticker node --test --test-concurrency=1

# Three Chromium pages in a call through the demo server. It runs in a network namespace that
# has only the loopback interface, so that WebRTC media, too, stays on loopback.
browser-test: build/demo_server_sanitized
	@if [ ! -x /usr/bin/chromium ]; then \
	    echo "browser-test: SKIPPED: Chromium is not installed (/usr/bin/chromium)"; exit 0; fi; \
	if ! unshare -n true 2>/dev/null; then \
	    echo "browser-test: SKIPPED: cannot make a loopback-only network namespace (unshare -n)"; exit 0; fi; \
	if [ ! -d tests/browser/node_modules ]; then (cd tests/browser && npm ci --no-audit --no-fund); fi; \
	cd tests/browser && unshare -n sh -c 'ip link set lo up && DEMO_SERVER=../../build/demo_server_sanitized node --test call.test.mjs'

# The README's TLS reverse-proxy setup: nginx with examples/nginx/videoroom.conf and a
# self-signed certificate in front of the demo server.
tls-test: build/demo_server_sanitized
	DEMO_SERVER=build/demo_server_sanitized PYTHON=$(PYTHON) sh tests/tls/proxy_test.sh

# The demo server's static files against path traversal (.., encodings, symlinks, NUL bytes).
static-files-test: build/demo_server
	PYTHON=$(PYTHON) sh tests/static_files_test.sh build/demo_server

# The README's run command: the demo server on 127.0.0.1:4000.
demo: build/demo_server
	./build/demo_server

echo: build/echo_server
	./build/echo_server --port 9001

clean:
	rm -rf build

# ---- hardening ------------------------------------------------------------------------------
# The demo server (under the sanitizers) against out-of-range options, a FIFO under its web
# root, and the relay's topic cache after 4,096 rooms through one room slot, driven by Python's
# websockets (a few seconds).
.PHONY: demo-hardening-test

demo-hardening-test: build/demo_server_sanitized
	$(PYTHON) tests/demo_hardening_test.py build/demo_server_sanitized

# ---- sfu -----------------------------------------------------------------------------------
# examples/sfu: the server whose room logic drives Janus's VideoRoom plugin over its Unix socket.
# `make demo-sfu` starts Janus (examples/sfu/janus, run in build/sfu) and the host on
# 127.0.0.1:4000; Ctrl-C stops both. `sfu-test`: the host's Janus message handling against a
# scripted Janus (a socketpair), under the sanitizers, in about a second. `browser-sfu-test`:
# six, then seven Chromium pages in one room through a real Janus, inside a network namespace
# with a veth pair of its own (Janus gathers no candidates on loopback); one to two minutes.
# Skipped, saying so, without Janus, Chromium or unshare.
SFU_SOURCES = examples/sfu/sfu_server.c examples/sfu/sfu_logic.h examples/web_files.h $(HEADER)

.PHONY: sfu-test browser-sfu-test demo-sfu

build/sfu_server: $(SFU_SOURCES) | build
	$(CC) -std=c99 $(WARN) $(CFLAGS) $(EVENTS) $< -o $@

build/sfu_server_sanitized: $(SFU_SOURCES) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) $< -o $@

build/test_sfu_logic: tests/sfu/test_sfu_logic.c examples/sfu/sfu_logic.h tests/test.h tests/test_support.h $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) $< -o $@

sfu-test: build/test_sfu_logic
	./build/test_sfu_logic

browser-sfu-test: build/sfu_server_sanitized
	@if [ ! -x /usr/bin/chromium ]; then \
	    echo "browser-sfu-test: SKIPPED: Chromium is not installed (/usr/bin/chromium)"; exit 0; fi; \
	if ! command -v janus >/dev/null 2>&1; then \
	    echo "browser-sfu-test: SKIPPED: Janus is not installed (Debian: apt-get install janus)"; exit 0; fi; \
	if ! unshare -n true 2>/dev/null; then \
	    echo "browser-sfu-test: SKIPPED: cannot make a network namespace (unshare -n)"; exit 0; fi; \
	if [ ! -d tests/browser/node_modules ]; then (cd tests/browser && npm ci --no-audit --no-fund); fi; \
	cd tests/browser && unshare -n sh -c 'ip link set lo up && \
	    ip link add sfu0 type veth peer name sfu1 && ip addr add 10.77.0.1/24 dev sfu0 && \
	    ip addr add 10.77.0.2/24 dev sfu1 && ip link set sfu0 up && ip link set sfu1 up && \
	    SFU_SERVER=../../build/sfu_server_sanitized node --test sfu.test.mjs'

demo-sfu: build/sfu_server
	@sh examples/sfu/demo.sh

# ---- fuzz ----------------------------------------------------------------------------------
# Coverage-guided fuzzing with libFuzzer (clang -fsanitize=fuzzer) under AddressSanitizer and
# UndefinedBehaviorSanitizer. Seven targets, each one .c file in fuzz/ whose opening comment
# says what it feeds and checks: http_request frames utf8 json phoenix_messages relay server.
# `make fuzz` builds them into build/fuzz/ and runs each for FUZZ_SECONDS (FUZZ_JOBS at once;
# one core each) on a working corpus in build/fuzz/corpus/<target>, seeded by
# fuzz/make_corpus.py, so that runs never write into the repository. `make fuzz-smoke` runs
# each for FUZZ_SMOKE_SECONDS, and skips with a message when the fuzzer runtime is missing.
# A crash, leak, timeout or broken invariant fails the run; its input is left in
# build/fuzz/artifacts/<target>/ (replay: build/fuzz/<target> FILE).
FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_JOBS          ?= 1
FUZZ_TARGETS = http_request frames utf8 json phoenix_messages relay server
FUZZ_BINS    = $(addprefix build/fuzz/,$(FUZZ_TARGETS))
FUZZ_CFLAGS  = -std=c99 -g -O1 -Wall -Wextra -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# The relay target's server waits with epoll on Linux (as the demo server); the others poll().
FUZZ_EVENTS_relay = $(EVENTS)
FUZZ_PROBE = printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d && n ? 0 : 0; }\n' \
             | $(FUZZ_CC) -fsanitize=fuzzer,address,undefined -x c - -o /dev/null >/dev/null 2>&1

.PHONY: fuzz fuzz-smoke fuzz-build

build/fuzz/%: fuzz/%.c fuzz/fuzz_common.h $(HEADER)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_EVENTS_$*) $< -o $@

fuzz-build:
	@if ! $(FUZZ_PROBE); then \
	    echo "fuzz: $(FUZZ_CC) cannot link -fsanitize=fuzzer (Debian: apt-get install clang libclang-rt-14-dev)"; exit 1; fi
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	FUZZ_JOBS=$(FUZZ_JOBS) PYTHON=$(PYTHON) bash fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	@if ! $(FUZZ_PROBE); then \
	    echo "fuzz-smoke: SKIPPED: $(FUZZ_CC) has no libFuzzer runtime (-fsanitize=fuzzer; Debian: libclang-rt-14-dev)"; \
	    exit 0; fi; \
	$(MAKE) --no-print-directory $(FUZZ_BINS) && \
	FUZZ_JOBS=$(FUZZ_JOBS) PYTHON=$(PYTHON) bash fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# ---- bench ---------------------------------------------------------------------------------
# `make bench`: the benchmark (bench/run.sh; bench/README.md). The demo server built as
# build/demo_server is (waiting with epoll on Linux) but always -O2, beside the load generator
# and the bare TCP relay it is compared with. Results: bench/results/latest.md, fanout.svg.
BENCH_CFLAGS = -O2 -g

.PHONY: bench bench-build bench-quick bench-profile

build/bench/demo_server: examples/demo_server.c examples/web_files.h $(HEADER)
	@mkdir -p build/bench
	$(CC) -std=c99 $(WARN) $(BENCH_CFLAGS) $(EVENTS) $< -o $@

build/bench/loadgen: bench/loadgen.c
	@mkdir -p build/bench
	$(CC) -std=c99 $(WARN) $(BENCH_CFLAGS) $< -o $@

build/bench/tcp_relay: bench/tcp_relay.c
	@mkdir -p build/bench
	$(CC) -std=c99 $(WARN) $(BENCH_CFLAGS) $< -o $@

bench-build: build/bench/demo_server build/bench/loadgen build/bench/tcp_relay

bench: bench-build
	PYTHON=$(PYTHON) bash bench/run.sh

# A one-minute smoke run of every scenario (shorter windows, 2,000 idle connections).
bench-quick: bench-build
	BENCH_QUICK=1 PYTHON=$(PYTHON) bash bench/run.sh

# Where the server's time goes: perf profiles and system calls per delivery (needs perf).
bench-profile: bench-build
	PYTHON=$(PYTHON) bash bench/profile.sh

# ---- hosts for the end-to-end tests --------------------------------------------------------
# Hosts the tests in tests/e2e start beside the demo server, under the sanitizers: the README's
# room-logic example as it is written there, and small hosts in tests/e2e/hosts/, each one .c
# file whose opening comment says what it does.
E2E_HOSTS = build/peer_close_host_sanitized build/readme_room_logic_sanitized
e2e-test: $(E2E_HOSTS)

build/%_host_sanitized: tests/e2e/hosts/%_host.c $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) $< -o $@

build/readme_room_logic_sanitized: README.md tests/extract_examples.sh $(HEADER) | build
	sh tests/extract_examples.sh build/examples
	$(CC) -std=c99 $(WARN) -O1 -g $(SANITIZE) $(EVENTS) build/examples/readme_room-logic-example.c -o $@

# ---- cluster -------------------------------------------------------------------------------
# Several demo servers behind HAProxy, rooms sharded by the socket URL's room
# (examples/cluster). `make cluster`: three servers on 127.0.0.1:4001-4003 and HAProxy on
# 127.0.0.1:8000 (CLUSTER_PORT, CLUSTER_BASE_PORT or CLUSTER_SERVER_PORTS move them); Ctrl-C
# stops them all.
# `make cluster-test` (tests/cluster): 30 Phoenix clients in 10 rooms through HAProxy, one
# server killed, one drained, /metrics checked with promtool; a killed server back without
# splitting the rooms that moved away; a rolling restart of all three; `make cluster` itself,
# stopped by Ctrl-C. About 20 s.
.PHONY: cluster cluster-test

cluster: build/demo_server
	bash examples/cluster/run.sh 3

cluster-test: build/demo_server_sanitized build/demo_server
	@if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then \
	    echo "cluster-test: SKIPPED: HAProxy is not installed (Debian: haproxy)"; exit 0; fi; \
	if ! command -v node >/dev/null 2>&1; then echo "cluster-test: node not found"; exit 1; fi; \
	if [ ! -d tests/e2e/node_modules ]; then (cd tests/e2e && npm ci --no-audit --no-fund); fi; \
	cd tests/cluster && PATH="$$PATH:/usr/sbin" DEMO_SERVER=../../build/demo_server_sanitized node --test --test-concurrency=1

# ---- threads -------------------------------------------------------------------------------
# vrs_wake from other threads and from signal handlers (tests/test_threads.c), under
# ThreadSanitizer (a build of its own: it cannot share one with AddressSanitizer), built twice:
# poll() with the self-pipe of systems other than Linux (VRS_NO_EVENTFD), and, on Linux, epoll
# with an eventfd. About 15 s. gcc's ThreadSanitizer cannot start on kernels that randomise
# mmap with more bits than it knows ("unexpected memory mapping"; vm.mmap_rnd_bits = 32 on
# some distributions): there the tests run under `setarch -R`, without address randomisation.
TSAN = -fsanitize=thread -fno-omit-frame-pointer
THREAD_TEST_SOURCES = tests/test_threads_main.c tests/test_threads.c tests/test_support.h tests/test.h

.PHONY: threads-test

build/test_threads_tsan: $(THREAD_TEST_SOURCES) $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(TSAN) -DVRS_NO_EVENTFD tests/test_threads_main.c -o $@ -pthread

build/test_threads_tsan_epoll: $(THREAD_TEST_SOURCES) $(HEADER) | build
	$(CC) -std=c99 $(WARN) -O1 -g $(TSAN) $(EVENTS) tests/test_threads_main.c -o $@ -pthread

threads-test: $(THREAD_TESTS)
	@launch=""; \
	if ! ./build/test_threads_tsan --list-tests >/dev/null 2>&1; then \
	    launch="setarch $$(uname -m) -R"; \
	    echo "threads-test: ThreadSanitizer cannot start with this address layout: running under $$launch"; fi; \
	echo "== threads, poll() and a self-pipe"; $$launch ./build/test_threads_tsan && \
	if [ -n "$(EVENTS)" ]; then echo "== threads, epoll and an eventfd"; $$launch ./build/test_threads_tsan_epoll; fi

# ---- bench-wake ----------------------------------------------------------------------------
# `make bench-wake`: how long a message takes from a producer thread to a client through a
# queue, vrs_wake and on_wake (bench/wake_latency.c), at 60 Hz for 10 s and at 10,000 wakes a
# second for 5 s: p50/p99 of the producer's clock to the client's recv(). About 20 s; writes
# bench/results/wake_latency.txt.
.PHONY: bench-wake

build/bench/wake_latency: bench/wake_latency.c $(HEADER)
	@mkdir -p build/bench
	$(CC) -std=c99 $(WARN) $(BENCH_CFLAGS) $(EVENTS) $< -o $@ -pthread

bench-wake: build/bench/wake_latency
	@out=bench/results/wake_latency.txt; \
	echo "commit $$(git rev-parse --short HEAD 2>/dev/null), $$(nproc) cores, load average before: $$(cut -d' ' -f1-3 /proc/loadavg)" > $$out; \
	./build/bench/wake_latency --rate 60 --seconds 10 >> $$out && \
	./build/bench/wake_latency --rate 10000 --seconds 5 >> $$out; status=$$?; cat $$out; exit $$status

# ---- windows -------------------------------------------------------------------------------
# The header on Winsock 2: the examples and the whole C test suite cross-built with MinGW-w64
# into build/win/ (libgcc linked statically: the .exe files need only Windows' own DLLs) and
# run under Wine, in a prefix made once in build/wineprefix. `make windows-test` runs there
# the C test suite (the SSE2 build; the portable one and epoll run natively in unit-test),
# the Python websockets interop test against echo_server.exe, the official Phoenix client's
# end-to-end tests against demo_server.exe and the hosts they start (the README's room-logic
# example, tests/e2e/hosts), and the static-files test against demo_server.exe: a few
# minutes in all. Skipped, saying so, where the cross compiler or Wine is missing.
WIN_CC     ?= x86_64-w64-mingw32-gcc
WINE       ?= $(firstword $(wildcard /usr/lib/wine/wine64) $(shell command -v wine64 wine 2>/dev/null))
WIN_CFLAGS  = -std=c99 $(WARN) -O2 -g -static-libgcc
WIN_LIBS    = -lws2_32
WIN_ENV     = WINEPREFIX=$(CURDIR)/build/wineprefix WINEDEBUG=-all WINE=$(WINE)
WIN_E2E_TESTS = $(filter-out ticker.test.mjs,$(notdir $(wildcard tests/e2e/*.test.mjs)))
WIN_SERVERS = build/win/echo_server build/win/demo_server build/win/peer_close_host build/win/readme_room_logic

.PHONY: windows-build windows-test

build/win:
	mkdir -p build/win

build/win/echo_server.exe: examples/echo_server.c $(HEADER) | build/win
	$(WIN_CC) $(WIN_CFLAGS) $< -o $@ $(WIN_LIBS)

build/win/demo_server.exe: examples/demo_server.c examples/web_files.h $(HEADER) | build/win
	$(WIN_CC) $(WIN_CFLAGS) $< -o $@ $(WIN_LIBS)

# the hosts the end-to-end tests start beside the demo server
build/win/peer_close_host.exe: tests/e2e/hosts/peer_close_host.c $(HEADER) | build/win
	$(WIN_CC) $(WIN_CFLAGS) $< -o $@ $(WIN_LIBS)

build/win/readme_room_logic.exe: README.md tests/extract_examples.sh $(HEADER) | build/win
	sh tests/extract_examples.sh build/win/examples
	$(WIN_CC) $(WIN_CFLAGS) build/win/examples/readme_room-logic-example.c -o $@ $(WIN_LIBS)

build/win/test_videoroom_signal.exe: $(TEST_SOURCES) $(HEADER) | build/win
	$(WIN_CC) $(WIN_CFLAGS) tests/test_main.c -o $@ $(WIN_LIBS)

# build/win/NAME runs build/win/NAME.exe under Wine, for the tests that start servers by path.
$(WIN_SERVERS): build/win/%: build/win/%.exe tests/windows/wine_server.sh
	cp tests/windows/wine_server.sh $@

windows-build: build/win/test_videoroom_signal.exe $(WIN_SERVERS)

# The prefix, made once (wineboot takes a few seconds here, more on a first run elsewhere).
build/wineprefix/.made:
	@mkdir -p build/wineprefix
	@start=$$(date +%s); $(WIN_ENV) $(WINE) wineboot -i >/dev/null 2>&1; \
	echo "windows-test: Wine prefix made in $$(( $$(date +%s) - start )) s"
	@touch $@

windows-test:
	@if ! command -v $(WIN_CC) >/dev/null 2>&1; then \
	    echo "windows-test: SKIPPED: $(WIN_CC) not found (Debian: gcc-mingw-w64-x86-64)"; exit 0; fi; \
	if [ -z "$(WINE)" ]; then echo "windows-test: SKIPPED: Wine not found (Debian: wine64)"; exit 0; fi; \
	$(MAKE) --no-print-directory windows-build build/wineprefix/.made || exit 1; \
	status=0; \
	echo "== windows-test: the C test suite under Wine (build/win/test_videoroom_signal.exe)"; \
	$(WIN_ENV) $(WINE) build/win/test_videoroom_signal.exe || status=1; \
	echo "== windows-test: Python websockets against echo_server.exe under Wine"; \
	$(WIN_ENV) $(PYTHON) tests/interop/websockets_interop.py build/win/echo_server || status=1; \
	echo "== windows-test: the official Phoenix client against demo_server.exe under Wine"; \
	echo "windows-test: ticker.test.mjs SKIPPED: examples/ticker.c waits for signals with sigaction, which Windows lacks (not ported)"; \
	if [ ! -d tests/e2e/node_modules ]; then (cd tests/e2e && npm ci --no-audit --no-fund); fi; \
	(cd tests/e2e && $(WIN_ENV) DEMO_SERVER=../../build/win/demo_server PEER_CLOSE_HOST=../../build/win/peer_close_host \
	    README_HOST=../../build/win/readme_room_logic DEMO_SERVER_START_MS=30000 \
	    node --test --test-concurrency=1 $(WIN_E2E_TESTS)) || status=1; \
	echo "== windows-test: demo_server.exe's static files against path traversal under Wine"; \
	$(WIN_ENV) PYTHON=$(PYTHON) sh tests/static_files_test.sh build/win/demo_server || status=1; \
	$(WIN_ENV) $(dir $(WINE))wineserver -k 2>/dev/null; \
	exit $$status

# ---- cross ---------------------------------------------------------------------------------
# Other architectures under qemu-user (tests/cross_test.sh says what runs and why): the C test
# suite cross-built for 32-bit ARM (armhf) and big-endian s390x, under UBSan, waiting with poll()
# and with epoll, and the echo and demo servers and the e2e hosts built the same way against
# Python's websockets, the official phoenix client, the static-files, demo-hardening and
# cluster tests; each target skipped with a message where its cross compiler or qemu is missing.
# `make cross-compile-check`: the header warning-free with both cross compilers as C99.
CROSS_CC_armhf   = arm-linux-gnueabihf-gcc
CROSS_QEMU_armhf = qemu-arm
CROSS_CC_s390x   = s390x-linux-gnu-gcc
CROSS_QEMU_s390x = qemu-s390x
CROSS_TARGETS    = armhf s390x
CROSS_CFLAGS     = -std=c99 $(WARN) -O1 -g -fsanitize=undefined -fno-sanitize-recover=undefined \
                   -fno-omit-frame-pointer

# (cross-test-NAME and cross-compile-check-NAME are pattern rules: make skips those for .PHONY.)
.PHONY: cross-test cross-compile-check

build/cross/%/test_videoroom_signal: $(TEST_SOURCES) $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) tests/test_main.c -o $@

build/cross/%/test_videoroom_signal_epoll: $(TEST_SOURCES) $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) -DVRS_USE_EPOLL tests/test_main.c -o $@

build/cross/%/test_sfu_logic: tests/sfu/test_sfu_logic.c examples/sfu/sfu_logic.h tests/test.h tests/test_support.h $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) -DVRS_USE_EPOLL $< -o $@

build/cross/%/echo_server: examples/echo_server.c $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) $< -o $@

build/cross/%/demo_server: examples/demo_server.c examples/web_files.h $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) -DVRS_USE_EPOLL $< -o $@

# The hosts tests/e2e starts beside the demo server (E2E_HOSTS above), and the ticker example.
build/cross/%/ticker: examples/ticker.c $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) -DVRS_USE_EPOLL $< -o $@ -pthread

build/cross/%/peer_close_host: tests/e2e/hosts/peer_close_host.c $(HEADER)
	@mkdir -p $(@D)
	$(CROSS_CC_$*) $(CROSS_CFLAGS) -DVRS_USE_EPOLL $< -o $@

build/cross/%/readme_room_logic: README.md tests/extract_examples.sh $(HEADER)
	@mkdir -p $(@D)
	sh tests/extract_examples.sh build/examples
	$(CROSS_CC_$*) $(CROSS_CFLAGS) -DVRS_USE_EPOLL build/examples/readme_room-logic-example.c -o $@

cross-test: $(addprefix cross-test-,$(CROSS_TARGETS))

cross-test-%:
	@MAKE="$(MAKE)" PYTHON=$(PYTHON) sh tests/cross_test.sh $* $(CROSS_CC_$*) $(CROSS_QEMU_$*)

cross-compile-check: $(addprefix cross-compile-check-,$(CROSS_TARGETS))

# -O2, so that the warnings that need the optimiser's data flow are given too.
cross-compile-check-%: | build
	@if ! command -v $(CROSS_CC_$*) >/dev/null 2>&1; then \
	    echo "cross-compile-check $*: SKIPPED: $(CROSS_CC_$*) not found"; exit 0; fi; \
	failed=0; for options in "" -DVRS_USE_EPOLL "-DVRS_STATIC -Wno-unused-function"; do \
	    if $(CROSS_CC_$*) -std=c99 $(WARN) -Werror -O2 $$options -c videoroom_signal.c -o build/cross_check_$*.o; then \
	        echo "cross-compile-check $*: $(CROSS_CC_$*) -std=c99 $$options: ok"; \
	    else echo "cross-compile-check $*: $(CROSS_CC_$*) -std=c99 $$options: FAILED"; failed=1; fi; \
	done; exit $$failed

# ---- install, CMake ------------------------------------------------------------------------
# `make install [PREFIX=/usr/local] [DESTDIR=]`: the header where `#include <videoroom_signal.h>`
# finds it, and videoroom_signal.pc for pkg-config (CMake's install also writes the package
# files for find_package). The version is CMakeLists.txt's.
PREFIX       ?= /usr/local
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(PREFIX)/share/pkgconfig
VERSION       = ${shell sed -n 's/^project(videoroom_signal VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt}

.PHONY: install uninstall cmake-test

install:
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 $(HEADER) $(DESTDIR)$(INCLUDEDIR)/$(HEADER)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    videoroom_signal.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/videoroom_signal.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/videoroom_signal.pc

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/$(HEADER) $(DESTDIR)$(PKGCONFIGDIR)/videoroom_signal.pc

# CMakeLists.txt as the top project (examples, tests through ctest) and tests/cmake_consumer
# built against a fresh copy of the repository through add_subdirectory, FetchContent and
# find_package, and with pkg-config after `make install` (tests/cmake_test.sh).
cmake-test:
	sh tests/cmake_test.sh
