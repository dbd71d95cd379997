#!/usr/bin/env bash
# Runs the supervisor page's browser test (ledger.test.mjs) the way CTest does.
# Usage: tests/browser/run.sh FIELDSYNCD FIELDSYNC_CLI [ARTIFACT_DIR]
#
# Needs Debian's chromium and Node.js with npm. When one is missing it runs
# `scripts/deps.sh test`, which installs them as root and otherwise prints the exact
# apt-get command and fails: this test never skips itself. playwright-core comes from npm
# at the version pinned in package-lock.json (`npm ci`), and never downloads a browser.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 FIELDSYNCD FIELDSYNC_CLI [ARTIFACT_DIR]" >&2; exit 2; }
export FIELDSYNCD=$(realpath "$1") FIELDSYNC_CLI=$(realpath "$2")
export FS_ARTIFACTS=${3:-$root/build/browser-artifacts}
export FIELDSYNC_SCHEMA=${FIELDSYNC_SCHEMA:-$root/schema/fieldsync.yaml}
export FS_CHROMIUM=${FS_CHROMIUM:-/usr/bin/chromium}
if ! command -v node >/dev/null || ! command -v npm >/dev/null || [ ! -x "$FS_CHROMIUM" ]; then
  echo "browser test: node, npm or $FS_CHROMIUM missing; installing with scripts/deps.sh test" >&2
  bash "$root/scripts/deps.sh" test
fi
cd "$here"
if [ ! -d node_modules/playwright-core ]; then
  # the lock file pins playwright-core; it downloads no browser (we use the system one)
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p "$FS_ARTIFACTS"
exec node --test --test-reporter=spec ledger.test.mjs
