#!/usr/bin/env bash
# Installs the Debian 12 packages fieldsync needs to build and test, when any is missing.
# As root it runs apt-get; otherwise it prints the exact command to run and exits 1.
# Usage: scripts/deps.sh [build|test]   (test adds what the sanitizer and browser tests need)
set -euo pipefail
what=${1:-build}
pkgs=(gcc make cmake pkg-config libwebsockets-dev libsqlite3-dev libmsgpack-dev libzstd-dev
      libyaml-dev libsodium-dev sqlite3)
if [ "$what" = test ]; then
  # clang for the sanitizer build; chromium, Node.js and npm for the supervisor page's
  # browser test (tests/browser: playwright-core drives the system chromium); CJK fonts so
  # that its screenshots show Chinese
  pkgs+=(clang libclang-rt-14-dev chromium nodejs npm fonts-noto-cjk)
fi
missing=()
for p in "${pkgs[@]}"; do
  # node and npm may come from elsewhere than Debian (nvm, NodeSource): a working command is
  # enough; chromium must be Debian's (the browser test uses /usr/bin/chromium)
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "fieldsync needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "Installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
