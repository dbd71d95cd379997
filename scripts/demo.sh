#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs the engine demo (a township's devices
# editing offline and converging). Once the server and device have landed it starts the real
# server and simulated devices instead (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
if [ -x build/client-sdk/fieldsync-demo ] || [ -f scripts/demo-township.sh ]; then
  exec bash scripts/demo-township.sh "$@"
fi
exec ./build/tests/prop_converge --cases 20
