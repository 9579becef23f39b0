#!/usr/bin/env bash
# Set up and run the rehearsal of ops/deploy.md from a clean clone, with no other step:
#   1. install runbook-exec (and the Compose v2 binary) with pip;
#   2. make a Docker Engine usable: as root, ops/ci/engine.sh installs/starts it when needed and builds
#      local base images (no registry needed); otherwise an already running engine is used as is;
#   3. write a throwaway .env.rehearsal with random secrets (kept if it already exists);
#   4. run `runbook-exec ops/deploy.md --section rehearsal` with TAG=today (or $TAG).
# Extra arguments go to runbook-exec, e.g. `bash scripts/rehearse.sh --dry-run`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -e '.[dev]'

if [[ $(id -u) -eq 0 && ${RUNBOOK_LOCAL_BASE_IMAGES:-1} == 1 ]]; then
    # Prints `export ..._BASE_IMAGE=...` lines naming the local base images. Captured first, so a
    # failing engine.sh stops this script (`eval "$(...)"` would hide it from `set -e`).
    base_images=$(bash ops/ci/engine.sh)
    eval "$base_images"
elif ! docker info >/dev/null 2>&1; then
    echo "rehearse.sh: no Docker Engine answers 'docker info'; start it (or run as root to let ops/ci/engine.sh do it)" >&2
    exit 2
fi

env_file=${RUNBOOK_REHEARSAL_ENV:-.env.rehearsal}
[[ -f $env_file ]] || runbook-exec init-env --sample .env.sample --out "$env_file"

exec runbook-exec ops/deploy.md --section rehearsal --env-file "$env_file" --var "TAG=${TAG:-$(date +%Y.%m.%d)}" "$@"
