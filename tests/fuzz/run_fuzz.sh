#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a scratch copy of its seed corpus (the
# checked-in corpus is never modified). A crash, leak or timeout fails the test and leaves
# the input in ARTIFACTS/: copy it into tests/fuzz/regressions/<target>/ to keep it as a
# regression test.   Usage: run_fuzz.sh FUZZER CORPUS SECONDS ARTIFACTS
set -euo pipefail
fuzzer=$1 corpus=$2 secs=$3 artifacts=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/
mkdir -p "$artifacts"
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -artifact_prefix="$artifacts/" -print_final_stats=1 "$work" 2>&1 | tail -25
