#!/usr/bin/env bash
# A real Apache Kafka broker and Kafka Connect with Debezium's PostgreSQL
# connector, for the end-to-end tests (tests/e2e, make test-e2e).  Nothing
# Java is kept in the repository: the jars come from Maven Central and are
# cached.
#
#   scripts/e2e-kafka.sh fetch              get the jars (once); print where
#   scripts/e2e-kafka.sh start-kafka DIR    a KRaft broker (combined
#                                           broker+controller) in DIR, on a
#                                           free loopback port; print its
#                                           bootstrap address
#   scripts/e2e-kafka.sh start-connect DIR BOOTSTRAP
#                                           Kafka Connect standalone in DIR,
#                                           Debezium's plugin on its
#                                           plugin.path, REST on a free
#                                           loopback port; print its URL
#   scripts/e2e-kafka.sh fetch-jdbc         also Debezium's JDBC sink connector
#                                           (for make bench-e2e); print where
#   scripts/e2e-kafka.sh stop-connect DIR   stop Connect only (its offsets
#                                           file stays: start-connect again
#                                           resumes; connectors made through
#                                           REST must be PUT again)
#   scripts/e2e-kafka.sh stop DIR           stop what start-* started in DIR
#                                           (Connect, then the broker);
#                                           quiet, success when nothing runs
#
# fetch writes a throwaway pom.xml per component into the cache and runs
# `mvn dependency:copy-dependencies` with a Maven repository inside the
# cache: kafka_2.13 (the broker), connect-runtime, connect-json and
# connect-file with slf4j-reload4j into kafka-VERSION/, and
# debezium-connector-postgres with its runtime dependencies into
# debezium-postgres-VERSION/debezium-connector-postgres/ (a Connect plugin
# directory, loaded in its own class loader); fetch-jdbc adds
# debezium-connector-jdbc (with PostgreSQL's JDBC driver) beside it, in
# debezium-postgres-VERSION/debezium-connector-jdbc/.  A component is complete when
# its .complete file is there; then nothing is fetched, and no network is
# needed.  Start-up commands fetch first.
#
# Connect's worker: JsonConverter for keys and values with schemas,
# replace.null.with.default=false, offsets in DIR/connect.offsets flushed
# every second.  Connectors are added through the REST API (PUT
# /connectors/NAME/config).  The broker keeps one partition per
# auto-created topic, starts groups without delay and accepts sessions down
# to 500 ms.  Logs: DIR/kafka.log, DIR/connect.log (and .out for the JVMs'
# own output).
#
# Environment:
#   DBM_E2E_CACHE   the cache (default ~/.cache/dbm-e2e)
#   DBM_E2E_HEAP    maximum heap of each JVM (default 384m)
#   DBM_E2E_JAVA_OPTS  other JVM options (default -XX:+UseSerialGC
#                   -XX:TieredStopAtLevel=1: quick starts on 2 cores)
#   DBM_E2E_OWNER   a pid: the JVMs started are stopped when it ends (a
#                   watchdog per JVM), so a killed test run leaks nothing
#   JAVA_HOME       the JVM to use (default: java on PATH)
set -euo pipefail

PROG=e2e-kafka
KAFKA_VERSION=3.7.2
SCALA_VERSION=2.13
SLF4J_VERSION=1.7.36
DEBEZIUM_VERSION=2.7.4.Final
DEBEZIUM_JDBC_VERSION=2.7.0.Final  # the last JDBC sink of the 2.7 line
PGJDBC_VERSION=42.7.4

CACHE=${DBM_E2E_CACHE:-$HOME/.cache/dbm-e2e}
HEAP=${DBM_E2E_HEAP:-384m}
JAVA_OPTS=${DBM_E2E_JAVA_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1}
KAFKA_LIB=$CACHE/kafka-$KAFKA_VERSION
DBZ_PLUGINS=$CACHE/debezium-postgres-$DEBEZIUM_VERSION
JAVA=java
[[ -n "${JAVA_HOME:-}" ]] && JAVA=$JAVA_HOME/bin/java

die()
{
	echo "$PROG: error: $*" >&2
	exit 2
}

say()
{
	echo "$PROG: $*" >&2
}

usage()
{
	echo "usage: $0 fetch | fetch-jdbc | start-kafka DIR | start-connect DIR BOOTSTRAP | stop-connect DIR | stop DIR" >&2
	exit 2
}

now_ms()
{
	local t=$EPOCHREALTIME
	echo $((${t%.*} * 1000 + 10#${t#*.} / 1000))
}

# ---------------------------------------------------------------- fetch

# mvn_copy NAME OUTDIR DEPENDENCY...: copy the runtime closure of the
# dependencies (group:artifact:version) into OUTDIR.
mvn_copy()
{
	local name=$1 out=$2 dep g a v
	shift 2
	local pomdir=$CACHE/poms/$name
	mkdir -p "$pomdir"
	{
		echo '<project xmlns="http://maven.apache.org/POM/4.0.0">'
		echo '  <modelVersion>4.0.0</modelVersion>'
		echo "  <groupId>dbm.e2e</groupId><artifactId>$name</artifactId><version>0</version>"
		echo '  <packaging>pom</packaging>'
		echo '  <dependencies>'
		for dep in "$@"; do
			IFS=: read -r g a v <<<"$dep"
			echo "    <dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
		done
		echo '  </dependencies>'
		echo '</project>'
	} >"$pomdir/pom.xml"
	rm -rf "$out.new"
	mkdir -p "$out.new"
	if ! (cd "$pomdir" && mvn -B -q -Dmaven.repo.local="$CACHE/m2" \
		org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$out.new") \
		>"$pomdir/mvn.log" 2>&1 </dev/null; then
		tail -n 30 "$pomdir/mvn.log" >&2
		rm -rf "$out.new"
		die "could not fetch $* from Maven Central (log: $pomdir/mvn.log)"
	fi
	ls "$out.new" >"$out.new/.complete"
	rm -rf "$out"
	mv "$out.new" "$out"
}

cmd_fetch()
{
	command -v "$JAVA" >/dev/null 2>&1 || [[ -x "$JAVA" ]] ||
		die "java not found (run scripts/setup.sh --e2e)"
	mkdir -p "$CACHE"
	local lockfd t0
	exec {lockfd}>>"$CACHE/.lock"
	flock -w 600 "$lockfd" || die "timed out waiting for $CACHE/.lock"
	if [[ ! -f "$KAFKA_LIB/.complete" || ! -f "$DBZ_PLUGINS/debezium-connector-postgres/.complete" ]]; then
		command -v mvn >/dev/null 2>&1 || die "mvn not found (run scripts/setup.sh --e2e)"
		t0=$(now_ms)
		if [[ ! -f "$KAFKA_LIB/.complete" ]]; then
			say "fetching Kafka $KAFKA_VERSION into $KAFKA_LIB"
			mvn_copy kafka "$KAFKA_LIB" \
				"org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION" \
				"org.apache.kafka:connect-runtime:$KAFKA_VERSION" \
				"org.apache.kafka:connect-json:$KAFKA_VERSION" \
				"org.apache.kafka:connect-file:$KAFKA_VERSION" \
				"org.slf4j:slf4j-reload4j:$SLF4J_VERSION"
		fi
		if [[ ! -f "$DBZ_PLUGINS/debezium-connector-postgres/.complete" ]]; then
			say "fetching Debezium $DEBEZIUM_VERSION into $DBZ_PLUGINS"
			mkdir -p "$DBZ_PLUGINS"
			mvn_copy debezium "$DBZ_PLUGINS/debezium-connector-postgres" \
				"io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION"
			# the API Connect shares with its plugins comes from Connect
			rm -f "$DBZ_PLUGINS"/debezium-connector-postgres/slf4j-api-*.jar
		fi
		say "fetched in $(($(now_ms) - t0)) ms"
	fi
	exec {lockfd}>&-
	echo "$CACHE"
}

cmd_fetch_jdbc()
{
	local lockfd t0
	cmd_fetch >/dev/null
	exec {lockfd}>>"$CACHE/.lock"
	flock -w 600 "$lockfd" || die "timed out waiting for $CACHE/.lock"
	if [[ ! -f "$DBZ_PLUGINS/debezium-connector-jdbc/.complete" ]]; then
		command -v mvn >/dev/null 2>&1 || die "mvn not found (run scripts/setup.sh --e2e)"
		t0=$(now_ms)
		say "fetching Debezium's JDBC sink $DEBEZIUM_JDBC_VERSION into $DBZ_PLUGINS"
		mvn_copy debezium-jdbc "$DBZ_PLUGINS/debezium-connector-jdbc" \
			"io.debezium:debezium-connector-jdbc:$DEBEZIUM_JDBC_VERSION" \
			"org.postgresql:postgresql:$PGJDBC_VERSION"
		rm -f "$DBZ_PLUGINS"/debezium-connector-jdbc/slf4j-api-*.jar
		# Connect's own Jackson serves the plugin: with the connector's
		# copies its task fails as Hibernate starts (ServiceConfigurationError:
		# DefaultScalaModule not a subtype)
		rm -f "$DBZ_PLUGINS"/debezium-connector-jdbc/jackson-core-*.jar \
			"$DBZ_PLUGINS"/debezium-connector-jdbc/jackson-databind-*.jar \
			"$DBZ_PLUGINS"/debezium-connector-jdbc/jackson-annotations-*.jar
		ls "$DBZ_PLUGINS/debezium-connector-jdbc" >"$DBZ_PLUGINS/debezium-connector-jdbc/.complete"
		say "fetched in $(($(now_ms) - t0)) ms"
	fi
	exec {lockfd}>&-
	echo "$CACHE"
}

# ---------------------------------------------------------------- processes

random_port()
{
	echo $(( ((RANDOM << 15) | RANDOM) % 30001 + 30000 ))
}

port_free()
{
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port()
{
	local p i
	for i in $(seq 50); do
		p=$(random_port)
		port_free "$p" && { echo "$p"; return 0; }
	done
	die "no free port found"
}

# is_ours PIDFILE DIR: the pid in PIDFILE is alive and runs with DIR on its
# command line (not a reused pid).
is_ours()
{
	local pid
	[[ -f "$1" ]] || return 1
	pid=$(cat "$1")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# stop_pid PIDFILE DIR: TERM, up to 10 s, then KILL.
stop_pid()
{
	local pidfile=$1 dir=$2 pid i
	if is_ours "$pidfile" "$dir"; then
		pid=$(cat "$pidfile")
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

# watchdog NAME DIR: when DBM_E2E_OWNER is set, stop the JVM of NAME once
# the owner is gone.
watchdog()
{
	local name=$1 dir=$2 owner=${DBM_E2E_OWNER:-} jpid
	[[ "$owner" =~ ^[0-9]+$ ]] || return 0
	jpid=$(cat "$dir/$name.pid")
	(
		trap '' HUP INT
		while kill -0 "$owner" 2>/dev/null && kill -0 "$jpid" 2>/dev/null; do
			sleep 1
		done
		kill -TERM "$jpid" 2>/dev/null || exit 0
		sleep 10
		kill -KILL "$jpid" 2>/dev/null || true
	) </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	echo $! >"$dir/$name.watchdog.pid"
}

# log4j LOGFILE: a reload4j configuration writing to LOGFILE.
log4j()
{
	cat <<-EOF
		log4j.rootLogger=INFO, file
		log4j.appender.file=org.apache.log4j.FileAppender
		log4j.appender.file.File=$1
		log4j.appender.file.layout=org.apache.log4j.PatternLayout
		log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
		log4j.logger.org.apache.kafka.clients=WARN
		log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
		log4j.logger.kafka.log=WARN
		log4j.logger.state.change.logger=WARN
		log4j.logger.org.reflections=ERROR
		log4j.logger.org.eclipse.jetty=WARN
	EOF
}

# jvm NAME DIR MAIN ARG...: start a JVM in the background, its pid in
# DIR/NAME.pid.  Descriptors above 2 are closed: bats waits for its fd 3.
jvm()
{
	local name=$1 dir=$2
	shift 2
	log4j "$dir/$name.log" >"$dir/$name-log4j.properties"
	# shellcheck disable=SC2086 # options, split on purpose
	(cd "$dir" && exec "$JAVA" -Xms32m -Xmx"$HEAP" $JAVA_OPTS -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$dir/$name-log4j.properties" \
		-Ddbm.e2e.dir="$dir" -cp "$KAFKA_LIB/*" "$@") \
		</dev/null >"$dir/$name.out" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	echo $! >"$dir/$name.pid"
}

# wait_log NAME DIR PATTERN SECS: wait until the JVM's log has PATTERN; fail
# when it dies or SECS pass.
wait_log()
{
	local name=$1 dir=$2 pattern=$3 deadline=$((SECONDS + $4))
	until grep -qE -- "$pattern" "$dir/$name.log" 2>/dev/null; do
		if ! is_ours "$dir/$name.pid" "$dir"; then
			return 1
		fi
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

cmd_start_kafka()
{
	local dir=$1 attempt port cport id t0
	cmd_fetch >/dev/null
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	is_ours "$dir/kafka.pid" "$dir" && die "a broker is already running in $dir"
	t0=$(now_ms)
	for attempt in 1 2 3; do
		port=$(free_port)
		cport=$(free_port)
		[[ "$port" != "$cport" ]] || continue
		rm -rf "$dir/kafka-data"
		cat >"$dir/server.properties" <<-EOF
			process.roles=broker,controller
			node.id=1
			controller.quorum.voters=1@127.0.0.1:$cport
			listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
			advertised.listeners=PLAINTEXT://127.0.0.1:$port
			inter.broker.listener.name=PLAINTEXT
			controller.listener.names=CONTROLLER
			listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
			log.dirs=$dir/kafka-data
			num.partitions=1
			auto.create.topics.enable=true
			offsets.topic.replication.factor=1
			offsets.topic.num.partitions=1
			transaction.state.log.replication.factor=1
			transaction.state.log.min.isr=1
			group.initial.rebalance.delay.ms=0
			group.min.session.timeout.ms=500
			num.network.threads=2
			num.io.threads=2
			background.threads=2
		EOF
		# a cluster id: 16 random bytes in URL-safe base64, not starting
		# with "-" (the command line would take it for an option)
		id=-
		while [[ "$id" == -* ]]; do
			id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		done
		if ! (cd "$dir" && "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
			-Dlog4j.configuration=file:/dev/null -cp "$KAFKA_LIB/*" \
			kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties") \
			>"$dir/storage-format.out" 2>&1 </dev/null; then
			cat "$dir/storage-format.out" >&2
			die "kafka-storage format failed"
		fi
		jvm kafka "$dir" kafka.Kafka "$dir/server.properties"
		if wait_log kafka "$dir" 'Kafka Server started' 60; then
			watchdog kafka "$dir"
			echo "127.0.0.1:$port" >"$dir/bootstrap"
			say "Kafka $KAFKA_VERSION started in $(($(now_ms) - t0)) ms on 127.0.0.1:$port"
			echo "127.0.0.1:$port"
			return 0
		fi
		# most likely a port taken between our check and the bind
		stop_pid "$dir/kafka.pid" "$dir"
		mv "$dir/kafka.log" "$dir/kafka.log.$attempt" 2>/dev/null || true
	done
	tail -n 30 "$dir/kafka.log.$attempt" "$dir/kafka.out" >&2 2>/dev/null || true
	die "could not start Kafka in $dir"
}

cmd_start_connect()
{
	local dir=$1 bootstrap=$2 attempt port t0
	cmd_fetch >/dev/null
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	is_ours "$dir/connect.pid" "$dir" && die "Connect is already running in $dir"
	t0=$(now_ms)
	for attempt in 1 2 3; do
		port=$(free_port)
		cat >"$dir/connect.properties" <<-EOF
			bootstrap.servers=$bootstrap
			key.converter=org.apache.kafka.connect.json.JsonConverter
			value.converter=org.apache.kafka.connect.json.JsonConverter
			key.converter.schemas.enable=true
			value.converter.schemas.enable=true
			key.converter.replace.null.with.default=false
			value.converter.replace.null.with.default=false
			offset.storage.file.filename=$dir/connect.offsets
			offset.flush.interval.ms=1000
			plugin.path=$DBZ_PLUGINS
			plugin.discovery=only_scan
			listeners=http://127.0.0.1:$port
			rest.advertised.host.name=127.0.0.1
			rest.advertised.port=$port
			task.shutdown.graceful.timeout.ms=3000
		EOF
		jvm connect "$dir" org.apache.kafka.connect.cli.ConnectStandalone "$dir/connect.properties"
		if wait_log connect "$dir" 'Kafka Connect started' 90 &&
			curl -sf "http://127.0.0.1:$port/connector-plugins" 2>/dev/null |
			grep -q 'io.debezium.connector.postgresql.PostgresConnector'; then
			watchdog connect "$dir"
			echo "http://127.0.0.1:$port" >"$dir/connect.url"
			say "Kafka Connect started in $(($(now_ms) - t0)) ms on http://127.0.0.1:$port"
			echo "http://127.0.0.1:$port"
			return 0
		fi
		stop_pid "$dir/connect.pid" "$dir"
		mv "$dir/connect.log" "$dir/connect.log.$attempt" 2>/dev/null || true
	done
	tail -n 30 "$dir/connect.log.$attempt" "$dir/connect.out" >&2 2>/dev/null || true
	die "could not start Kafka Connect in $dir"
}

cmd_stop_connect()
{
	local dir=$1
	[[ -d "$dir" ]] || return 0
	dir=$(cd "$dir" && pwd)
	stop_pid "$dir/connect.pid" "$dir"
	if [[ -f "$dir/connect.watchdog.pid" ]]; then
		kill "$(cat "$dir/connect.watchdog.pid")" 2>/dev/null || true
		rm -f "$dir/connect.watchdog.pid"
	fi
	mv "$dir/connect.log" "$dir/connect.log.$(now_ms)" 2>/dev/null || true
	return 0
}

cmd_stop()
{
	local dir=$1 name
	[[ -d "$dir" ]] || return 0
	dir=$(cd "$dir" && pwd)
	for name in connect kafka; do
		stop_pid "$dir/$name.pid" "$dir"
		if [[ -f "$dir/$name.watchdog.pid" ]]; then
			kill "$(cat "$dir/$name.watchdog.pid")" 2>/dev/null || true
			rm -f "$dir/$name.watchdog.pid"
		fi
	done
	return 0
}

case ${1:-} in
fetch) [[ $# -eq 1 ]] || usage; cmd_fetch ;;
fetch-jdbc) [[ $# -eq 1 ]] || usage; cmd_fetch_jdbc ;;
stop-connect) [[ $# -eq 2 ]] || usage; cmd_stop_connect "$2" ;;
start-kafka) [[ $# -eq 2 ]] || usage; cmd_start_kafka "$2" ;;
start-connect) [[ $# -eq 3 ]] || usage; cmd_start_connect "$2" "$3" ;;
stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
*) usage ;;
esac
