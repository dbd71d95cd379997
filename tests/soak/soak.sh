#!/usr/bin/env bash
# The soak: 200 simulated devices (SDK replicas driven by 8 worker processes) against one real
# fieldsyncd for SOAK_SECONDS, with random offline windows, workers killed mid-sync, and one
# kill -9 and restart of the daemon; then every replica is checked against the server, the
# visits counted, the review items rebuilt from the log, descriptors and memory compared
# (tests/soak/soak.c says exactly what). CTest runs a 60 s, 40-device variant
# (fault.soak.short); this is the long one:
#
#   SOAK_SECONDS=1800 tests/soak/soak.sh           # 30 minutes, 200 devices
#   SOAK_DEVICES=500 SOAK_WORKERS=16 SOAK_SECONDS=600 tests/soak/soak.sh
#   SOAK_SEED=1234 ...   replays the same choices;   SOAK_KEEP=1 keeps the files
#
# It uses the build in BUILD (default build/), building it first when the binaries are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
if [ ! -x "$BUILD/tests/integration/soak" ]; then
  cmake -S . -B "$BUILD" -DFS_WERROR=ON >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target soak fieldsyncd fieldsync-cli
fi
export FIELDSYNC_SCHEMA="$PWD/schema/fieldsync.yaml"
export FIELDSYNCD="$PWD/$BUILD/server/fieldsyncd"
export FIELDSYNC_CLI="$PWD/$BUILD/client-sdk/fieldsync"
export SOAK_SECONDS=${SOAK_SECONDS:-1800} SOAK_DEVICES=${SOAK_DEVICES:-200}
export SOAK_WORKERS=${SOAK_WORKERS:-8}
exec "$BUILD/tests/integration/soak" --bin "$FIELDSYNCD"
