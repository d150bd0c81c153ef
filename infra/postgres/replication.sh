#!/bin/sh
# Run once by the postgres image on the primary's first start (docker-compose.cluster.yml):
# the role the standby streams WAL with, and the pg_hba.conf line that lets it connect for
# replication (the image's own `host all all all` line does not cover replication).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=user="$REPLICATION_USER" --set=password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication $REPLICATION_USER all scram-sha-256" >> "$PGDATA/pg_hba.conf"
