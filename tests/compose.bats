#!/usr/bin/env bats
# docker-compose.yml, the playground of the README's "Try it with Docker
# Compose", checked without a Docker engine: `docker-compose config` (the
# Debian package) must accept it, and what it sets must be what the
# end-to-end tier runs with (the broker's and the Connect worker's settings
# that scripts/e2e-kafka.sh writes, the connector e2e_connector registers)
# and what the toolkit's settings need.  pgbouncer's template and the
# source's sample data run for real: a pgbouncer from the template, the
# init script on a throwaway cluster, and migrate.sh's preflight with the
# toolkit's settings (only the host names and ports changed) over them.

load helpers/common
load helpers/pgbouncer
load helpers/kafka-e2e

COMPOSE=$REPO_ROOT/docker-compose.yml

setup_file()
{
	local t
	for t in docker-compose yq; do
		command -v "$t" >/dev/null || {
			echo "compose.bats: $t not found (run scripts/setup.sh --e2e)" >&2
			return 1
		}
	done
	# the file as Compose understands it: ports, dependencies and mounts
	# in their long forms, relative paths made absolute
	docker-compose -f "$COMPOSE" config >"$BATS_FILE_TMPDIR/compose.yml" || return 1
	yq . "$BATS_FILE_TMPDIR/compose.yml" >"$BATS_FILE_TMPDIR/compose.json" || return 1
	dbm_start_clusters
	start_template_pgbouncer
}

teardown_file()
{
	dbm_stop_pgbouncer
	dbm_stop_clusters
}

# c [JQ OPTION]... FILTER: FILTER over the rendered compose file, compact,
# keys sorted.
c()
{
	jq -S -c "$@" "$BATS_FILE_TMPDIR/compose.json"
}

# e2e_props FILE: the KEY=VALUE lines scripts/e2e-kafka.sh writes into
# $dir/FILE (server.properties, connect.properties), as a JSON object.
e2e_props()
{
	sed -n "/cat >\"\$dir\/$1\" <<-EOF/,/^[[:space:]]*EOF\$/p" "$REPO_ROOT/scripts/e2e-kafka.sh" |
		sed '1d;$d;s/^[[:space:]]*//' |
		jq -R -s -S -c 'split("\n") | map(select(length > 0) |
			capture("^(?<key>[^=]+)=(?<value>.*)$")) | from_entries'
}

# e2e_var NAME: a NAME=VALUE setting at the top of scripts/e2e-kafka.sh.
e2e_var()
{
	sed -nE "s/^$1=([^ ]+).*/\\1/p" "$REPO_ROOT/scripts/e2e-kafka.sh"
}

# KEY_OF: the property a variable of the images' environment sets
# (FOO_BAR -> foo.bar; __ is _, ___ is -), as the apache/kafka and
# Debezium images' entrypoints derive it.
KEY_OF='ascii_downcase | gsub("___"; "\u0001") | gsub("__"; "\u0002") | gsub("_"; ".")
	| gsub("\u0001"; "-") | gsub("\u0002"; "_")'

# conninfo_json CONNINFO: its keyword=value pairs as a JSON object.
conninfo_json()
{
	jq -n -S -c --arg c "$1" '$c | [splits(" +") | select(length > 0) |
		capture("^(?<key>[^=]+)=(?<value>.*)$")] | from_entries'
}

# readme_section: the README's "Try it with Docker Compose" section.
readme_section()
{
	awk '/^## Try it with Docker Compose$/ { on = 1; print; next } on && /^## / { exit } on' \
		"$REPO_ROOT/README.md"
}

# Start pgbouncer (Debian's, like the other suites) from the playground's
# template, docker/pgbouncer/pgbouncer.ini: its [databases] entries and
# pooling, authentication and admin settings unchanged; listening on a
# free loopback port, its auth_file the template's userlist.txt copied
# beside it, a log and a pid file.  Exports PGB_DIR PGB_INI PGB_PORT
# (dbm_stop_pgbouncer stops it).
start_template_pgbouncer()
{
	local dir port try i
	dir=$(mktemp -d /tmp/dbm-pgbouncer.XXXXXX) || return 1
	chmod 755 "$dir"
	cp "$REPO_ROOT/docker/pgbouncer/userlist.txt" "$dir/"
	for try in 1 2 3 4 5; do
		port=$(_dbm_pgb_free_port) || break
		sed -e "s|^listen_addr = .*|listen_addr = 127.0.0.1|" \
			-e "s|^listen_port = .*|listen_port = $port|" \
			-e "s|^auth_file = .*|auth_file = $dir/userlist.txt|" \
			"$REPO_ROOT/docker/pgbouncer/pgbouncer.ini" >"$dir/pgbouncer.ini"
		printf 'logfile = %s\npidfile = %s\n' "$dir/pgbouncer.log" "$dir/pgbouncer.pid" \
			>>"$dir/pgbouncer.ini"
		[[ $EUID -eq 0 ]] && chown -R postgres: "$dir"
		rm -f "$dir/pgbouncer.pid"
		if _dbm_pgb_as "$DBM_PGBOUNCER" -d "$dir/pgbouncer.ini" >>"$dir/start.log" 2>&1; then
			for i in $(seq 1 100); do
				if PGPASSWORD=dbm psql "host=127.0.0.1 port=$port dbname=pgbouncer user=postgres" \
					-XAtq -c 'SHOW VERSION' >/dev/null 2>&1; then
					PGB_DIR=$dir PGB_INI=$dir/pgbouncer.ini PGB_PORT=$port
					export PGB_DIR PGB_INI PGB_PORT
					return 0
				fi
				sleep 0.05
			done
		fi
		PGB_DIR=$dir _dbm_pgb_kill
	done
	echo "start_template_pgbouncer: pgbouncer did not start; its log:" >&2
	cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null
	rm -rf "$dir"
	return 1
}

@test "docker-compose config accepts the file: eight services, two volumes" {
	run docker-compose -f "$COMPOSE" config -q
	assert_success
	assert_output ''
	run c '.services | keys'
	assert_output '["connect","connect-register","kafka","pgbouncer","pgbouncer-config","source","target","toolkit"]'
	run c '.volumes | keys'
	assert_output '["dbm-state","pgbouncer-etc"]'
}

@test "published ports: on loopback, the ones the README's section lists" {
	run c '[.services | to_entries[] | select(.value.ports) | {(.key): .value.ports}] | add'
	assert_output '{"connect":["127.0.0.1:8083:8083/tcp"],"kafka":["127.0.0.1:29092:29092/tcp"],"pgbouncer":["127.0.0.1:6432:6432/tcp"],"source":["127.0.0.1:5433:5432/tcp"],"target":["127.0.0.1:5434:5432/tcp"]}'
	readme_section >"$BATS_TEST_TMPDIR/readme"
	[[ -s "$BATS_TEST_TMPDIR/readme" ]]
	for p in 127.0.0.1:5433 127.0.0.1:5434 127.0.0.1:6432 localhost:29092 127.0.0.1:8083; do
		grep -qF "\`$p\`" "$BATS_TEST_TMPDIR/readme" || fail "the README's section does not give $p"
	done
}

@test "source and target: postgres:15, wal_level=logical, 10 slots, 10 WAL senders, database shop, ready over TCP" {
	for s in source target; do
		run c --arg s "$s" '.services[$s] | .command as $c | {image, db: .environment.POSTGRES_DB,
			password: .environment.POSTGRES_PASSWORD, program: $c[0],
			settings: ([range(1; $c | length; 2) | select($c[.] == "-c") | $c[. + 1] |
				capture("^(?<key>[^=]+)=(?<value>.*)$")] | from_entries),
			unparsed: (($c | length) % 2 == 0), health: .healthcheck.test}'
		assert_output '{"db":"shop","health":["CMD","pg_isready","-h","127.0.0.1","-U","postgres","-d","shop"],"image":"postgres:15","password":"dbm","program":"postgres","settings":{"max_replication_slots":"10","max_wal_senders":"10","wal_level":"logical"},"unparsed":false}'
	done
	# the sample data is the source's only
	run c '[.services.source.volumes, .services.target.volumes]'
	assert_output "[[\"$REPO_ROOT/docker/source-init.sh:/docker-entrypoint-initdb.d/source-init.sh:ro\"],null]"
	[[ -x "$REPO_ROOT/docker/source-init.sh" ]]
}

@test "Kafka: apache/kafka at e2e-kafka.sh's version, one KRaft node set like its server.properties but for the addresses" {
	run c '.services.kafka.image'
	assert_output "\"apache/kafka:$(e2e_var KAFKA_VERSION)\""
	e2e=$(e2e_props server.properties)
	(($(jq length <<<"$e2e") >= 15)) || fail "server.properties not found in scripts/e2e-kafka.sh: $e2e"
	compose=$(c "[.services.kafka.environment | to_entries[] |
		select(.key | startswith(\"KAFKA_\")) | select(.key != \"KAFKA_HEAP_OPTS\") |
		{key: (.key | ltrimstr(\"KAFKA_\") | $KEY_OF), value: (.value | tostring)}] | from_entries")
	# the same properties; the same values but for the listeners, the
	# quorum's address and the data directory
	run jq -n -c --argjson e "$e2e" --argjson c "$compose" '[($e | keys) == ($c | keys),
		[$e | keys[] | select($e[.] != $c[.])]]'
	assert_output '[true,["advertised.listeners","controller.quorum.voters","listener.security.protocol.map","listeners","log.dirs"]]'
	run jq -n -S -c --argjson c "$compose" '$c | {"advertised.listeners", "controller.quorum.voters",
		"listener.security.protocol.map", listeners, "process.roles"}'
	assert_output '{"advertised.listeners":"PLAINTEXT://kafka:9092,HOST://localhost:29092","controller.quorum.voters":"1@kafka:9093","listener.security.protocol.map":"CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT","listeners":"PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:29092","process.roles":"broker,controller"}'
}

@test "Connect: Debezium's image at e2e-kafka.sh's version, the worker's converters and settings of its connect.properties" {
	run c '.services.connect.image'
	assert_output "\"quay.io/debezium/connect:$(e2e_var DEBEZIUM_VERSION)\""
	e2e=$(e2e_props connect.properties)
	(($(jq length <<<"$e2e") >= 10)) || fail "connect.properties not found in scripts/e2e-kafka.sh: $e2e"
	# the worker properties the image's entrypoint writes: its own
	# variables, then CONNECT_* ones
	compose=$(c "(.services.connect.environment | with_entries(.value |= tostring)) as \$v |
		{BOOTSTRAP_SERVERS: \"bootstrap.servers\", GROUP_ID: \"group.id\",
		 CONFIG_STORAGE_TOPIC: \"config.storage.topic\", OFFSET_STORAGE_TOPIC: \"offset.storage.topic\",
		 STATUS_STORAGE_TOPIC: \"status.storage.topic\", KEY_CONVERTER: \"key.converter\",
		 VALUE_CONVERTER: \"value.converter\", OFFSET_FLUSH_INTERVAL_MS: \"offset.flush.interval.ms\",
		 SHUTDOWN_TIMEOUT: \"task.shutdown.graceful.timeout.ms\"} as \$named |
		([\$named | to_entries[] | select(\$v[.key]) | {key: .value, value: \$v[.key]}] +
		 [\$v | to_entries[] | select(.key | startswith(\"CONNECT_\")) |
		  {key: (.key | ltrimstr(\"CONNECT_\") | $KEY_OF), value}]) | from_entries")
	# what only one side has: the distributed worker's group and topics;
	# the standalone worker's address, plugin path and offsets file
	run jq -n -c --argjson e "$e2e" --argjson c "$compose" '[($c | keys) - ($e | keys),
		($e | keys) - ($c | keys), [$e | keys[] | select($c[.] and $e[.] != $c[.])]]'
	assert_output '[["config.storage.topic","group.id","offset.storage.topic","status.storage.topic"],["listeners","offset.storage.file.filename","plugin.path","rest.advertised.host.name","rest.advertised.port"],["bootstrap.servers"]]'
	run jq -n -S -c --argjson c "$compose" '$c | {"bootstrap.servers", "key.converter",
		"value.converter.schemas.enable", "value.converter.replace.null.with.default"}'
	assert_output '{"bootstrap.servers":"kafka:9092","key.converter":"org.apache.kafka.connect.json.JsonConverter","value.converter.replace.null.with.default":"false","value.converter.schemas.enable":"true"}'
	run c '.services.connect.depends_on'
	assert_output '{"kafka":{"condition":"service_healthy"},"source":{"condition":"service_healthy"}}'
}

@test "the connector: what e2e_connector sends, but for the playground's database, address and names" {
	# what e2e_connector would send to Connect: its two requests answered
	# here (the PUT taken down, the status a running task)
	curl()
	{
		local a
		for a in "$@"; do
			[[ "$a" == */status ]] && { echo '{"tasks":[{"id":0,"state":"RUNNING"}]}'; return 0; }
		done
		while (($#)); do
			[[ "$1" == --data ]] && printf '%s\n' "$2" >"$BATS_TEST_TMPDIR/sent.json"
			shift
		done
	}
	CONNECT=http://connect.invalid e2e_connector e9 "host=127.0.0.1 port=40123 user=postgres dbname=e9db"
	sent=$(jq -S -c . "$BATS_TEST_TMPDIR/sent.json")
	file=$(jq -S -c . "$REPO_ROOT/docker/debezium-shop.json")
	own='["database.hostname","database.port","database.password","database.dbname","topic.prefix","slot.name","publication.name"]'
	run jq -n -c --argjson s "$sent" --argjson f "$file" --argjson own "$own" \
		'[($s | delpaths($own | map([.]))) == ($f | delpaths($own | map([.]))), ($s | keys) == ($f | keys)]'
	assert_output '[true,true]'
	run jq -n -S -c --argjson s "$sent" --argjson own "$own" '$s | with_entries(select(.key | IN($own[])))'
	assert_output '{"database.dbname":"e9db","database.hostname":"127.0.0.1","database.password":"unused","database.port":"40123","publication.name":"e9","slot.name":"e9","topic.prefix":"e9"}'
	run jq -n -S -c --argjson f "$file" --argjson own "$own" '$f | with_entries(select(.key | IN($own[])))'
	assert_output '{"database.dbname":"shop","database.hostname":"source","database.password":"dbm","database.port":"5432","publication.name":"debezium_shop","slot.name":"debezium_shop","topic.prefix":"shop"}'
	# those are the source service's, and connect-register registers this
	# file as connector "shop"
	run c '[.services.source.environment.POSTGRES_DB, .services.source.environment.POSTGRES_PASSWORD,
		(.services.source.ports[0] | split(":")[2] | rtrimstr("/tcp"))]'
	assert_output '["shop","dbm","5432"]'
	run c '.services["connect-register"] | {entrypoint, volumes, depends_on}'
	assert_output "{\"depends_on\":{\"connect\":{\"condition\":\"service_healthy\"}},\"entrypoint\":[\"sh\",\"/docker/register-connector.sh\",\"shop\",\"/docker/debezium-shop.json\",\"http://connect:8083\"],\"volumes\":[\"$REPO_ROOT/docker:/docker:ro\"]}"
}

@test "the toolkit: built from the Dockerfile (bookworm, scripts/setup.sh, make install), its settings naming the services" {
	run c '.services.toolkit | {build, init, volumes, depends_on}'
	assert_output "{\"build\":{\"context\":\"$REPO_ROOT\"},\"depends_on\":{\"pgbouncer\":{\"condition\":\"service_healthy\"},\"source\":{\"condition\":\"service_healthy\"},\"target\":{\"condition\":\"service_healthy\"}},\"init\":true,\"volumes\":[\"pgbouncer-etc:/etc/pgbouncer:rw\",\"dbm-state:/var/lib/dbm:rw\"]}"
	run grep -E '^FROM ' "$REPO_ROOT/Dockerfile"
	assert_output 'FROM debian:bookworm-slim'
	grep -qE '^RUN scripts/setup.sh && ' "$REPO_ROOT/Dockerfile"
	grep -qE '^ +make && make install PREFIX=/usr/local$' "$REPO_ROOT/Dockerfile"
	env=$(c '.services.toolkit.environment')
	for s in source target; do
		run conninfo_json "$(jq -r --arg s "${s^^}" '.["DBM_" + $s]' <<<"$env")"
		assert_output "{\"dbname\":\"shop\",\"host\":\"$s\",\"port\":\"5432\",\"user\":\"postgres\"}"
	done
	run conninfo_json "$(jq -r .DBM_PGBOUNCER_ADMIN <<<"$env")"
	assert_output '{"dbname":"pgbouncer","host":"pgbouncer","port":"6432","user":"postgres"}'
	run jq -S -c '{DBM_PGBOUNCER_INI, DBM_PGBOUNCER_DB, DBM_STATE_DIR, PGPASSWORD}' <<<"$env"
	assert_output '{"DBM_PGBOUNCER_DB":"shop","DBM_PGBOUNCER_INI":"/etc/pgbouncer/pgbouncer.ini","DBM_STATE_DIR":"/var/lib/dbm/shop","PGPASSWORD":"dbm"}'
	# pgbouncer reads the ini the toolkit rewrites, from the volume both
	# mount, filled from the template by pgbouncer-config before it starts
	run c '[.services.pgbouncer.command, .services.pgbouncer.volumes, .services.pgbouncer.depends_on["pgbouncer-config"],
		.services["pgbouncer-config"].volumes]'
	assert_output "[[\"/usr/sbin/pgbouncer\",\"/etc/pgbouncer/pgbouncer.ini\"],[\"pgbouncer-etc:/etc/pgbouncer:rw\"],{\"condition\":\"service_completed_successfully\"},[\"$REPO_ROOT/docker/pgbouncer:/docker/pgbouncer:ro\",\"pgbouncer-etc:/etc/pgbouncer:rw\"]]"
	# Debian's pgbouncer, the one this suite runs below, from the
	# toolkit's image, as a user other than root
	run c '[.services.pgbouncer.image, .services.pgbouncer.build, .services.pgbouncer.user, .services.toolkit.image]'
	assert_output "[\"dbm-toolkit\",{\"context\":\"$REPO_ROOT\"},\"postgres\",\"dbm-toolkit\"]"
	grep -qx 'listen_port = 6432' "$REPO_ROOT/docker/pgbouncer/pgbouncer.ini"
	grep -qx 'auth_file = /etc/pgbouncer/userlist.txt' "$REPO_ROOT/docker/pgbouncer/pgbouncer.ini"
}

@test "pgbouncer's template: the playground's password logs in, transaction pooling, database shop on the source" {
	admin="host=127.0.0.1 port=$PGB_PORT dbname=pgbouncer user=postgres"
	run env PGPASSWORD=dbm psql "$admin" -XAq -F '|' -c 'SHOW DATABASES'
	assert_success
	assert_line --regexp '^shop\|source\|5432\|shop\|postgres\|'
	run env PGPASSWORD=dbm psql "$admin" -XAtq -F '|' -c 'SHOW CONFIG'
	assert_line --regexp '^pool_mode\|transaction\|'
	assert_line --regexp '^auth_type\|scram-sha-256\|'
	assert_line --regexp '^admin_users\|postgres\|'
	run env PGPASSWORD=wrong psql "$admin" -XAtq -c 'SHOW VERSION'
	assert_failure
	assert_output --partial 'FATAL:  SASL authentication failed'
}

@test "migrate.sh's preflight finds the source's sample data fit, with the toolkit's settings and pgbouncer's template" {
	psql "$SRC" -XAtq -v ON_ERROR_STOP=1 -c 'CREATE DATABASE shop'
	psql "$DST" -XAtq -v ON_ERROR_STOP=1 -c 'CREATE DATABASE shop'
	src=${SRC/dbname=postgres/dbname=shop}
	# what the postgres image does with it at the source's first start
	# (as the server's user, over its socket; here over TCP)
	run env PGHOST=127.0.0.1 PGPORT="$(e2e_port "$SRC")" PGUSER=postgres POSTGRES_DB=shop \
		"$REPO_ROOT/docker/source-init.sh"
	assert_success
	run psql "$src" -XAtq -c "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches),
		(SELECT count(*) FROM pgbench_tellers), (SELECT count(*) FROM pgbench_history),
		(SELECT relreplident FROM pg_class WHERE oid = 'pgbench_history'::regclass)"
	assert_output '100000|1|10|0|f'
	# the toolkit's environment, its host names and ports made the
	# clusters' and this pgbouncer's
	env=$(c '.services.toolkit.environment')
	admin=$(jq -r .DBM_PGBOUNCER_ADMIN <<<"$env")
	admin=${admin/host=pgbouncer port=6432/host=127.0.0.1 port=$PGB_PORT}
	run env DBM_SOURCE="$src" DBM_TARGET="${DST/dbname=postgres/dbname=shop}" \
		DBM_PGBOUNCER_ADMIN="$admin" DBM_PGBOUNCER_INI="$PGB_INI" \
		DBM_PGBOUNCER_DB="$(jq -r .DBM_PGBOUNCER_DB <<<"$env")" \
		PGPASSWORD="$(jq -r .PGPASSWORD <<<"$env")" DBM_STATE_DIR="$BATS_TEST_TMPDIR/state" \
		"$REPO_ROOT/runbooks/migrate.sh" --preflight-only --json
	assert_success
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/preflight.jsonl"
	run jq -r 'select(.type == "check" and .status != "ok") | "\(.check) \(.status): \(.message)"' \
		"$BATS_TEST_TMPDIR/preflight.jsonl"
	assert_output ''
	run jq -r 'select(.type == "check" and .check == "router") | .message' \
		"$BATS_TEST_TMPDIR/preflight.jsonl"
	assert_output 'pgbouncer entry shop -> source:5432 (transaction pooling)'
}

@test "the README's section runs the files' commands: services, runbooks, connector and topics" {
	readme_section >"$BATS_TEST_TMPDIR/readme"
	for s in $(c -r '.services | keys[]'); do
		grep -qF "| $s |" "$BATS_TEST_TMPDIR/readme" || fail "the README's table does not list service $s"
	done
	for cmd in 'docker compose up -d' 'docker compose exec toolkit runbooks/migrate.sh --preflight-only' \
		'docker compose exec toolkit runbooks/migrate.sh' 'docker compose exec toolkit runbooks/status.sh' \
		'docker compose exec toolkit runbooks/rollback.sh' '--kafka kafka:9092' \
		"--topic-regex \"$(jq -r '.["topic.prefix"]' "$REPO_ROOT/docker/debezium-shop.json")\\.public\\..*\"" \
		'register-connector: connector shop: running' 'docker compose down -v'; do
		grep -qF -- "$cmd" "$BATS_TEST_TMPDIR/readme" || fail "the README's section lacks: $cmd"
	done
}
