#!/usr/bin/env bash
# server_sync.sh — the server's durability setting (--sync), read back by the server from its
# store connection (PRAGMA synchronous) and logged at start: full by default, normal when
# asked, anything else refused. Usage: server_sync.sh FIELDSYNCD
set -u
bin=$1
dir=$(mktemp -d /tmp/fs-server-sync-XXXXXX)
fail() { echo "server_sync: FAIL: $*"; cat "$dir"/*.err 2>/dev/null; rm -rf "$dir"; exit 1; }

# starts the server with extra options, waits for the store line, stops it by pid
run() {
    local name=$1; shift
    "$bin" --db "$dir/$name.db" --listen 127.0.0.1:0 --no-web "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
    local pid=$!
    for _ in $(seq 100); do
        grep -q "synchronous" "$dir/$name.err" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    local rc=$?
    [ "$rc" -eq 0 ] || fail "$name: exit status $rc"
}

run default
grep -q "(synchronous full)" "$dir/default.err" || fail "default is not synchronous full"
run normal --sync normal
grep -q "(synchronous normal)" "$dir/normal.err" || fail "--sync normal not applied"
run full --sync full
grep -q "(synchronous full)" "$dir/full.err" || fail "--sync full not applied"
"$bin" --db "$dir/bad.db" --sync sometimes >/dev/null 2>"$dir/bad.err"
[ $? -eq 1 ] || fail "--sync sometimes: want exit status 1"
grep -q -- "--sync is full or normal" "$dir/bad.err" || fail "--sync sometimes: no reason given"
"$bin" --help | grep -q -- "--sync full|normal" || fail "--help does not describe --sync"
rm -rf "$dir"
echo "server_sync: ok"
