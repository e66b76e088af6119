#!/usr/bin/env bash
# Run each libFuzzer target for a bounded time (make fuzz).
#
#   scripts/fuzz.sh BUILD_DIR SECONDS TARGET...
#
# BUILD_DIR/fuzz-TARGET runs for SECONDS on the seeds in
# tests/fuzz/corpus/TARGET and the kept crash inputs in
# tests/fuzz/regressions/TARGET, with tests/fuzz/TARGET.dict when there is
# one.  What it finds that is new goes to BUILD_DIR/corpus/TARGET (kept
# between runs, never committed).  A crash, a sanitizer report, a leak or
# an input slower than 10 s stops that target: its input is saved as
# BUILD_DIR/crashes/TARGET/crash-..., and the run fails at the end.
# Output per target: one line, or the last lines of libFuzzer's log.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

[[ $# -ge 3 ]] || { echo "usage: scripts/fuzz.sh BUILD_DIR SECONDS TARGET..." >&2; exit 2; }
build=$1 seconds=$2
shift 2

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

failed=()
for t in "$@"; do
	bin=$build/fuzz-$t
	[[ -x $bin ]] || { echo "fuzz: $bin not built (make fuzz builds it)" >&2; exit 2; }
	mkdir -p "$build/corpus/$t" "$build/crashes/$t"
	dict=()
	[[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
	log=$build/fuzz-$t.log
	echo "# fuzz $t: ${seconds}s"
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/crashes/$t/" "${dict[@]}" \
		"$build/corpus/$t" "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t" >"$log" 2>&1 </dev/null
	rc=$?
	runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
	if [[ $rc -eq 0 ]]; then
		echo "ok fuzz $t: ${runs:-?} runs, ${cov:-no coverage line}, corpus $(ls "$build/corpus/$t" | wc -l) inputs"
	else
		echo "not ok fuzz $t: exit $rc after ${runs:-?} runs; log $log"
		tail -n 40 "$log" | sed 's/^/#   /'
		ls "$build/crashes/$t"/* 2>/dev/null | sed 's/^/#   input: /'
		echo "#   keep the input as a regression: cp INPUT tests/fuzz/regressions/$t/NAME"
		failed+=("$t")
	fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "fuzz: failed: ${failed[*]}"
	exit 1
fi
