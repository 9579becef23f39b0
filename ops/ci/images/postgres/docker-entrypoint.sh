#!/bin/bash
# A small version of the official postgres image's entrypoint: same environment contract, fewer options.
set -Eeuo pipefail

if [[ ${1:0:1} == - ]]; then
    set -- postgres "$@"
fi

if [[ $1 == postgres && $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [[ $1 == postgres && ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set: the database cannot be initialised without it}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    # Initialise over the socket only, so nobody connects to a half-made database.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [[ $db != postgres ]]; then
        psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -q -v db="$db" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
            *.sql) echo "docker-entrypoint.sh: running $f"
                   psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -q -f "$f" ;;
            *.sh)  echo "docker-entrypoint.sh: sourcing $f"
                   # shellcheck disable=SC1090
                   . "$f" ;;
            *)     [[ -e $f ]] && echo "docker-entrypoint.sh: ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "docker-entrypoint.sh: database initialised"
fi

if [[ $1 == postgres ]]; then
    shift
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
