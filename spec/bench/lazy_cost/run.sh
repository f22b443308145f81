#!/bin/sh
# lazy_cost: what reading lazy fields costs per event (issue 5).
#
# An exec storm (two shell loops, `while :; do /bin/true; done`, as fast as
# they can for LAZY_S seconds: 5; quick 2) against procwarden
# (--duration 900 -o json --log /dev/null --stats) running one of:
#   A  rules_a.lua: on("exec", function(e) end)        no lazy field read
#   B  rules_b.lua: the same handler reading e.exe, e.argv and e.parent.exe
# For each run: the daemon's CPU time (utime + stime from /proc/PID/stat,
# clock ticks) from just before the storm until the backlog is drained
# after it, and the exec events it handled in that window (lua_events and
# events_exec from two SIGUSR1 --stats snapshots). Reported: the storm's
# exec events/s (events_exec / storm seconds), CPU us per handled event
# (the storm's fork and exit events, which the daemon also reads, are in
# that CPU), per run and summed per rules file over LAZY_ROUNDS rounds (2;
# quick 1) that alternate which file goes first, and B/A. A is the baseline.
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_SRC/lib.sh"
bench_traps

if [ "$BENCH_QUICK" = 1 ]; then
	STORM_S=${LAZY_S:-2} ROUNDS=${LAZY_ROUNDS:-1}
else
	STORM_S=${LAZY_S:-5} ROUNDS=${LAZY_ROUNDS:-2}
fi
TICK=$(getconf CLK_TCK)
bench_tmp
for x in a b; do
	cp "$BENCH_SRC/lazy_cost/rules_$x.lua" "$BENCH_TMP/rules_$x.lua" && chmod 600 "$BENCH_TMP/rules_$x.lua" || die "cp rules_$x.lua"
	"$PW" --check "$BENCH_TMP/rules_$x.lua" >/dev/null 2>"$BENCH_TMP/check.err" ||
		die "procwarden --check rejects rules_$x.lua: $(cat "$BENCH_TMP/check.err")"
done

# utime + stime of PID, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | awk '{ print $12 + $13 }'; }
now_ms() { awk '{ printf "%.0f\n", $1 * 1000 }' /proc/uptime; }

# run_one ROUND X: one storm against rules X; appends "ticks lua_events events_exec ms" to $BENCH_TMP/X.sum
run_one() {
	round=$1 x=$2
	d=$BENCH_TMP/$round-$x
	mkdir -p "$d"
	"$PW" --duration 900 -o json --log /dev/null --stats "$BENCH_TMP/rules_$x.lua" >"$d/out" 2>"$d/err" &
	lp=$!
	bg_add $lp
	wait_usr1_ready $lp && snapshot $lp "$d/err" 1 || die "procwarden ($x) did not start: $(head -c 400 "$d/err")"
	settle $lp
	snapshot $lp "$d/err" 2 || die "procwarden ($x): no snapshot"
	c0=$(cpu_ticks $lp)
	t0=$(now_ms)
	loops=""
	for _w in 1 2; do
		sh -c 'while :; do /bin/true; done' &
		loops="$loops $!"
		bg_add $!
	done
	sleep "$STORM_S"
	for p in $loops; do bg_stop "$p"; done
	t1=$(now_ms)
	settle $lp
	c1=$(cpu_ticks $lp)
	snapshot $lp "$d/err" 3 || die "procwarden ($x): no snapshot"
	bg_stop $lp
	le=$(($(pw_counter "$d/err" 3 lua_events) - $(pw_counter "$d/err" 2 lua_events)))
	ee=$(($(pw_counter "$d/err" 3 events_exec) - $(pw_counter "$d/err" 2 events_exec)))
	nb=$(($(pw_counter "$d/err" 3 enobufs) - $(pw_counter "$d/err" 2 enobufs)))
	he=$(($(pw_counter "$d/err" 3 handler_errors) - $(pw_counter "$d/err" 2 handler_errors)))
	ticks=$((c1 - c0)) ms=$((t1 - t0))
	echo "$ticks $le $ee $ms" >>"$BENCH_TMP/$x.sum"
	printf '%-5s %-5s %7s %10s %10s %12s %9s %11s %8s %7s\n' "$round" "$(echo "$x" | tr ab AB)" "$(awk -v m="$ms" 'BEGIN { printf "%.2f", m / 1000 }')" \
		"$ee" "$le" "$(awk -v e="$ee" -v m="$ms" 'BEGIN { printf "%.0f", e * 1000 / m }')" \
		"$((ticks * 1000 / TICK))" "$(awk -v t="$ticks" -v hz="$TICK" -v e="$le" 'BEGIN { if (e > 0) printf "%.2f", t * 1e6 / hz / e; else print "n/a" }')" "$nb" "$he"
}

printf '\n== lazy_cost: exec storm (2 shell loops of /bin/true, %s s), %d round(s), %d cores ==\n' "$STORM_S" "$ROUNDS" "$NPROC"
printf '%-5s %-5s %7s %10s %10s %12s %9s %11s %8s %7s\n' round rules storm_s events_exec lua_events exec_events/s cpu_ms us/event enobufs errors
r=1
while [ $r -le "$ROUNDS" ]; do
	if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
	for x in $order; do run_one $r $x; done
	r=$((r + 1))
done

# Totals per rules file: events/s, us/event.
for x in a b; do
	eval "$(awk -v hz="$TICK" -v X="$x" '{ t += $1; le += $2; ee += $3; ms += $4 }
		END { printf "RATE_%s=%.0f US_%s=%s\n", X, ms ? ee * 1000 / ms : 0, X, le ? sprintf("%.2f", t * 1e6 / hz / le) : "n/a" }' "$BENCH_TMP/$x.sum")"
done
BA=$(ratio "$US_b" "$US_a")
echo "A (no lazy field):        $RATE_a exec events/s, $US_a us CPU per event"
echo "B (exe + argv + parent):  $RATE_b exec events/s, $US_b us CPU per event"
echo "B/A CPU per event: $BA"
result lazy.a "$RATE_a $US_a"
result lazy.b "$RATE_b $US_b"
result lazy.x "$BA"
cat <<EOF
us/event = daemon CPU (utime+stime, $TICK ticks/s, storm start -> backlog drained) / lua_events
  (the storm's fork and exit events, handled by the daemon too, are in that CPU)
exec_events/s = events_exec received during the window / storm seconds
totals: summed over the rounds per rules file; B/A = B's us/event / A's (A = the baseline)
EOF
exit 0
