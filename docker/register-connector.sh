#!/bin/sh
# register-connector.sh NAME FILE [CONNECT_URL]: create or update the Kafka
# Connect connector NAME with the configuration in FILE (PUT
# /connectors/NAME/config: the same request as tests/e2e's e2e_connector,
# and idempotent), then wait until its task runs.  The one-shot service
# connect-register of docker-compose.yml runs it once Connect is healthy.
# Exit 0 when the task runs, 1 when it failed (its trace is printed) or did
# not start within 3 minutes.
set -eu
name=$1 file=$2 url=${3:-http://connect:8083}

# Connect may answer 409 while its group rebalances just after starting
i=0
until curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/json' \
	--data "@$file" "$url/connectors/$name/config"; do
	i=$((i + 1))
	if [ "$i" -ge 60 ]; then
		echo "register-connector: error: could not register connector $name at $url" >&2
		exit 1
	fi
	sleep 2
done
echo "register-connector: connector $name registered from $file"

i=0
while :; do
	s=$(curl -sf "$url/connectors/$name/status" || true)
	case $s in
	*'"tasks":[{"id":0,"state":"RUNNING"'*)
		echo "register-connector: connector $name: running"
		exit 0
		;;
	*'"state":"FAILED"'*)
		echo "register-connector: error: connector $name failed: $s" >&2
		exit 1
		;;
	esac
	i=$((i + 1))
	if [ "$i" -ge 90 ]; then
		echo "register-connector: error: connector $name not running after 3 minutes: $s" >&2
		exit 1
	fi
	sleep 2
done
