#!/usr/bin/env bash
# Run every test: the C unit tests (build/unit-tests, TAP), then the bats
# suites (tests/*.bats and the fault suites tests/faults/*.bats, TAP; three
# files at a time, see DBM_TEST_JOBS below), then the end-to-end tier
# (tests/e2e/*.bats, one file at a time).  Output streams as it comes; the last
# line is "N passed, N failed".  Exit 1 when anything failed, including a
# runner that crashed or stopped short of its plan.
#
#   scripts/run-tests.sh                     everything (tests/*.bats, then
#                                            the end-to-end tier tests/e2e)
#   scripts/run-tests.sh tests/hash.bats ... only these bats files
#
# DBM_BIN=DIR runs the tools, unit tests and fuzz replayer of another build
# (make test-asan: build-asan).  Without it, the sanitizer builds of the
# unit tests and the fuzz replayer in build-asan (make asan-unit) run too,
# when they are there.  Sanitizer reports (ASan, LeakSanitizer, UBSan) are
# fatal to the process and written to files that are shown at the end and
# fail the run, so a report from a tool whose exit status a test ignores
# is not missed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
skipped=0
bin=${DBM_BIN:-build}
log=$(mktemp "${TMPDIR:-/tmp}/dbm-run-tests.XXXXXX")
sanlog=$(mktemp -d "${TMPDIR:-/tmp}/dbm-sanitizer.XXXXXX")
chmod 1777 "$sanlog"
trap 'rm -f "$log"; rm -rf "$sanlog"' EXIT
# Exit 86 for a report.  Leaks: the tools leave what main() allocated to
# the process's exit, which LeakSanitizer would report from every early
# return, so leak detection is off for them; it is on for the unit tests
# and the fuzz replayer, whose every input must free what it took (and
# libFuzzer checks each input of make fuzz for leaks too).
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:${ASAN_OPTIONS:-}:log_path=$sanlog/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86:${UBSAN_OPTIONS:-}:log_path=$sanlog/ubsan"
leaks=(env "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=1")

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

e2e=()
if [[ $# -gt 0 ]]; then
	suites=("$@")
else
	if [[ -x $bin/unit-tests ]]; then
		run "unit tests" "${leaks[@]}" "$bin/unit-tests"
	else
		echo "# unit tests: $bin/unit-tests not built, skipped"
	fi
	# every input kept for the fuzz targets (tests/fuzz), replayed
	if [[ -x $bin/fuzz-replay ]]; then
		run "fuzz regressions" "${leaks[@]}" "$bin/fuzz-replay" tests/fuzz
	fi
	if [[ -z ${DBM_BIN:-} && -x build-asan/unit-tests && -x build-asan/fuzz-replay ]]; then
		run "unit tests (ASan+UBSan)" "${leaks[@]}" build-asan/unit-tests
		run "fuzz regressions (ASan+UBSan)" "${leaks[@]}" build-asan/fuzz-replay tests/fuzz
	fi
	shopt -s nullglob
	suites=(tests/*.bats tests/faults/*.bats)
	e2e=(tests/e2e/*.bats)
	shopt -u nullglob
fi

# The suites run DBM_TEST_JOBS files at a time (default 3; each file has
# its own clusters, ports and servers; the tests of a file run in order),
# with GNU parallel; the end-to-end tier after them, one file at a time (its
# JVMs want the machine).
jobs=${DBM_TEST_JOBS:-3}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "# DBM_TEST_JOBS must be a positive whole number"; exit 2; }
par=()
if ((jobs > 1)) && command -v parallel >/dev/null 2>&1; then
	par=(--jobs "$jobs" --no-parallelize-within-files)
fi
if command -v bats >/dev/null 2>&1; then
	if [[ ${#suites[@]} -gt 0 ]]; then
		run "bats ${suites[*]}" bats --tap "${par[@]}" "${suites[@]}"
	fi
	if [[ ${#e2e[@]} -gt 0 ]]; then
		run "bats ${e2e[*]}" bats --tap "${e2e[@]}"
	fi
elif [[ ${#suites[@]} -gt 0 || ${#e2e[@]} -gt 0 ]]; then
	echo "# bats not found (run scripts/setup.sh)"
	failed=$((failed + 1))
fi

shopt -s nullglob
reports=("$sanlog"/*)
shopt -u nullglob
if [[ ${#reports[@]} -gt 0 ]]; then
	for f in "${reports[@]}"; do
		echo "# sanitizer report ${f##*/}:"
		sed 's/^/#   /' "$f"
	done
	echo "# ${#reports[@]} sanitizer reports"
	failed=$((failed + ${#reports[@]}))
fi

[[ $skipped -gt 0 ]] && echo "# $skipped skipped"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
