#!/usr/bin/env bash
# Runs every benchmark of fieldsync (for now bench_apply) after building in build/.
# Prints the machine and each command before its output. Benchmarks are run by hand, never by
# the tests: their figures depend on the machine and on what else it is doing (check the load
# printed below, run twice, and quote the command and date with any figure).
# Usage: bench/run.sh [args passed to every benchmark...]
#   bench/run.sh --quick            smoke test: small workloads
#   bench/run.sh --dir /dev/shm     files on tmpfs: the CPU cost without the disk
set -euo pipefail
cd "$(dirname "$0")/.."

benches=(bench_apply)   # add new benchmarks here

echo "== build: cmake -S . -B build && cmake --build build =="
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)"

echo
echo "== machine =="
echo "uname:  $(uname -srm)"
echo "cpus:   $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min: anything near the cpu count skews the figures)"
echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"

status=0
for b in "${benches[@]}"; do
    echo
    echo "== build/bench/$b $* =="
    "build/bench/$b" "$@" || status=1
done
exit $status
