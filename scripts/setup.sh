#!/usr/bin/env bash
# Install what dbm needs to build, test and benchmark, on Debian bookworm.
# Idempotent and silent when everything is already installed; prints one
# "setup: installing ..." line otherwise.  Exit 2 when packages are missing
# and we cannot install them (not root and no sudo).
#
#   scripts/setup.sh          what make test, make demo and make bench need
#   scripts/setup.sh --e2e    and what the end-to-end tier and the check of
#                             docker-compose.yml need (make test, make test-e2e)
set -euo pipefail

PACKAGES=(
	# build
	gcc make pkg-config libpq-dev libxxhash-dev libjansson-dev librdkafka-dev
	# sanitizer builds and fuzzing (make test's unit tests under ASan+UBSan,
	# make test-asan, make fuzz): clang, its sanitizer runtimes and libFuzzer
	clang libclang-rt-14-dev
	# servers and clients used by tests, the demo and the runbooks
	postgresql-15 postgresql-contrib pgbouncer kcat jq procps
	# tests and docs
	bats bats-support bats-assert help2man openssl
	# the suites in parallel (bats --jobs)
	parallel
	# peers and tools for the benchmarks
	pgcopydb postgresql-comparator hyperfine
)
# the end-to-end tier: a JVM for Kafka, Kafka Connect and Debezium, Maven to
# fetch them (scripts/e2e-kafka.sh), curl for Connect's REST API; and
# docker-compose (its `config`, no Docker engine needed) and yq (YAML to
# JSON for jq) to check docker-compose.yml against that tier
# (tests/compose.bats)
if [[ "${1:-}" == --e2e ]]; then
	PACKAGES+=(default-jre-headless maven curl docker-compose yq)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $EUID -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	echo "setup: error: missing packages (need root or sudo to install): ${missing[*]}" >&2
	exit 2
fi

echo "setup: installing ${missing[*]}"
# apt and dpkg chatter goes to a log, shown only when something fails.
log=$(mktemp "${TMPDIR:-/tmp}/dbm-setup.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq &&
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}"; \
	} >"$log" 2>&1 </dev/null; then
	cat "$log" >&2
	echo "setup: error: could not install: ${missing[*]}" >&2
	exit 2
fi
