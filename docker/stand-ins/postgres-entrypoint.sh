#!/bin/sh
# The stand-in PostgreSQL's entrypoint (postgres.Dockerfile): the official image's first-start
# behaviour, reduced to what docker-compose.yml uses.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups sh "$0" "$@"
fi
if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?the stand-in PostgreSQL needs POSTGRES_PASSWORD}"
    user=${POSTGRES_USER:-postgres}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # First-start scripts against a server on its socket only (the healthcheck's TCP
    # probe stays unhealthy meanwhile, as with the official image).
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start >/dev/null
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh) echo "stand-in postgres: running $script"
                  POSTGRES_USER=$user PGHOST=/var/run/postgresql sh "$script" ;;
            *.sql) echo "stand-in postgres: running $script"
                   psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d postgres -f "$script" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "stand-in postgres: database initialized"
fi
shift || true
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /var/run/postgresql "$@"
