#!/bin/sh
# The playground's sample data, loaded once when the source's data
# directory is created (postgres image: /docker-entrypoint-initdb.d, run
# against the server while it listens on its socket only): pgbench's four
# tables at scale 1 (100,000 accounts) in database $POSTGRES_DB (shop):
# small, since Debezium's snapshot puts each row in Kafka with its schema.
# pgbench_history has no primary key; pgbench only inserts into it, but
# migrate.sh's preflight wants a key or REPLICA IDENTITY FULL on every
# table, so that updates and deletes could be carried over.
set -eu
pgbench -i -s 1 -q "$POSTGRES_DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_DB" \
	-c 'ALTER TABLE pgbench_history REPLICA IDENTITY FULL'
