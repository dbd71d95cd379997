#!/usr/bin/env bash
# Runs every test of fieldsync: installs missing packages, builds in build/ with warnings as
# errors, runs the suite under CTest, then builds build-asan/ with ASan+UBSan and runs the
# suite again. Exit status is non-zero when anything fails.
# Usage: scripts/test.sh [--quick]   (--quick skips the sanitizer pass)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
jobs=$(nproc)
echo "== build (warnings are errors) =="
cmake -S . -B build -DFS_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== tests =="
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600)
if [ "${1:-}" != "--quick" ]; then
  echo "== tests under ASan+UBSan =="
  CC=clang cmake -S . -B build-asan -DFS_WERROR=ON -DFS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan -j"$jobs"
  # detect_leaks + abort_on_error: a leak at exit is SIGABRT, in the test binaries and in every
  # fieldsyncd and CLI they start; the helpers that stop those fail the test on it and name
  # the log with the LeakSanitizer report (tests/integration/exit_check.h)
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 FS_SANITIZED=1 \
     ctest --output-on-failure -j"$jobs" --timeout 900)
fi
