#!/bin/bash
# Runs once, on first start of the primary (docker-entrypoint-initdb.d), after
# the entrypoint has created root, $MARIADB_DATABASE and $MARIADB_USER.
# Creates the account the replica uses to read the binlog.
set -eu
: "${MARIADB_REPLICATION_USER:=repl}"
: "${MARIADB_REPLICATION_PASSWORD:?set MARIADB_REPLICATION_PASSWORD (docker/.env)}"

mariadb --protocol=socket -uroot -p"${MARIADB_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS '${MARIADB_REPLICATION_USER}'@'%' IDENTIFIED BY '${MARIADB_REPLICATION_PASSWORD}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${MARIADB_REPLICATION_USER}'@'%';
FLUSH PRIVILEGES;
SQL
echo "primary: replication user '${MARIADB_REPLICATION_USER}' ready"
