#!/bin/sh
# Run once by the postgres image, when its data volume is first initialized
# (/docker-entrypoint-initdb.d): one role and database for Dagster's storage, one for the
# app's export_requests table, each database owned by its role and closed to others.
# Names and passwords come from the container's environment (docker-compose.yml, from
# docker/.env), never from a file. A later change of docker/.env does not touch an existing
# volume: change passwords with ALTER ROLE (docker/README.md).
set -e
: "${POSTGRES_USER:?}" "${DAGSTER_PG_USER:?}" "${DAGSTER_PG_PASSWORD:?}" "${DAGSTER_PG_DB:?}"
: "${EXPORT_DB_USER:?}" "${EXPORT_DB_PASSWORD:?}" "${EXPORT_DB_NAME:?}"

# psql's :"name" and :'value' quote the variables as an identifier and a literal.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    --set dagster_user="$DAGSTER_PG_USER" \
    --set dagster_password="$DAGSTER_PG_PASSWORD" \
    --set dagster_db="$DAGSTER_PG_DB" \
    --set export_user="$EXPORT_DB_USER" \
    --set export_password="$EXPORT_DB_PASSWORD" \
    --set export_db="$EXPORT_DB_NAME" <<'SQL'
CREATE ROLE :"dagster_user" LOGIN PASSWORD :'dagster_password';
CREATE DATABASE :"dagster_db" OWNER :"dagster_user";
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;

CREATE ROLE :"export_user" LOGIN PASSWORD :'export_password';
CREATE DATABASE :"export_db" OWNER :"export_user";
REVOKE ALL ON DATABASE :"export_db" FROM PUBLIC;
SQL
