# bench/common.sh - helpers of bench/snapshot.sh and bench/apply.sh (sourced).
#
# The caller sets PROG (for messages), WORK (a directory) and, before
# measuring, CLUSTERS (names) and PM[name] (postmaster pids); see
# bench_clusters_ready.  Counters are read with builtins only (no fork), so
# that reading them costs nothing that they would count.

say() { printf '%s %s: %s\n' "$(date +%T)" "$PROG" "$*" >&2; }
die() { printf '%s: FAILED: %s\n' "$PROG" "$*" >&2; exit 1; }

# CPU ticks (user + system) of a process and its reaped children, in CPU.
proc_cpu()
{
	local f
	read -r -a f <"/proc/$1/stat"
	# fields 14-17: utime stime cutime cstime; comm has no spaces here
	CPU=$((f[13] + f[14] + f[15] + f[16]))
}

# CPU ticks of a server: the postmaster, its reaped children and its live
# ones (walwriter, checkpointer, autovacuum, a running backend...), in CPU.
# A child that exits between two readings moves from the live sum to the
# reaped one, so differences stay right.
server_cpu()
{
	local f c=() pid total
	read -r -a f <"/proc/$1/stat"
	total=$((f[13] + f[14] + f[15] + f[16]))
	read -r -a c <"/proc/$1/task/$1/children" || true
	for pid in "${c[@]}"; do
		# a child may be gone by now: its time is in the next reading
		read -r -a f <"/proc/$pid/stat" 2>/dev/null || continue
		total=$((total + f[13] + f[14]))
	done
	CPU=$total
}

# CPU ticks the whole machine spent busy (any process), in CPU.
machine_cpu()
{
	local f
	read -r -a f </proc/stat
	# cpu user nice system idle iowait irq softirq steal
	CPU=$((f[1] + f[2] + f[3] + f[6] + f[7] + f[8]))
}

# Number of live children of a postmaster, in N.  A backend's CPU reaches
# the postmaster's cutime only once the postmaster has reaped it.
nchildren()
{
	local c=()
	read -r -a c <"/proc/$1/task/$1/children" || true
	N=${#c[@]}
}

# wait_for_other_benches: the machine may be shared; another benchmark
# running at the same time would distort both.  Benchmarks that source this
# file take turns on a lock (/tmp/dbm-bench.lock); others that do not
# (bench/hash.sh, or BENCH_OTHERS, a pgrep -f pattern) are waited for.
# At most BENCH_WAIT_MAX seconds (default 1800) each.  The lock is held
# through file descriptor BENCH_LOCK_FD: close it for processes that may
# outlive the benchmark (servers: cmd {BENCH_LOCK_FD}>&-).
wait_for_other_benches()
{
	local waited=0 others max=${BENCH_WAIT_MAX:-1800}
	exec {BENCH_LOCK_FD}>>/tmp/dbm-bench.lock
	if ! flock -n "$BENCH_LOCK_FD"; then
		say "waiting for another benchmark to finish (/tmp/dbm-bench.lock)"
		flock -w "$max" "$BENCH_LOCK_FD" || say "still locked after ${max}s; going on anyway"
	fi
	while others=$(pgrep -f "${BENCH_OTHERS:-bench/hash\.sh}" | tr '\n' ' ') &&
		[[ -n "$others" ]]; do
		((waited == 0)) && say "waiting for other benchmarks to finish (pids $others)"
		((waited < max)) || { say "still running; going on anyway"; return 0; }
		sleep 5
		waited=$((waited + 5))
	done
}

declare -A PM IDLE
CLUSTERS=()

# bench_clusters_ready NAME...: remember each postmaster's idle children
# (call when nothing runs against them).
bench_clusters_ready()
{
	local n
	CLUSTERS=("$@")
	sleep 1
	for n in "$@"; do
		nchildren "${PM[$n]}"
		IDLE[$n]=$N
	done
}

# Wait (up to 10 s) until every postmaster is back to its idle children.
settle()
{
	local i n busy
	for ((i = 0; i < 1000; i++)); do
		busy=
		for n in "${CLUSTERS[@]}"; do
			nchildren "${PM[$n]}"
			((N <= IDLE[$n])) || busy=1
		done
		[[ -z "$busy" ]] && return
		sleep 0.01
	done
}

TICK=$(getconf CLK_TCK)
NCPU=$(nproc)

# quiet_wait: wait (up to BENCH_QUIET_MAX seconds, default 120) until the
# machine is idle, less than 10% of its CPUs busy over half a second: on a
# shared machine, someone else's work would be counted as ours.
quiet_wait()
{
	local m0 i max=${BENCH_QUIET_MAX:-120}
	for ((i = 0; i < max * 2; i++)); do
		machine_cpu
		m0=$CPU
		sleep 0.5
		machine_cpu
		# busy ticks * 100 < 10% of 0.5 s * TICK * NCPU
		(((CPU - m0) * 100 < TICK * NCPU * 5)) && return 0
		((i == 0)) && say "waiting for the machine to be idle"
	done
	say "the machine is still busy after ${max}s; measuring anyway"
}

# times_header FILE: the header line of the measurements file.
times_header()
{
	local n h='phase\ttool\trun\twall\tclient_cpu'
	for n in "${CLUSTERS[@]}"; do
		h+="\t${n}_cpu"
	done
	printf "$h\\tother_cpu\\n" >"$1"
	TIMES=$1
}

# measure PHASE TOOL RUN COMMAND...: run COMMAND (stdout and stderr to
# WORK/out/PHASE.TOOL.RUN.{out,err}); append wall time, CPU of our children
# (the tool), of each cluster, and of the rest of the machine (noise) to
# TIMES.  Returns the command's status; the line is written either way.
measure()
{
	local phase=$1 tool=$2 run=$3
	shift 3
	local out="$WORK/out/$phase.$tool.$run" n rc=0
	local c0 c1 m0 m1 t0 t1
	declare -A s0 s1
	settle
	quiet_wait
	for n in "${CLUSTERS[@]}"; do
		server_cpu "${PM[$n]}"
		s0[$n]=$CPU
	done
	machine_cpu; m0=$CPU
	proc_cpu $$; c0=$CPU
	t0=$EPOCHREALTIME
	"$@" >"$out.out" 2>"$out.err" || rc=$?
	t1=$EPOCHREALTIME
	proc_cpu $$; c1=$CPU
	settle
	machine_cpu; m1=$CPU
	local line="$phase\t$tool\t$run" srv=0 cols=""
	for n in "${CLUSTERS[@]}"; do
		server_cpu "${PM[$n]}"
		s1[$n]=$CPU
		srv=$((srv + s1[$n] - s0[$n]))
		cols+=" $((s1[$n] - s0[$n]))"
	done
	awk -v l="$line" -v a="$t0" -v b="$t1" -v c=$((c1 - c0)) -v s="$srv" \
		-v m=$((m1 - m0)) -v k="$TICK" -v cols="$cols" \
		'BEGIN { o = m - c - s; if (o < 0) o = 0
			printf "%s\t%.3f\t%.2f", l, b - a, c / k
			n = split(cols, v, " ")
			for (i = 1; i <= n; i++) printf "\t%.2f", v[i] / k
			printf "\t%.2f\n", o / k }' >>"$TIMES"
	# share of the machine others used meanwhile, in percent
	NOISE=$(awk -v o="$(tail -n 1 "$TIMES" | awk -F'\t' '{ print $NF }')" \
		-v w="$(tail -n 1 "$TIMES" | cut -f4)" -v n="$NCPU" \
		'BEGIN { printf "%.0f", 100 * o / (w * n) }')
	say "$phase $tool #$run: $(tail -n 1 "$TIMES" | cut -f4)s (exit $rc, others ${NOISE}% of the CPUs)"
	return "$rc"
}

# discard_last: the last measurement does not count (phase "discarded").
discard_last()
{
	local tmp=$TIMES.tmp
	awk -F'\t' -v OFS='\t' -v n="$(wc -l <"$TIMES")" 'NR == n { $1 = "discarded" } { print }' \
		"$TIMES" >"$tmp" && mv "$tmp" "$TIMES"
}

# median PHASE TOOL COLUMN: median of a column of TIMES over the counted runs
# (run numbers above 0).
median()
{
	awk -F'\t' -v p="$1" -v t="$2" -v c="$3" \
		'NR > 1 && $1 == p && $2 == t && $3 > 0 { print $c }' "$TIMES" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
			else if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# column NAME: the number of a column of TIMES.
column_of()
{
	head -n 1 "$TIMES" | tr '\t' '\n' | grep -nx "$1" | cut -d: -f1
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
fmt() { awk -v a="$1" 'BEGIN { printf "%.2f", a }'; }
fmt1() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }

# results_section FILE NAME TEXT-FILE: put TEXT-FILE into FILE between the
# markers of section NAME, replacing that section when FILE has it and
# appending it otherwise; the rest of FILE is left as it is.
results_section()
{
	local file=$1 name=$2 text=$3 begin end tmp
	begin="<!-- bench-$name: begin (written by bench/$name.sh) -->"
	end="<!-- bench-$name: end -->"
	tmp=$(mktemp "$file.XXXXXX")
	if [[ -f "$file" ]] && grep -qxF "$begin" "$file" && grep -qxF "$end" "$file"; then
		awk -v b="$begin" -v e="$end" -v t="$text" '
			$0 == b { print; while ((getline l < t) > 0) print l; skip = 1; next }
			$0 == e { skip = 0 }
			!skip { print }' "$file" >"$tmp"
	else
		{
			if [[ -s "$file" ]]; then
				cat "$file"
				echo
			fi
			echo "$begin"
			cat "$text"
			echo "$end"
		} >"$tmp"
	fi
	chmod 644 "$tmp"
	mv "$tmp" "$file"
}
