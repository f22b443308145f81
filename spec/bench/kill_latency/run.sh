#!/bin/sh
# kill_latency: exec of a forbidden binary, killed after exec.
#
# N sequential execs of a dynamically linked victim whose main() first
# creates a marker file, under four configurations: {idle, busy (one CPU
# hog per core, normal priority)} x {normal scheduling, realtime}. For each,
# the same victim/driver runs against
#   * procwarden with one fast rule (exe glob -> kill()), --realtime for the
#     realtime rows; latency = latency_ns from its JSON action lines;
#   * the baseline: minlisten kill (a minimal C proc connector listener:
#     pidfd_open + readlink /proc/PID/exe + pidfd_send_signal), SCHED_FIFO 10
#     + mlockall for the realtime rows (what --realtime does).
# Both latencies are CLOCK_MONOTONIC just after pidfd_send_signal minus the
# exec event's kernel timestamp. Reported: killed/total (died of SIGKILL),
# markers (victims that reached main), p50/p99/max, and procwarden's p50/p99
# as ratios to the baseline's in the same configuration. Each configuration
# runs in CHUNKS chunks that alternate which listener goes first, so noise
# that drifts over time (a noisy VM) lands on both.
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_SRC/lib.sh"
bench_traps

if [ "$BENCH_QUICK" = 1 ]; then N=${KILL_N:-100} CHUNKS=${KILL_CHUNKS:-2}; else N=${KILL_N:-500} CHUNKS=${KILL_CHUNKS:-5}; fi
RT_PRIO=10

bench_cc hog "$BENCH_SRC/common/hog.c"
bench_cc victim "$BENCH_SRC/kill_latency/victim.c"
bench_cc kill_driver "$BENCH_SRC/kill_latency/driver.c" "$BENCH_SRC/common/victim_wait.c"
bench_cc minlisten "$BENCH_SRC/common/minlisten.c"
bench_tmp
VICTIM=$BENCH_TMP/victim
cp "$BENCH_BIN/victim" "$VICTIM"
readelf -l "$VICTIM" 2>/dev/null | grep -q 'program interpreter' || die "the victim is not dynamically linked"
mkdir "$BENCH_TMP/markers"
RULES=$BENCH_TMP/kill.lua
cat >"$RULES" <<EOF
rule { name = "forbidden", on = "exec", match = { exe = "$BENCH_TMP/victim*" }, action = { kill() } }
EOF
"$PW" --check "$RULES" >/dev/null 2>"$BENCH_TMP/check.err" || die "procwarden --check rejects the rule: $(cat "$BENCH_TMP/check.err")"

# Latencies ("pid latency_ns") of successful kills, from procwarden's JSON lines.
pw_latencies() {
	awk '/"kind": *"action"/ {
		i = index($0, "\"actions\":[")
		if (i == 0) next
		a = substr($0, i); j = index(a, "]"); if (j) a = substr(a, 1, j)
		if (a !~ /"name": *"kill"/ || a !~ /"ok": *true/) next
		if (!match(a, /"pid": *[0-9]+/)) next
		p = substr(a, RSTART, RLENGTH); sub(/.*: */, "", p)
		if (!match(a, /"latency_ns": *-?[0-9]+/)) next
		l = substr(a, RSTART, RLENGTH); sub(/.*: */, "", l)
		print p, l
	}' "$1"
}

printf '\n== kill_latency: %d execs per configuration and listener (%d chunks, alternating), %d cores ==\n' "$N" "$CHUNKS" "$NPROC"
printf '%-14s %-11s %10s %8s %8s %9s %9s %9s %7s %7s\n' configuration listener killed reached kills p50_us p99_us max_us p50_x p99_x

# chunk LOAD SCHED WHO K NK: NK victims against WHO, appended to $d/driver.out
# and $d/lat.raw (d = $BENCH_TMP/LOAD-SCHED-WHO).
chunk() {
	load=$1 sched=$2 who=$3 k=$4 nk=$5
	d=$BENCH_TMP/$load-$sched-$who
	mkdir -p "$d"
	[ "$load" = busy ] && hogs_start
	sleep 0.2
	rt=""
	if [ "$who" = procwarden ]; then
		[ "$sched" = realtime ] && rt="--realtime=$RT_PRIO"
		"$PW" --duration 900 -o json --stats $rt "$RULES" >"$d/out.$k.json" 2>"$d/err.$k" &
	else
		[ "$sched" = realtime ] && rt="--rt $RT_PRIO"
		"$BENCH_BIN/minlisten" kill "$VICTIM" "$d/lat.$k.raw" $rt 2>"$d/err.$k" &
	fi
	lp=$!
	bg_add $lp
	if "$BENCH_BIN/kill_driver" ready "$VICTIM" "$BENCH_TMP/markers" 15; then
		"$BENCH_BIN/kill_driver" run "$VICTIM" "$BENCH_TMP/markers" "$nk" "$d/driver.$k.out" 300 >"$d/driver.$k.sum"
	else
		echo "   note: $who ($load/$sched) never killed a victim, not ready: $(head -c 300 "$d/err.$k")"
		: >"$d/driver.$k.out"
	fi
	bg_stop $lp
	[ "$load" = busy ] && hogs_stop
	[ "$who" = procwarden ] && pw_latencies "$d/out.$k.json" >"$d/lat.$k.raw"
	touch "$d/lat.$k.raw"
	cat "$d/driver.$k.out" >>"$d/driver.out"
	# This chunk's measured victims only (not the warm-up ones).
	awk 'NR == FNR { want[$1] = 1; next } ($1 in want) { print $2 }' "$d/driver.$k.out" "$d/lat.$k.raw" >>"$d/lat"
	if [ "$who" = procwarden ]; then
		for c in enobufs handler_errors; do
			v=$(awk -v c="$c" '$1 == c { print $2 }' "$d/err.$k")
			[ -n "$v" ] && [ "$v" != 0 ] && echo "   note: procwarden $c = $v ($load/$sched, chunk $k)"
		done
	fi
	return 0
}

# stats LOAD SCHED WHO -> R_total R_killed R_markers R_timeouts R_n R_p50 R_p99 R_max
stats() {
	d=$BENCH_TMP/$1-$2-$3
	touch "$d/driver.out" "$d/lat"
	eval "$(awk '{ t++; k += $2; m += $3; o += $4 } END { printf "R_total=%d R_killed=%d R_markers=%d R_timeouts=%d\n", t, k, m, o }' "$d/driver.out")"
	R_n=$(wc -l <"$d/lat" | tr -d ' ')
	R_p50=n/a R_p99=n/a R_max=n/a
	if [ "$R_n" -gt 0 ]; then
		R_p50=$(pct "$d/lat" 50) R_p99=$(pct "$d/lat" 99) R_max=$(pct "$d/lat" 100)
	fi
}

row() { # CFG WHO X50 X99
	printf '%-14s %-11s %10s %8s %8s %9s %9s %9s %7s %7s\n' "$1" "$2" "$R_killed/$R_total" "$R_markers" "$R_n" \
		"$(us "$R_p50")" "$(us "$R_p99")" "$(us "$R_max")" "$3" "$4"
	[ "$R_timeouts" -gt 0 ] && echo "   note: $R_timeouts victims were still alive after 300 ms (the driver SIGTERMed them)"
	return 0
}

NK=$((N / CHUNKS))
CONFIGS=${KILL_CONFIGS:-idle/normal idle/realtime busy/normal busy/realtime}
for load in idle busy; do
	for sched in normal realtime; do
		case " $CONFIGS " in *" $load/$sched "*) ;; *) continue ;; esac
		k=1
		while [ $k -le "$CHUNKS" ]; do # alternate who goes first: drifting noise hits both
			if [ $((k % 2)) = 1 ]; then order="minimal procwarden"; else order="procwarden minimal"; fi
			for who in $order; do chunk "$load" "$sched" "$who" $k $NK; done
			k=$((k + 1))
		done
		cfg="$load/$sched" key="kill.$load.$sched"
		stats "$load" "$sched" minimal
		b_p50=$R_p50 b_p99=$R_p99
		row "$cfg" minimal 1.00 1.00
		result "$key.minimal" "$R_killed/$R_total $R_markers $(us "$R_p50") $(us "$R_p99") $(us "$R_max")"
		stats "$load" "$sched" procwarden
		x50=$(ratio "$R_p50" "$b_p50") x99=$(ratio "$R_p99" "$b_p99")
		row "$cfg" procwarden "$x50" "$x99"
		result "$key.procwarden" "$R_killed/$R_total $R_markers $(us "$R_p50") $(us "$R_p99") $(us "$R_max") $x50 $x99"
	done
done
cat <<EOF
killed  = victims that died of SIGKILL / victims exec'd
reached = victims that created their marker (their main ran) before the kill
kills   = successful kills the listener reported for these victims (latency samples)
p50/p99/max = exec event kernel timestamp -> just after pidfd_send_signal, CLOCK_MONOTONIC
p50_x, p99_x = procwarden / minimal listener, same configuration, same run
EOF
exit 0
