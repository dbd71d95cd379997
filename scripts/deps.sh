#!/usr/bin/env bash
# Installs the Debian 12 packages fieldsync needs to build and test, when any is missing.
# As root it runs apt-get; otherwise it prints the exact command to run and exits 1.
# Usage: scripts/deps.sh [build|test]   (test adds what the sanitizer and browser tests need)
set -euo pipefail
what=${1:-build}
pkgs=(gcc make cmake pkg-config libwebsockets-dev libsqlite3-dev libmsgpack-dev libzstd-dev
      libyaml-dev libsodium-dev sqlite3)
if [ "$what" = test ]; then
  pkgs+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
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
