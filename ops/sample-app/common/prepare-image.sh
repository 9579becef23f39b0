#!/bin/sh
# Run in every sample-app image build, whatever the base (Debian with apt, Alpine with apk):
#   prepare-image.sh [TOOL...]
# 1. trusts the extra CA certificates copied from ops/sample-app/ca/ (intranet TLS proxies), so HTTPS
#    (pip, apt over https, wget) works inside the image;
# 2. installs each TOOL that is not on PATH yet (the healthchecks need wget; python:3.12-slim lacks it).
set -eu

ca_dir=/tmp/extra-ca
added=0
for crt in "$ca_dir"/*.crt; do
    [ -f "$crt" ] || continue
    mkdir -p /usr/local/share/ca-certificates
    cp "$crt" /usr/local/share/ca-certificates/
    added=1
done

missing=""
for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ "$added" = 1 ] && ! command -v update-ca-certificates >/dev/null 2>&1; then
    missing="$missing ca-certificates"
fi

if [ -n "$missing" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
        rm -rf /var/lib/apt/lists/*
    elif command -v apk >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        apk add --no-cache $missing >/dev/null
    else
        echo "prepare-image.sh: cannot install$missing: no apt-get or apk in this base image" >&2
        exit 1
    fi
fi

if [ "$added" = 1 ]; then
    update-ca-certificates >/dev/null 2>&1
    echo "prepare-image.sh: trusted the extra CA certificates from ops/sample-app/ca/"
fi
rm -rf "$ca_dir"
