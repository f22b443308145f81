# spec/bench/lib.sh: shared by the benchmark scripts (POSIX sh, sourced).
# Environment: PW_BUILD (default build), BENCH_QUICK=1 for a short run.
# The sourcing script sets BENCH_SRC (the spec/bench directory) first.

PW_BUILD=${PW_BUILD:-build}
PW_BUILD=$(cd "$PW_BUILD" 2>/dev/null && pwd) || { echo "bench: no build directory (make all first)" >&2; exit 1; }
BENCH_QUICK=${BENCH_QUICK:-0}
BENCH_BIN=${BENCH_BIN:-$PW_BUILD/bench}
PW=${PW:-$PW_BUILD/procwarden}
CC=${CC:-cc}
NPROC=$(nproc)

# Background processes this script started: killed by bench_cleanup.
BG_PIDS=""
bg_add() { BG_PIDS="$BG_PIDS $1"; }
bg_forget() {
	_new=""
	for _p in $BG_PIDS; do [ "$_p" = "$1" ] || _new="$_new $_p"; done
	BG_PIDS=$_new
}
# Stop one background process we started: TERM, then KILL after 3 s.
bg_stop() {
	kill -TERM "$1" 2>/dev/null
	_i=0
	while kill -0 "$1" 2>/dev/null && [ $_i -lt 30 ]; do sleep 0.1; _i=$((_i + 1)); done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	bg_forget "$1"
}
bench_cleanup() {
	for _p in $BG_PIDS; do kill -KILL "$_p" 2>/dev/null; done
	for _p in $BG_PIDS; do wait "$_p" 2>/dev/null; done
	BG_PIDS=""
	if [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then # keep the raw data for a look
			_keep=$BENCH_BIN/raw/$(basename "$(dirname "$0")")
			rm -rf "$_keep" && mkdir -p "$BENCH_BIN/raw" && mv "$BENCH_TMP" "$_keep" &&
				echo "raw data kept in $_keep" >&2
		fi
		rm -rf "$BENCH_TMP"
	fi
}
bench_traps() {
	trap 'bench_cleanup' EXIT
	trap 'bench_cleanup; exit 130' INT
	trap 'bench_cleanup; exit 143' TERM
}

die() { echo "bench: $*" >&2; exit 1; }

# A scratch directory (root-owned, 0755: procwarden accepts rules files in it).
bench_tmp() {
	BENCH_TMP=$(mktemp -d /tmp/pwbench.XXXXXX) || die "mktemp"
	chmod 0755 "$BENCH_TMP"
}

# bench_cc NAME SRC... [-lLIB]: compile a helper into $BENCH_BIN/NAME, with
# spec/bench/common/ on the include path (its .c files go in SRC...).
bench_try_cc() {
	_name=$1
	shift
	mkdir -p "$BENCH_BIN"
	$CC -O2 -g -std=gnu11 -Wall -Wextra -I"$BENCH_SRC/common" -o "$BENCH_BIN/$_name" "$@"
}
bench_cc() { bench_try_cc "$@" || die "compiling $1 failed"; }

# CPU time of a process, all its threads, in ns (schedstat: sum_exec_runtime).
cpu_ns() {
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# settle PID: wait until PID's CPU time stops growing (less than 2 ms in
# 0.2 s: start-up scan done, backlog drained), 5 s at most.
settle() {
	_prev=$(cpu_ns "$1")
	_i=0
	while [ $_i -lt 25 ]; do
		sleep 0.2
		_c=$(cpu_ns "$1")
		[ $((_c - _prev)) -lt 2000000 ] && return 0
		_prev=$_c
		_i=$((_i + 1))
	done
}

# procwarden --stats: each SIGUSR1 prints a "procwarden stats:" block of
# "name value" counter lines to its stderr.
# pw_blocks FILE: how many blocks FILE holds.
pw_blocks() { grep -c '^procwarden stats:' "$1" 2>/dev/null || true; }
# pw_counter FILE K NAME: counter NAME of FILE's K-th block (K = last: the last one).
pw_counter() {
	awk -v k="$2" -v name="$3" '/^procwarden stats:/ { b++ } (k == "last" || b == k) && $1 == name { v = $2 } END { print v }' "$1"
}
# snapshot PID FILE K [BLOCKS [TRIES]]: SIGUSR1 to PID, then wait until
# `BLOCKS FILE` (default pw_blocks) counts K blocks, TRIES x 0.05 s at most
# (default 200: 10 s). Fails at once if PID is gone.
snapshot() {
	kill -USR1 "$1" 2>/dev/null || return 1
	_i=0
	while [ $_i -lt "${5:-200}" ]; do
		_b=$("${4:-pw_blocks}" "$2")
		[ "${_b:-0}" -ge "$3" ] && return 0
		sleep 0.05
		_i=$((_i + 1))
	done
	return 1
}

# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE.
pct() {
	sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
		if (NR == 0) { print "n/a"; exit }
		r = int(p / 100 * NR); if (r < p / 100 * NR) r++; if (r < 1) r = 1; print v[r] }'
}
# ns -> µs with one decimal
us() { awk -v v="$1" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf "%.1f", v / 1000 }'; }
# ratio A B -> A/B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# The results file that run.sh's summary reads ("key value" lines).
result() {
	[ -n "${BENCH_RESULTS:-}" ] && printf '%s %s\n' "$1" "$2" >>"$BENCH_RESULTS"
	return 0
}

# Start N CPU hogs (one per core by default) at normal priority.
HOG_PIDS=""
hogs_start() {
	_n=${1:-$NPROC}
	_i=0
	while [ $_i -lt "$_n" ]; do
		"$BENCH_BIN/hog" &
		HOG_PIDS="$HOG_PIDS $!"
		bg_add $!
		_i=$((_i + 1))
	done
}
hogs_stop() {
	for _p in $HOG_PIDS; do bg_stop "$_p"; done
	HOG_PIDS=""
}

# wait_for FILE PATTERN SECONDS: until FILE contains PATTERN (grep -E).
wait_for() {
	_end=$(($(date +%s) + $3))
	while [ "$(date +%s)" -le $_end ]; do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# Wait until PID catches or blocks SIGUSR1 (sending it earlier would kill it).
wait_usr1_ready() {
	_i=0
	while [ $_i -lt 200 ]; do
		kill -0 "$1" 2>/dev/null || return 1
		_m=$(awk '$1 == "SigCgt:" || $1 == "SigBlk:" { print $2 }' /proc/"$1"/status 2>/dev/null | tr '\n' ' ')
		for _h in $_m; do
			[ $((0x$_h & 0x200)) -ne 0 ] && return 0
		done
		sleep 0.05
		_i=$((_i + 1))
	done
	return 1
}
