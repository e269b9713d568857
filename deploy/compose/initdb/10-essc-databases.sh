#!/bin/sh
# First start of the compose PostgreSQL: one role and one database per service, each database
# owned by its service's role and closed to everyone else (no service reads another's tables).
# Passwords come from the environment (deploy/.env), never from this file.
set -eu
for svc in identity issuance settlement; do
  var="$(echo "$svc" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  eval "password=\${$var:?$var is not set}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v role="$svc" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
