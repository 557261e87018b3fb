#!/bin/sh
# Install the Debian 12 packages cairn builds, tests and benchmarks with.
# Idempotent and quiet when everything is present; needs root (or sudo) only
# when something is missing.
set -eu

PKGS="build-essential cmake pkg-config
libsodium-dev libisal-dev zlib1g-dev libzstd-dev libhyperscan-dev
libpcre2-dev libmicrohttpd-dev libjansson-dev libinih-dev libcmocka-dev
libsqlite3-dev libcurl4-openssl-dev libasan8 libubsan1 libtsan2
prometheus redis-server redis-tools curl wrk zstd python3"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
