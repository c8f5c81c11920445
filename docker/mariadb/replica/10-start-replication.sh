#!/bin/bash
# Runs once, on first start of the replica (docker-entrypoint-initdb.d).
#
# The replica's own entrypoint has already created root, $MARIADB_DATABASE and
# $MARIADB_USER exactly as the primary's did, so replication starts from the
# primary's *current* GTID position (everything before it is that same
# bootstrap) and follows the binlog from there on.
set -eu
: "${MARIADB_PRIMARY_HOST:=mariadb-primary}"
: "${MARIADB_PRIMARY_PORT:=3306}"
: "${MARIADB_REPLICATION_USER:=repl}"
: "${MARIADB_REPLICATION_PASSWORD:?set MARIADB_REPLICATION_PASSWORD (docker/.env)}"

primary() {
    mariadb --protocol=tcp -h"$MARIADB_PRIMARY_HOST" -P"$MARIADB_PRIMARY_PORT" \
        -u"$MARIADB_REPLICATION_USER" -p"$MARIADB_REPLICATION_PASSWORD" -N -B "$@"
}

for i in $(seq 1 60); do
    if primary -e 'SELECT 1' >/dev/null 2>&1; then break; fi
    echo "replica: waiting for $MARIADB_PRIMARY_HOST ($i)"
    sleep 2
done
pos="$(primary -e 'SELECT @@GLOBAL.gtid_binlog_pos')"
echo "replica: starting from primary GTID position '$pos'"

mariadb --protocol=socket -uroot -p"${MARIADB_ROOT_PASSWORD}" <<SQL
STOP SLAVE;
SET GLOBAL gtid_slave_pos = '${pos}';
CHANGE MASTER TO
  MASTER_HOST = '${MARIADB_PRIMARY_HOST}',
  MASTER_PORT = ${MARIADB_PRIMARY_PORT},
  MASTER_USER = '${MARIADB_REPLICATION_USER}',
  MASTER_PASSWORD = '${MARIADB_REPLICATION_PASSWORD}',
  MASTER_USE_GTID = slave_pos,
  MASTER_CONNECT_RETRY = 5;
START SLAVE;
SQL
echo "replica: replication configured"
