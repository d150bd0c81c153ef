#!/bin/sh
# The standby's entrypoint (docker-compose.cluster.yml). On a blank data volume it copies the
# primary with pg_basebackup and writes the standby settings (-R: standby.signal and
# primary_conninfo), then hands over to the postgres image's own entrypoint, which sees an
# initialised data directory and starts the server: a hot standby streaming from the primary.
# After a promotion (docs/deployment.md) the data directory is the new primary's and this
# script leaves it alone.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready --host="$PRIMARY_HOST" --username="$REPLICATION_USER" --quiet; do
        sleep 1
    done
    export PGPASSWORD="$REPLICATION_PASSWORD"
    gosu postgres pg_basebackup --host="$PRIMARY_HOST" --username="$REPLICATION_USER" \
        --pgdata="$PGDATA" --wal-method=stream --write-recovery-conf --checkpoint=fast
    unset PGPASSWORD
fi
exec docker-entrypoint.sh "$@"
