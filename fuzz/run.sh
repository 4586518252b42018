#!/usr/bin/env bash
# Runs the fuzz targets built in build/fuzz/: fuzz/run.sh SECONDS [TARGET...]
#
# Each target runs for SECONDS on its working corpus build/fuzz/corpus/<target> (the seeds of
# fuzz/make_corpus.py, plus anything committed under fuzz/corpus/<target>/, copied there first,
# so that runs never write into the repository), with a -max_len that suits it. Findings go to
# build/fuzz/artifacts/<target>/. Prints per target the executions, the CPU time and the
# result; exits 1 when any target failed or left a crash, leak, timeout or OOM file.
#
# FUZZ_JOBS (default 1): how many targets run at once (each fuzzer uses one core).
# FUZZ_FLAGS: extra libFuzzer flags for every target.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_request frames utf8 json phoenix_messages relay server)
jobs=${FUZZ_JOBS:-1}
python=${PYTHON:-/usr/bin/python3}

max_len() {
    case "$1" in
    utf8) echo 1024 ;;
    http_request | json | phoenix_messages | server) echo 4096 ;;
    relay) echo 8192 ;;
    frames) echo 16384 ;;
    *) echo 4096 ;;
    esac
}

mkdir -p build/fuzz/corpus build/fuzz/artifacts build/fuzz/logs
# one run at a time: runs share the corpora and the logs
exec 9>build/fuzz/.run.lock
if ! flock -n 9; then
    echo "fuzz: another run is in progress (build/fuzz/.run.lock)"
    exit 1
fi
"$python" fuzz/make_corpus.py build/fuzz/corpus >/dev/null || exit 1

run_one() { # target
    local t=$1 corpus=build/fuzz/corpus/$1 artifacts=build/fuzz/artifacts/$1 log=build/fuzz/logs/$1.log
    local stamp=build/fuzz/logs/$1.stamp status=0 TIMEFORMAT='%U %S'
    mkdir -p "$corpus" "$artifacts"
    if [ -d "fuzz/corpus/$t" ]; then cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null; fi
    touch "$stamp"
    { time ./build/fuzz/"$t" "$corpus" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=20 \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_FLAGS:-} \
        >"$log" 2>&1; } 2>build/fuzz/logs/"$t".time || status=$?
    local execs cpu findings
    execs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    cpu=$(awk '{printf "%.1f", ($1 + $2) / 60}' build/fuzz/logs/"$t".time 2>/dev/null)
    findings=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'slow-unit-*' \) -newer "$stamp" | grep -v slow-unit || true)
    if [ "$status" -ne 0 ] || [ -n "$findings" ]; then
        printf '%-18s %12s execs %7s CPU min  FAILED (exit %d) %s; log %s\n' "$t" "${execs:-?}" "${cpu:-?}" "$status" \
            "$(echo $findings)" "$log"
        grep -a -m3 -E 'ERROR|INVARIANT|SUMMARY' "$log" | sed 's/^/    /'
        echo failed >build/fuzz/logs/"$t".result
        return 1
    fi
    printf '%-18s %12s execs %7s CPU min  ok\n' "$t" "${execs:-?}" "${cpu:-?}"
    echo ok >build/fuzz/logs/"$t".result
}

failed=0
for t in "${targets[@]}"; do
    rm -f build/fuzz/logs/"$t".result
    if [ ! -x "build/fuzz/$t" ]; then
        echo "fuzz: build/fuzz/$t is not built"
        failed=1
        continue
    fi
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait
for t in "${targets[@]}"; do
    [ "$(cat build/fuzz/logs/"$t".result 2>/dev/null)" = ok ] || failed=1
done
if [ $failed -ne 0 ]; then
    echo "fuzz: FAILED (findings are in build/fuzz/artifacts/<target>/, logs in build/fuzz/logs/)"
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a finding"
