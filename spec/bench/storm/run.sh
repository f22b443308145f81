#!/bin/sh
# storm: CPU per event and lost events under a thread create/exit storm.
#
# A two-worker pthread storm (storm.c) runs for STORM_S seconds against, one
# at a time:
#   * procwarden with the default policy (no rules file), as a user runs it:
#     --stats -o json --log /dev/null;
#   * the baseline: minlisten count, a minimal C listener doing one blocking
#     recv per event (4-byte subscription = every event, 8 MiB SO_RCVBUFFORCE);
#   * forkstat, if installed (tried once with apt-get unless BENCH_INSTALL=0).
# For each: CPU time of the listener (all threads, from
# /proc/PID/task/*/schedstat) between a snapshot taken just before the storm
# and one taken once the listener has drained the backlog after it; events
# it received in that window (procwarden: "parsed" from two SIGUSR1 --stats
# snapshots; minlisten: its own counters, also on SIGUSR1; forkstat: the
# event lines it printed); losses: ENOBUFS, per-CPU sequence gaps (only
# meaningful for a listener subscribed to every event), and "missing" =
# 2 x threads created - events received (a lower bound of the loss: other
# processes' events are counted in "received" too).
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_SRC/lib.sh"
bench_traps

if [ "$BENCH_QUICK" = 1 ]; then
	STORM_S=${STORM_S:-2}
	ROUNDS=${STORM_ROUNDS:-1}
else
	STORM_S=${STORM_S:-5}
	ROUNDS=${STORM_ROUNDS:-2}
fi
bench_cc storm "$BENCH_SRC/storm/storm.c" -lpthread
bench_cc minlisten "$BENCH_SRC/common/minlisten.c"
bench_tmp

FORKSTAT=$(command -v forkstat || true)
if [ -z "$FORKSTAT" ] && [ "${BENCH_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
	echo "storm: forkstat is not installed; trying apt-get install -y forkstat (60 s at most)"
	DEBIAN_FRONTEND=noninteractive timeout 60 apt-get install -y -qq forkstat >/dev/null 2>&1
	FORKSTAT=$(command -v forkstat || true)
fi
[ -n "$FORKSTAT" ] || echo "storm: forkstat unavailable: its row is skipped"

# k-th "minlisten usr1:" line's counter NAME in FILE (procwarden's: pw_counter, lib.sh).
ml_counter() {
	awk -v k="$2" -v name="$3" '/^minlisten usr1:/ { b++; if (b == k) { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) print kv[2] } exit } }' "$1"
}
ml_blocks() { grep -c '^minlisten usr1:' "$1" 2>/dev/null || true; }
# Ask PID for a counter snapshot (SIGUSR1) and wait until block number K is
# out, 5 s at most; KIND: pw (procwarden) or ml (minlisten).
storm_snapshot() { snapshot "$1" "$2" "$3" "${4}_blocks" 100; } # PID FILE K KIND

printf '\n== storm: %d-worker thread create/exit storm, %s s, %d round(s), %d cores ==\n' 2 "$STORM_S" "$ROUNDS" "$NPROC"
"$BENCH_BIN/storm" "$STORM_S" 2 >"$BENCH_TMP/alone.out"
alone_rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' "$BENCH_TMP/alone.out")
echo "storm with no listener: $alone_rate threads/s ($(awk -v r="$alone_rate" 'BEGIN { printf "%.0f", 2 * r }') events/s)"
result storm.alone_rate "$alone_rate"
printf '%-5s %-11s %10s %10s %10s %8s %8s %8s %9s %8s %7s\n' round listener threads/s expected received enobufs seq_lost missing cpu_ms us/event x_base

# run_one ROUND WHO -> prints a row, sets U_PER_EV
run_one() {
	round=$1 who=$2
	d=$BENCH_TMP/$round-$who
	mkdir -p "$d"
	lost_seq=n/a
	case $who in
	procwarden)
		"$PW" --duration $((STORM_S + 60)) --stats -o json --log /dev/null >"$d/out" 2>"$d/err" &
		lp=$!
		bg_add $lp
		wait_usr1_ready $lp && storm_snapshot $lp "$d/err" 1 pw || die "procwarden did not start: $(head -c 400 "$d/err")"
		;;
	minimal)
		"$BENCH_BIN/minlisten" count 2>"$d/err" &
		lp=$!
		bg_add $lp
		wait_for "$d/err" '^ready' 5 || die "minlisten did not start: $(cat "$d/err")"
		storm_snapshot $lp "$d/err" 1 ml
		;;
	forkstat)
		"$FORKSTAT" >"$d/out" 2>"$d/err" &
		lp=$!
		bg_add $lp
		sleep 1
		;;
	esac
	sleep 0.5
	c0=$(cpu_ns $lp)
	case $who in
	procwarden) storm_snapshot $lp "$d/err" 2 pw ;;
	minimal) storm_snapshot $lp "$d/err" 2 ml ;;
	esac
	"$BENCH_BIN/storm" "$STORM_S" 2 >"$d/storm.out"
	settle $lp
	c1=$(cpu_ns $lp)
	threads=$(sed -n 's/.*threads=\([0-9]*\).*/\1/p' "$d/storm.out")
	rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' "$d/storm.out")
	case $who in
	procwarden)
		storm_snapshot $lp "$d/err" 3 pw
		e0=$(pw_counter "$d/err" 2 parsed) e1=$(pw_counter "$d/err" 3 parsed)
		b0=$(pw_counter "$d/err" 2 enobufs) b1=$(pw_counter "$d/err" 3 enobufs)
		s0=$(pw_counter "$d/err" 2 lost_by_sequence) s1=$(pw_counter "$d/err" 3 lost_by_sequence)
		received=$((e1 - e0)) enobufs=$((b1 - b0)) lost_seq="$((s1 - s0))*"
		bg_stop $lp
		;;
	minimal)
		storm_snapshot $lp "$d/err" 3 ml
		e0=$(ml_counter "$d/err" 2 events) e1=$(ml_counter "$d/err" 3 events)
		b0=$(ml_counter "$d/err" 2 enobufs) b1=$(ml_counter "$d/err" 3 enobufs)
		s0=$(ml_counter "$d/err" 2 seq_lost) s1=$(ml_counter "$d/err" 3 seq_lost)
		received=$((e1 - e0)) enobufs=$((b1 - b0)) lost_seq=$((s1 - s0))
		bg_stop $lp
		;;
	forkstat)
		kill -INT $lp
		_i=0
		while kill -0 $lp 2>/dev/null && [ $_i -lt 50 ]; do sleep 0.1; _i=$((_i + 1)); done
		bg_stop $lp
		# Event lines: all but the (repeated) headers, the "parent" half of
		# fork/clone pairs and forkstat's own "recv ... nobufs" (ENOBUFS) lines.
		received=$(awk '$2 == "Event" || $2 == "recv" { next } ($2 == "fork" || $2 == "clone") && $4 == "parent" { next } NF >= 3 { n++ } END { print n + 0 }' "$d/out")
		enobufs=$(awk '$2 == "recv" && /nobufs/ { n++ } END { print n + 0 }' "$d/out")
		;;
	esac
	expected=$((2 * threads))
	missing=$((expected - received))
	[ $missing -lt 0 ] && missing=0
	cpu=$((c1 - c0))
	U_PER_EV=$(awk -v c="$cpu" -v n="$received" 'BEGIN { if (n > 0) printf "%.3f", c / n / 1000; else print "n/a" }')
	U_MISSING=$missing U_ENOBUFS=$enobufs U_RATE=$rate U_RECEIVED=$received U_EXPECTED=$expected
	x=$(ratio "$U_PER_EV" "${BASE_PER_EV:-n/a}")
	[ "$who" = minimal ] && x=1.00
	printf '%-5s %-11s %10s %10s %10s %8s %8s %8s %9s %8s %7s\n' "$round" "$who" "$rate" "$expected" "$received" \
		"$enobufs" "$lost_seq" "$missing" "$(awk -v c="$cpu" 'BEGIN { printf "%.1f", c / 1e6 }')" "$U_PER_EV" "$x"
	U_X=$x
}

r=1
PW_X="" FK_X="" PW_MISS=0 FK_MISS=0 BASE_MISS=0 PW_NOBUF=0 FK_NOBUF=0 BASE_NOBUF=0 PW_US="" BASE_US="" FK_US="" PW_RATE="" BASE_RATE=""
while [ $r -le "$ROUNDS" ]; do
	BASE_PER_EV=""
	run_one $r minimal
	BASE_PER_EV=$U_PER_EV BASE_US="$BASE_US $U_PER_EV" BASE_RATE="$BASE_RATE $U_RATE"
	BASE_MISS=$((BASE_MISS + U_MISSING)) BASE_NOBUF=$((BASE_NOBUF + U_ENOBUFS))
	run_one $r procwarden
	PW_X="$PW_X $U_X" PW_US="$PW_US $U_PER_EV" PW_RATE="$PW_RATE $U_RATE"
	PW_MISS=$((PW_MISS + U_MISSING)) PW_NOBUF=$((PW_NOBUF + U_ENOBUFS))
	if [ -n "$FORKSTAT" ]; then
		run_one $r forkstat
		FK_X="$FK_X $U_X" FK_US="$FK_US $U_PER_EV"
		FK_MISS=$((FK_MISS + U_MISSING)) FK_NOBUF=$((FK_NOBUF + U_ENOBUFS))
	fi
	r=$((r + 1))
done
cat <<EOF
threads/s = storm rate while that listener ran; expected = 2 x threads (a fork and an exit event each)
received  = events the listener got in the window (all processes' events, not only the storm's;
            forkstat: the event lines it printed over its whole run; its enobufs = its "recv nobufs" lines)
missing   = expected - received, floored at 0: events that never arrived (a lower bound)
seq_lost  = per-CPU sequence gaps; * = procwarden subscribes with an event mask, where gaps
            include filtered events, so it does not count them (always 0): ENOBUFS is its loss signal
cpu_ms    = listener CPU (schedstat, all threads) from just before the storm until it drained
x_base    = us/event / the minimal listener's us/event in the same round
EOF
mean() { # FORMAT VALUES...
	_f=$1
	shift
	echo "$*" | awk -v f="$_f" '{ s = 0; n = 0; for (i = 1; i <= NF; i++) if ($i != "n/a") { s += $i; n++ } if (n) printf f, s / n; else print "n/a" }'
}
result storm.seconds "$STORM_S"
result storm.rounds "$ROUNDS"
result storm.base_us "$(mean %.3f $BASE_US)"
result storm.base_rate "$(mean %.0f $BASE_RATE)"
result storm.base_loss "enobufs=$BASE_NOBUF missing=$BASE_MISS"
result storm.pw_us "$(mean %.3f $PW_US)"
result storm.pw_rate "$(mean %.0f $PW_RATE)"
result storm.pw_x "$(mean %.2f $PW_X)"
result storm.pw_loss "enobufs=$PW_NOBUF missing=$PW_MISS"
if [ -n "$FORKSTAT" ]; then
	result storm.fk_us "$(mean %.3f $FK_US)"
	result storm.fk_x "$(mean %.2f $FK_X)"
	result storm.fk_loss "enobufs=$FK_NOBUF missing=$FK_MISS"
else
	result storm.fk "skipped (forkstat not installed)"
fi
exit 0
