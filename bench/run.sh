#!/usr/bin/env bash
# Runs every benchmark of fieldsync after building in build/, and prints the machine and each
# command (with the load before it) above its output. Benchmarks are run by hand, never by the
# tests: their figures depend on the machine and on what else it is doing (check the load
# printed with each one, run twice, and quote the command, machine and date with any figure:
# docs/performance.md).
#
# Usage: bench/run.sh [--quick] [--only NAME[,NAME...]] [--dir DIR]
#   --quick        smoke test: small workloads, a few minutes in all
#   --only NAMES   just these (apply, ingest, market, live, bytes, slowlink, device, page)
#   --dir DIR      where stores and scratch files go (default /tmp; the market-day
#                  enrolment template is cached under DIR/fieldsync-bench-cache)
# Each benchmark also runs alone: build/bench/bench_NAME --help. Exit status: 1 if a benchmark
# failed to run (a missed target is printed as MISS, not a failure).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
only=""
dir=/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick); shift ;;
        --only) only=",$2,"; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# 2,000 devices and the server's 2,000 sessions need file descriptors: the market-day
# benchmarks raise their own limit (the server inherits it), this only helps if the hard
# limit allows more than the soft one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== build: cmake -S . -B build && cmake --build build =="
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

echo
echo "== machine =="
echo "uname:  $(uname -srm)"
echo "cpus:   $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "disk:   $(df -hT "$dir" | awk 'NR==2 {print $2 " on " $7}') ($dir)"
echo "files:  ulimit -n $(ulimit -n)"
echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"

run() {
    local name=$1; shift
    if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then
        return 0
    fi
    echo
    echo "== build/bench/bench_$name $* =="
    echo "uptime: $(uptime)"
    local rc=0
    "build/bench/bench_$name" "$@" || rc=$?
    # 3 means "ran, but a target was missed" (bench_bytes); anything else non-zero failed
    if [ "$rc" = 3 ]; then
        echo "(bench_$name: a target was missed)"
    elif [ "$rc" != 0 ]; then
        echo "(bench_$name FAILED: exit status $rc)"
        status=1
    fi
}

status=0
run apply "${quick[@]}" --dir "$dir"
run ingest "${quick[@]}" --dir "$dir" $([ ${#quick[@]} -eq 0 ] && echo --runs 3)
run market "${quick[@]}" --dir "$dir"
run live "${quick[@]}" --dir "$dir"
run bytes "${quick[@]}"
run slowlink "${quick[@]}" --dir "$dir"
run device "${quick[@]}" --dir "$dir"
# the supervisor page's live socket (/live), written with the page (server/web): needs node
if [ -f bench/bench_page_live.mjs ] && { [ -z "$only" ] || [[ "$only" == *",page,"* ]]; }; then
    echo
    if command -v node >/dev/null; then
        echo "== node bench/bench_page_live.mjs $([ ${#quick[@]} -gt 0 ] && echo --pushes 200) =="
        echo "uptime: $(uptime)"
        node bench/bench_page_live.mjs $([ ${#quick[@]} -gt 0 ] && echo --pushes 200) || status=1
    else
        echo "== bench_page_live.mjs skipped: node is not installed =="
    fi
fi
echo
echo "uptime: $(uptime)"
exit $status
