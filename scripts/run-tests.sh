#!/usr/bin/env bash
# Run every test: the C unit tests (build/unit-tests, TAP), then the bats
# suites (tests/*.bats, TAP), serially.  Output streams as it comes; the last
# line is "N passed, N failed".  Exit 1 when anything failed, including a
# runner that crashed or stopped short of its plan.
#
#   scripts/run-tests.sh                     everything (tests/*.bats, then
#                                            the end-to-end tier tests/e2e)
#   scripts/run-tests.sh tests/hash.bats ... only these bats files
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
skipped=0
log=$(mktemp "${TMPDIR:-/tmp}/dbm-run-tests.XXXXXX")
trap 'rm -f "$log"' EXIT

# run NAME COMMAND...: run a TAP producer, show its output, add its counts.
run()
{
	local name=$1 rc ok notok skip plan counted
	shift
	echo "# $name"
	"$@" </dev/null 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	ok=$(grep -cE '^ok ' "$log")
	skip=$(grep -cE '^ok .*# [Ss][Kk][Ii][Pp]' "$log")
	notok=$(grep -cE '^not ok ' "$log")
	passed=$((passed + ok - skip))
	skipped=$((skipped + skip))
	failed=$((failed + notok))
	# Tests the plan announced but that never reported count as failed.
	plan=$(sed -nE 's/^1\.\.([0-9]+).*/\1/p' "$log" | head -n 1)
	counted=$((ok + notok))
	if [[ -n "$plan" && "$plan" -gt "$counted" ]]; then
		echo "# $name: planned $plan tests, saw $counted"
		failed=$((failed + plan - counted))
		notok=$((notok + plan - counted))
	fi
	if [[ $rc -ne 0 && $notok -eq 0 ]]; then
		echo "# $name: exited with status $rc without a failing test"
		failed=$((failed + 1))
	fi
}

if [[ $# -gt 0 ]]; then
	suites=("$@")
else
	if [[ -x build/unit-tests ]]; then
		run "unit tests" build/unit-tests
	else
		echo "# unit tests: build/unit-tests not built, skipped"
	fi
	shopt -s nullglob
	suites=(tests/*.bats tests/e2e/*.bats)
	shopt -u nullglob
fi

if [[ ${#suites[@]} -gt 0 ]]; then
	if command -v bats >/dev/null 2>&1; then
		run "bats ${suites[*]}" bats --tap "${suites[@]}"
	else
		echo "# bats not found (run scripts/setup.sh)"
		failed=$((failed + 1))
	fi
fi

[[ $skipped -gt 0 ]] && echo "# $skipped skipped"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
